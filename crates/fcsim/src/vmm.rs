//! The fake VMM: configuration state and the dispatch of API calls.
//!
//! Calls are handled one at a time (the caller holds the lock), as in
//! Firecracker. Every call is first gated by phase, with Firecracker's lists:
//! pre-boot-only calls after InstanceStart and post-boot-only calls before it
//! are refused with fixed messages; `PUT` of a drive, net or pmem device after
//! boot is hotplug, refused with "PCI is not enabled" unless `--enable-pci`.
//! Configuring a boot-specific resource (even unsuccessfully) forbids a later
//! snapshot load. Lifecycle actions (start, pause, snapshots, exit) live in
//! `lifecycle.rs`.

use std::sync::Arc;

use banger_fcapi::{
    ActionType, CpuConfig, EntropyDevice, FirecrackerVersion, FullVmConfiguration, InstanceInfo,
    InstanceState, MachineConfiguration, SerialDevice,
};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::args::Misbehaviour;
use crate::balloon::{BalloonDevice, no_balloon};
use crate::block::BlockDevices;
use crate::boot::BootConfig;
use crate::error::SimError;
use crate::fault::Fault;
use crate::guest::SerialConsole;
use crate::log::SimLog;
use crate::memory_hotplug::{MemoryHotplug, no_memory_hotplug};
use crate::metrics::MetricsSink;
use crate::mmds::Mmds;
use crate::net::NetDevices;
use crate::pmem::PmemDevices;
use crate::qemu::{QemuGuest, QemuOptions};
use crate::route::{ApiCall, DeviceKind};
use crate::vsock::{VsockDevice, VsockMode};
use crate::{FIRECRACKER_VERSION, vm_config};

/// Channel on which the process's end (exit code or fatal error) is announced.
pub type ExitSender = mpsc::UnboundedSender<Result<i32, SimError>>;

/// Process-wide facts the VMM needs.
pub struct VmmContext {
    /// `--id`.
    pub instance_id: String,
    /// The shared logger.
    pub log: Arc<SimLog>,
    /// Selected misbehaviour.
    pub misbehaviour: Misbehaviour,
    /// `--enable-pci`.
    pub enable_pci: bool,
    /// Where to announce the process's end.
    pub exit: ExitSender,
    /// MMDS store limit in bytes.
    pub mmds_limit: usize,
    /// What runs behind InstanceStart.
    pub backend: Backend,
}

/// The guest behind `InstanceStart`.
#[derive(Debug, Clone)]
pub enum Backend {
    /// No guest code runs: fake boot lines on the console (`banger-fcsim`).
    Simulated,
    /// A real guest in `qemu-system-x86_64 -M microvm` (`banger-fcqemu`).
    Qemu(QemuOptions),
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 204 No Content.
    Empty,
    /// 200 with this JSON body.
    Json(String),
}

fn json(value: &impl Serialize) -> Result<Reply, Fault> {
    serde_json::to_string(value)
        .map(Reply::Json)
        .map_err(|e| Fault::bad_request(e.to_string()))
}

/// When a call is allowed.
enum Phase {
    Any,
    PreBoot,
    PostBoot,
    /// Device insertion: pre-boot, or hotplug after boot.
    Hotplug,
}

fn phase(call: &ApiCall) -> Phase {
    use ApiCall::*;
    match call {
        GetInstanceInfo | GetVersion | GetVmConfig | GetMachineConfig | GetMmds | GetBalloon
        | PutMmds(_) | PatchMmds(_) => Phase::Any,
        Action(ActionType::InstanceStart)
        | PutBalloon(_)
        | PutBootSource(_)
        | PutCpuConfig(_)
        | PutLogger(_)
        | PutSerial(_)
        | UpdateMachineConfig(_)
        | PutMetrics(_)
        | PutMmdsConfig(_)
        | LoadSnapshot(_)
        | PutVsock(_)
        | PutEntropy(_)
        | PutMemoryHotplug(_) => Phase::PreBoot,
        PutDrive(_) | PutNet(_) | PutPmem(_) => Phase::Hotplug,
        Action(ActionType::FlushMetrics | ActionType::SendCtrlAltDel)
        | GetBalloonStats
        | GetBalloonHinting
        | GetMemoryHotplug
        | CreateSnapshot(_)
        | PatchBalloon(_)
        | PatchBalloonStats(_)
        | StartHinting(_)
        | StopHinting
        | PatchDrive(_)
        | PatchNet(_)
        | PatchPmem(_)
        | PatchVm(_)
        | PatchMemoryHotplug(_)
        | Unplug(..) => Phase::PostBoot,
    }
}

/// Calls that commit to a fresh boot (after which a snapshot load is refused).
fn is_boot_specific(call: &ApiCall) -> bool {
    use ApiCall::*;
    matches!(
        call,
        PutBootSource(_)
            | PutDrive(_)
            | PutNet(_)
            | PutPmem(_)
            | PutBalloon(_)
            | PutMmdsConfig(_)
            | UpdateMachineConfig(_)
            | PutVsock(_)
            | PutEntropy(_)
            | PutMemoryHotplug(_)
    )
}

/// The simulated VMM.
pub struct Vmm {
    pub(crate) ctx: VmmContext,
    pub(crate) state: InstanceState,
    pub(crate) boot_path: bool,
    pub(crate) machine: MachineConfiguration,
    pub(crate) boot: Option<BootConfig>,
    pub(crate) drives: BlockDevices,
    pub(crate) nets: NetDevices,
    pub(crate) pmem: PmemDevices,
    pub(crate) vsock: Option<VsockDevice>,
    pub(crate) balloon: Option<BalloonDevice>,
    pub(crate) entropy: Option<EntropyDevice>,
    pub(crate) serial: Option<SerialDevice>,
    pub(crate) cpu_config: Option<CpuConfig>,
    pub(crate) hotplug: Option<MemoryHotplug>,
    pub(crate) mmds: Mmds,
    pub(crate) metrics: MetricsSink,
    pub(crate) console: Option<SerialConsole>,
    /// The QEMU guest, once started (QEMU backend).
    pub(crate) qemu: Option<QemuGuest>,
}

impl Vmm {
    /// A fresh, unconfigured VMM.
    pub fn new(ctx: VmmContext, metrics: MetricsSink) -> Self {
        let mmds = Mmds::new(ctx.mmds_limit);
        Self {
            ctx,
            state: InstanceState::NotStarted,
            boot_path: false,
            machine: MachineConfiguration::default().with_defaults(),
            boot: None,
            drives: BlockDevices::default(),
            nets: NetDevices::default(),
            pmem: PmemDevices::default(),
            vsock: None,
            balloon: None,
            entropy: None,
            serial: None,
            cpu_config: None,
            hotplug: None,
            mmds,
            metrics,
            console: None,
            qemu: None,
        }
    }

    /// `GET /`.
    pub fn instance_info(&self) -> InstanceInfo {
        InstanceInfo {
            id: self.ctx.instance_id.clone(),
            state: self.state,
            vmm_version: FIRECRACKER_VERSION.into(),
            app_name: "Firecracker".into(),
        }
    }

    /// Counts a request in the metrics.
    pub fn count_request(&mut self, method: &'static str, failed: bool) {
        self.metrics.count_request(method, failed);
    }

    /// The whole configuration (as `GET /vm/config` and snapshots see it).
    pub(crate) fn full_config(&self) -> FullVmConfiguration {
        FullVmConfiguration {
            balloon: self.balloon.as_ref().map(|b| b.config.clone()),
            drives: self.drives.configs(),
            boot_source: self.boot.as_ref().map(|b| b.source.clone()),
            cpu_config: self.cpu_config.clone(),
            logger: None,
            machine_config: Some(self.machine.clone()),
            metrics: None,
            mmds_config: self.mmds.config(),
            network_interfaces: self.nets.configs(),
            vsock: self.vsock.as_ref().map(|v| v.config.clone()),
            entropy: self.entropy,
            pmem: self.pmem.configs(),
            memory_hotplug: self.hotplug.map(|h| h.config),
        }
    }

    fn require_pci(&self) -> Result<(), Fault> {
        if self.ctx.enable_pci {
            Ok(())
        } else {
            Err(Fault::bad_request("PCI is not enabled"))
        }
    }

    /// Handles one parsed call.
    pub fn handle(&mut self, call: ApiCall) -> Result<Reply, Fault> {
        let started = self.state != InstanceState::NotStarted;
        match (phase(&call), started) {
            (Phase::PreBoot, true) => return Err(Fault::not_supported_post_boot()),
            (Phase::PostBoot, false) => return Err(Fault::not_supported_pre_boot()),
            (Phase::Hotplug, true) => self.require_pci()?,
            _ => {}
        }
        if matches!(self.ctx.backend, Backend::Qemu(_))
            && let Some(fault) = crate::qemu::refusal(&call, started)
        {
            return Err(fault);
        }
        if !started && is_boot_specific(&call) {
            self.boot_path = true;
        }
        let mem = self.machine.mem_size_mib;
        use ApiCall::*;
        match call {
            GetInstanceInfo => json(&self.instance_info()),
            GetVersion => json(&FirecrackerVersion {
                firecracker_version: FIRECRACKER_VERSION.into(),
            }),
            GetVmConfig => Ok(Reply::Json(vm_config::render(self.full_config()))),
            GetMachineConfig => json(&self.machine),
            GetMmds => json(&self.mmds.get()),
            PutMmds(value) => self.mmds.put(value).map(|()| Reply::Empty),
            PatchMmds(value) => self.mmds.patch(value).map(|()| Reply::Empty),
            GetBalloon => json(&self.balloon_mut()?.config),
            GetBalloonStats => json(&self.balloon_mut()?.stats(mem)?),
            GetBalloonHinting => json(&self.balloon_mut()?.hinting_status()?),
            PatchBalloon(update) => self
                .balloon_mut()?
                .update(update, mem)
                .map(|()| Reply::Empty),
            PatchBalloonStats(update) => self
                .balloon_mut()?
                .update_stats_interval(update.stats_polling_interval_s)
                .map(|()| Reply::Empty),
            StartHinting(cmd) => self
                .balloon_mut()?
                .start_hinting(cmd)
                .map(|()| Reply::Empty),
            StopHinting => self.balloon_mut()?.stop_hinting().map(|()| Reply::Empty),
            PutBalloon(config) => {
                self.balloon = Some(BalloonDevice::new(config, mem)?);
                Ok(Reply::Empty)
            }
            Action(ActionType::InstanceStart) => self.start(),
            Action(ActionType::FlushMetrics) => self.flush_metrics(),
            Action(ActionType::SendCtrlAltDel) => self.ctrl_alt_del(),
            PutBootSource(source) => {
                self.boot = Some(BootConfig::open(source)?);
                Ok(Reply::Empty)
            }
            PutCpuConfig(config) => {
                self.cpu_config = Some(config);
                Ok(Reply::Empty)
            }
            PutDrive(drive) => self.drives.insert(drive).map(|()| Reply::Empty),
            PutNet(iface) => self.nets.insert(iface).map(|()| Reply::Empty),
            PutPmem(pmem) => self.pmem.insert(pmem).map(|()| Reply::Empty),
            PutLogger(logger) => self
                .ctx
                .log
                .configure(&logger)
                .map(|()| Reply::Empty)
                .map_err(|e| {
                    Fault::bad_request(format!("Logger error: Failed to open target file: {e}"))
                }),
            PutSerial(serial) => {
                self.serial = Some(serial);
                Ok(Reply::Empty)
            }
            UpdateMachineConfig(update) => self.update_machine(&self.machine.apply(&update)),
            PutMetrics(metrics) => self.metrics.configure(&metrics).map(|()| Reply::Empty),
            PutMmdsConfig(config) => self
                .mmds
                .configure(config, &self.nets)
                .map(|()| Reply::Empty),
            CreateSnapshot(params) => self.create_snapshot(&params),
            LoadSnapshot(params) => self.load_snapshot(&params),
            PutVsock(config) => {
                // Firecracker drops the old device (and its socket file) before binding the new one.
                if let Some(old) = self.vsock.take() {
                    old.close();
                }
                let mode = self.vsock_mode();
                self.vsock = Some(VsockDevice::bind_with(config, mode)?);
                Ok(Reply::Empty)
            }
            PutEntropy(config) => {
                self.entropy = Some(config);
                Ok(Reply::Empty)
            }
            PutMemoryHotplug(config) => {
                self.hotplug = Some(MemoryHotplug::new(config)?);
                Ok(Reply::Empty)
            }
            GetMemoryHotplug => json(
                &self
                    .hotplug
                    .as_ref()
                    .ok_or_else(no_memory_hotplug)?
                    .status(),
            ),
            PatchMemoryHotplug(update) => self
                .hotplug
                .as_mut()
                .ok_or_else(no_memory_hotplug)?
                .resize(update.requested_size_mib.unwrap_or(0))
                .map(|()| Reply::Empty),
            PatchDrive(update) => self.drives.update(&update).map(|()| Reply::Empty),
            PatchNet(update) => self.nets.update(&update).map(|()| Reply::Empty),
            PatchPmem(update) => self.pmem.update(&update).map(|()| Reply::Empty),
            PatchVm(state) => self.pause_resume(state),
            Unplug(kind, id) => self.unplug(kind, &id),
        }
    }

    /// How the vsock device's socket serves clients with this backend.
    pub(crate) fn vsock_mode(&self) -> VsockMode {
        match &self.ctx.backend {
            Backend::Simulated if self.ctx.misbehaviour.guest_agent => VsockMode::Agent,
            Backend::Simulated => VsockMode::Hold,
            Backend::Qemu(_) if crate::qemu::vhost_vsock_usable("/dev/vhost-vsock".as_ref()) => {
                VsockMode::Bridge
            }
            Backend::Qemu(_) => {
                self.ctx.log.warn(
                    "main",
                    "vmm",
                    "/dev/vhost-vsock is not usable: the guest gets no vsock device and connections to the vsock socket are closed unanswered",
                );
                VsockMode::Close
            }
        }
    }

    fn balloon_mut(&mut self) -> Result<&mut BalloonDevice, Fault> {
        self.balloon.as_mut().ok_or_else(no_balloon)
    }

    fn update_machine(&mut self, new: &MachineConfiguration) -> Result<Reply, Fault> {
        let machine_error =
            |detail: String| Fault::bad_request(format!("Machine config error: {detail}"));
        new.validate().map_err(|e| machine_error(e.to_string()))?;
        if self
            .balloon
            .as_ref()
            .is_some_and(|b| b.config.amount_mib as usize > new.mem_size_mib)
        {
            return Err(machine_error(
                "The memory size (MiB) is smaller than the previously set balloon device target size.".into(),
            ));
        }
        self.machine = new.clone().with_defaults();
        Ok(Reply::Empty)
    }

    fn unplug(&mut self, kind: DeviceKind, id: &str) -> Result<Reply, Fault> {
        self.require_pci()?;
        let removed = match kind {
            DeviceKind::Block => self.drives.remove(id),
            DeviceKind::Net => self.nets.remove(id),
            DeviceKind::Pmem => self.pmem.remove(id),
        };
        if removed {
            Ok(Reply::Empty)
        } else {
            // Approximate text: not recorded.
            Err(Fault::bad_request(format!(
                "Device manager error: Device {id} not found"
            )))
        }
    }
}
