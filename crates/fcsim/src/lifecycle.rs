//! Lifecycle actions of the fake VMM: start, pause/resume, snapshots, shutdown, crash.
//!
//! - InstanceStart checks what Firecracker checks without running a guest:
//!   a boot source, a loadable-looking kernel, readable drives. A failure
//!   leaves the VM `Not started`, so a corrected retry can succeed.
//! - After a start the process stays up until `SendCtrlAltDel` (exit 0 after
//!   the shutdown delay), the simulated crash (exit 1), or a signal.
//! - A failed snapshot load is fatal: the 400 is sent, then the process exits 1.

use std::time::Duration;

use banger_fcapi::{InstanceState, SnapshotCreateParams, SnapshotLoadParams, VmState};

use crate::error::SimError;
use crate::fault::Fault;
use crate::guest::{SerialConsole, kernel_cmdline, print_boot};
use crate::qemu::{LaunchSpec, QemuGuest, QemuOptions, SerialOut, cmdline::guest_cmdline};
use crate::snapshot::{self, SnapshotState};
use crate::vmm::{Backend, Reply, Vmm};
use crate::vsock::{VsockDevice, VsockMode};

/// How long a fatal load error waits so that its 400 reaches the client first.
const FATAL_REPLY_GRACE: Duration = Duration::from_millis(20);

impl Vmm {
    /// `PUT /actions {"action_type": "InstanceStart"}`.
    pub(crate) fn start(&mut self) -> Result<Reply, Fault> {
        let log = &self.ctx.log;
        if self.ctx.misbehaviour.refuse_start {
            log.warn(
                "main",
                "vmm",
                "fcsim: refusing InstanceStart (--sim-refuse-start)",
            );
            return Err(Fault::bad_request(
                "Start microvm error: Kvm error: Error creating KVM object: Permission denied (os error 13)",
            ));
        }
        let boot = self.boot.as_ref().ok_or_else(|| {
            Fault::bad_request(
                "Start microvm error: Cannot start microvm without kernel configuration.",
            )
        })?;
        boot.check_kernel()?;
        if let Some(drive) = self.drives.iter().find(|d| !d.readable()) {
            return Err(Fault::bad_request(format!(
                "Start microvm error: Unable to read the backing file of drive {}",
                drive.config.drive_id
            )));
        }
        let drives = self.drives.configs();
        let cmdline = kernel_cmdline(boot.boot_args(), &drives, self.ctx.enable_pci);
        if let Backend::Qemu(options) = &self.ctx.backend {
            let options = options.clone();
            return self.start_qemu(&options, cmdline, drives);
        }
        let serial_path = self
            .serial
            .as_ref()
            .and_then(|s| s.serial_out_path.as_deref());
        let console = SerialConsole::open(&cmdline, serial_path)?;

        self.state = InstanceState::Running;
        log.info(
            "main",
            "vmm",
            format!(
                "Starting microVM {}: {} vCPUs, {} MiB, kernel {}",
                self.ctx.instance_id,
                self.machine.vcpu_count,
                self.machine.mem_size_mib,
                boot.source.kernel_image_path
            ),
        );
        log.info(
            "main",
            "vmm",
            "fcsim: the guest is simulated; no guest code runs",
        );
        if let Err(e) = self.metrics.flush(&self.ctx.instance_id) {
            log.error("main", "vmm", format!("Failed to write metrics: {e}"));
        }
        print_boot(
            &console,
            &self.ctx.instance_id,
            &cmdline,
            &self.machine,
            &drives,
        );
        self.console = Some(console);
        self.schedule_crash();
        Ok(Reply::Empty)
    }

    /// InstanceStart with the QEMU backend: launch QEMU with what was configured.
    fn start_qemu(
        &mut self,
        options: &QemuOptions,
        cmdline: String,
        drives: Vec<banger_fcapi::Drive>,
    ) -> Result<Reply, Fault> {
        if let Some(drive) = drives.iter().find(|d| d.socket.is_some()) {
            return Err(Fault::bad_request(format!(
                "Start microvm error: banger's QEMU front (banger-fcqemu) does not support vhost-user drives ({}); give the drive a path_on_host",
                drive.drive_id
            )));
        }
        let boot = self.boot.as_ref().ok_or_else(|| {
            Fault::bad_request(
                "Start microvm error: Cannot start microvm without kernel configuration.",
            )
        })?;
        let host_khz = crate::qemu::host_khz();
        if host_khz.is_none() && options.accel == crate::qemu::Accel::Tcg {
            self.ctx.log.warn(
                "main",
                "vmm",
                "cannot read the host's TSC rate from /proc/cpuinfo: the guest may hang calibrating its TSC (add tsc_early_khz= to boot_args)",
            );
        }
        let source = boot.source.clone();
        let cmdline = guest_cmdline(&cmdline, options.accel, host_khz);
        let spec = self.qemu_spec(options, &source, cmdline, drives, false)?;
        self.launch_qemu(options, spec)
    }

    /// What QEMU runs with: the configured devices, `source`'s kernel and
    /// `cmdline` exactly; `incoming` for a snapshot load.
    fn qemu_spec(
        &self,
        options: &QemuOptions,
        source: &banger_fcapi::BootSource,
        cmdline: String,
        drives: Vec<banger_fcapi::Drive>,
        incoming: bool,
    ) -> Result<LaunchSpec, Fault> {
        let serial = match self
            .serial
            .as_ref()
            .and_then(|s| s.serial_out_path.as_deref())
        {
            Some(path) => {
                // Fails the start the way Firecracker does for an unusable file.
                std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .map_err(|e| {
                        Fault::bad_request(format!(
                            "Start microvm error: Error creating serial device: {e}"
                        ))
                    })?;
                SerialOut::File(path.into())
            }
            None => SerialOut::Stdout,
        };
        Ok(LaunchSpec {
            accel: options.accel,
            kernel: source.kernel_image_path.clone().into(),
            initrd: source.initrd_path.clone().map(Into::into),
            cmdline,
            vcpus: self.machine.vcpu_count,
            mem_mib: self.machine.mem_size_mib,
            drives,
            nets: self.nets.configs(),
            serial,
            qmp_socket: Default::default(),
            vsock_cid: self
                .vsock
                .as_ref()
                .filter(|v| v.mode == VsockMode::Bridge)
                .map(|v| v.config.guest_cid),
            entropy: self.entropy.is_some(),
            incoming,
        })
    }

    /// Launches QEMU for `spec`; the VM is `Running` (or, for an incoming
    /// migration, waits for it, paused).
    fn launch_qemu(&mut self, options: &QemuOptions, spec: LaunchSpec) -> Result<Reply, Fault> {
        self.ctx.log.info(
            "main",
            "vmm",
            format!(
                "Starting microVM {}: {} vCPUs, {} MiB, kernel {}",
                self.ctx.instance_id,
                self.machine.vcpu_count,
                self.machine.mem_size_mib,
                spec.kernel.display()
            ),
        );
        let guest = QemuGuest::launch(options, spec, self.ctx.log.clone(), self.ctx.exit.clone())?;
        self.qemu = Some(guest);
        self.state = InstanceState::Running;
        if let Err(e) = self.metrics.flush(&self.ctx.instance_id) {
            self.ctx
                .log
                .error("main", "vmm", format!("Failed to write metrics: {e}"));
        }
        Ok(Reply::Empty)
    }

    fn schedule_crash(&self) {
        let Some(delay) = self.ctx.misbehaviour.crash_after_start else {
            return;
        };
        let log = self.ctx.log.clone();
        let console = self.console.clone();
        let exit = self.ctx.exit.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let message = format!(
                "fcsim: simulated guest crash {} ms after InstanceStart (--sim-crash-after-start-ms)",
                delay.as_millis()
            );
            if let Some(console) = console {
                console.kernel_line(
                    delay.as_secs_f64(),
                    "Kernel panic - not syncing: fcsim simulated crash",
                );
            }
            log.error("fc_vcpu 0", "vmm", &message);
            eprintln!("{message}");
            log.info("main", "vmm", "Vmm is stopping.");
            let _ = exit.send(Err(SimError::GuestCrashed));
        });
    }

    /// `PUT /actions {"action_type": "FlushMetrics"}`.
    pub(crate) fn flush_metrics(&mut self) -> Result<Reply, Fault> {
        self.metrics
            .flush(&self.ctx.instance_id)
            .map(|()| Reply::Empty)
            .map_err(|e| {
                Fault::bad_request(format!("Internal VMM error: Error writing metrics: {e}"))
            })
    }

    /// `PUT /actions {"action_type": "SendCtrlAltDel"}`: the guest shuts down
    /// and Firecracker exits 0, unless the guest ignores the key press.
    pub(crate) fn ctrl_alt_del(&mut self) -> Result<Reply, Fault> {
        let log = self.ctx.log.clone();
        if let Some(guest) = &self.qemu {
            guest.command(
                "system_powerdown",
                "Internal VMM error: cannot press the guest's ACPI power button",
            )?;
            log.info(
                "main",
                "vmm",
                "SendCtrlAltDel: pressed the guest's ACPI power button (QMP system_powerdown)",
            );
            return Ok(Reply::Empty);
        }
        if self.ctx.misbehaviour.ignore_ctrl_alt_del {
            log.info(
                "main",
                "vmm",
                "fcsim: ignoring SendCtrlAltDel (--sim-ignore-ctrl-alt-del)",
            );
            return Ok(Reply::Empty);
        }
        let delay = self.ctx.misbehaviour.shutdown_delay;
        let console = self.console.clone();
        let exit = self.ctx.exit.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Some(console) = console {
                console.kernel_line(delay.as_secs_f64(), "reboot: Restarting system");
            }
            log.info("main", "vmm", "Vmm is stopping.");
            let _ = exit.send(Ok(0));
        });
        Ok(Reply::Empty)
    }

    /// `PATCH /vm` (pausing a paused VM or resuming a running one succeeds).
    pub(crate) fn pause_resume(&mut self, target: VmState) -> Result<Reply, Fault> {
        let (state, action, qmp) = match target {
            VmState::Paused => (InstanceState::Paused, "pause vm", "stop"),
            VmState::Resumed => (InstanceState::Running, "resume vm", "cont"),
        };
        if let Some(guest) = &self.qemu {
            guest.command(qmp, &format!("Internal VMM error: cannot {action}"))?;
        }
        self.state = state;
        self.ctx
            .log
            .info("main", "vmm", format!("'{action}' VMM action took 1 us."));
        Ok(Reply::Empty)
    }

    /// `PUT /snapshot/create` (the VM must be paused).
    pub(crate) fn create_snapshot(
        &mut self,
        params: &SnapshotCreateParams,
    ) -> Result<Reply, Fault> {
        if self.state != InstanceState::Paused {
            return Err(Fault::bad_request(
                "Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore unavailable while running",
            ));
        }
        match &self.qemu {
            Some(guest) => {
                guest.save(params.mem_file_path.as_ref())?;
                let mut config = self.full_config();
                // A restored front has no boot source of its own: QEMU's.
                if config.boot_source.is_none() {
                    config.boot_source = Some(guest.boot_source().clone());
                }
                snapshot::write_state(
                    params,
                    &self.ctx.instance_id,
                    config,
                    Some(guest.cmdline().to_string()),
                )?;
            }
            None => snapshot::create(params, &self.ctx.instance_id, self.full_config())?,
        }
        Ok(Reply::Empty)
    }

    /// `PUT /snapshot/load` on a fresh process.
    pub(crate) fn load_snapshot(&mut self, params: &SnapshotLoadParams) -> Result<Reply, Fault> {
        if self.boot_path {
            return Err(Fault::bad_request(
                "Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.",
            ));
        }
        let loaded = snapshot::read(params).and_then(|state| {
            let qemu = state
                .qemu_cmdline
                .clone()
                .zip(state.config.boot_source.clone());
            self.restore(state, params)?;
            if let Backend::Qemu(options) = &self.ctx.backend {
                let options = options.clone();
                self.receive_qemu(&options, qemu, params)?;
            }
            Ok(())
        });
        match loaded {
            Ok(()) => {
                let resume = params.resume_vm.unwrap_or(false);
                if resume && let Some(guest) = &self.qemu {
                    guest.command("cont", "Load snapshot error: cannot resume the VM")?;
                }
                self.state = if resume {
                    InstanceState::Running
                } else {
                    InstanceState::Paused
                };
                Ok(Reply::Empty)
            }
            Err(fault) => {
                self.ctx
                    .log
                    .error("main", "vmm", format!("Failed to load snapshot: {fault}"));
                let exit = self.ctx.exit.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(FATAL_REPLY_GRACE).await;
                    let _ = exit.send(Err(SimError::SnapshotLoad));
                });
                Err(fault)
            }
        }
    }

    /// The QEMU front's load: QEMU started paused with the restored
    /// devices and the snapshot's kernel and command line, then the
    /// migration stream of the memory file fed into it.
    fn receive_qemu(
        &mut self,
        options: &QemuOptions,
        qemu: Option<(String, banger_fcapi::BootSource)>,
        params: &SnapshotLoadParams,
    ) -> Result<(), Fault> {
        let Some((cmdline, source)) = qemu else {
            return Err(Fault::bad_request(
                "Load snapshot error: Failed to restore from snapshot: the snapshot was not written by banger's QEMU front (banger-fcqemu)",
            ));
        };
        let mem = match (&params.mem_backend, &params.mem_file_path) {
            (Some(b), _) => b.backend_path.clone(),
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
        };
        let drives = self.drives.configs();
        let spec = self.qemu_spec(options, &source, cmdline, drives, true)?;
        self.launch_qemu(options, spec)?;
        let guest = self
            .qemu
            .as_ref()
            .ok_or_else(|| Fault::bad_request("Load snapshot error: QEMU did not start"))?;
        guest.receive(mem.as_ref())
    }

    /// Rebuilds the devices recorded in a snapshot, applying the overrides.
    fn restore(&mut self, state: SnapshotState, params: &SnapshotLoadParams) -> Result<(), Fault> {
        let wrap = |fault: Fault| {
            Fault::bad_request(format!(
                "Load snapshot error: Failed to restore from snapshot: Failed to build microVM from snapshot: {}",
                fault.message
            ))
        };
        let config = state.config;
        if let Some(mut machine) = config.machine_config {
            if let Some(track) = params.track_dirty_pages.or(params.enable_diff_snapshots) {
                machine.track_dirty_pages = Some(track);
            }
            self.machine = machine;
        }
        for drive in config.drives {
            self.drives.insert(drive).map_err(wrap)?;
        }
        for mut iface in config.network_interfaces {
            if let Some(o) = params
                .network_overrides
                .iter()
                .flatten()
                .find(|o| o.iface_id == iface.iface_id)
            {
                iface.host_dev_name = o.host_dev_name.clone();
            }
            self.nets.insert(iface).map_err(wrap)?;
        }
        for pmem in config.pmem {
            self.pmem.insert(pmem).map_err(wrap)?;
        }
        if let Some(mut vsock) = config.vsock {
            if let Some(o) = &params.vsock_override {
                vsock.uds_path = o.uds_path.clone();
            }
            let mode = self.vsock_mode();
            self.vsock = Some(VsockDevice::bind_with(vsock, mode).map_err(wrap)?);
        }
        if let Some(balloon) = config.balloon {
            self.balloon = Some(
                crate::balloon::BalloonDevice::new(balloon, self.machine.mem_size_mib)
                    .map_err(wrap)?,
            );
        }
        if let Some(mmds) = config.mmds_config {
            self.mmds.configure(mmds, &self.nets).map_err(wrap)?;
        }
        self.entropy = config.entropy;
        self.cpu_config = config.cpu_config;
        if let Some(hotplug) = config.memory_hotplug {
            self.hotplug = Some(crate::memory_hotplug::MemoryHotplug::new(hotplug).map_err(wrap)?);
        }
        // The boot source is not restored (GET /vm/config shows it empty), but
        // the guest keeps the console it booted with.
        let boot_args = config
            .boot_source
            .and_then(|b| b.boot_args)
            .unwrap_or_default();
        let serial_path = self
            .serial
            .as_ref()
            .and_then(|s| s.serial_out_path.as_deref());
        if matches!(self.ctx.backend, Backend::Simulated) {
            self.console = Some(SerialConsole::open(&boot_args, serial_path)?);
        }
        self.ctx.log.info(
            "main",
            "vmm",
            format!("fcsim: restored snapshot taken by {}", state.instance_id),
        );
        Ok(())
    }
}
