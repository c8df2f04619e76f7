//! `VmmLauncher`: the host side of a VM — the Firecracker process (spawn
//! through the privileged-ops seam, API configuration, stop, kill) and,
//! when `network.enabled`, its network: a TAP from the warm pool, NAT, the
//! `eth0` interface and `ip=` kernel argument, and its `.vm` DNS record
//! (the network itself is [`crate::host_network::HostNetwork`]).
//!
//! It has no access to VM state: callers pass what an operation needs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use banger_fcapi::{BootSource, Drive, Logger, MachineConfiguration, Metrics, Vsock};
use banger_fcproc::{FirecrackerClient, StopOutcome};
use banger_privops::{FoundVmm, PrivOpsError, PrivilegedOps, SpawnVmm, VMM_LOCK_HELD, VmmSignal};

use crate::common::error::error_chain;
use crate::common::{PrivCallError, VmFiles, privileged};
use crate::host_network::HostNetwork;
use crate::vms::VmError;
use crate::vms::handles::{self, VmHandles};

/// Guest CID of every VM's vsock device (hybrid vsock: the host side is a
/// Unix socket per VM, so CIDs need not differ between VMs).
pub const GUEST_CID: u32 = 3;

/// Everything needed to boot one VM.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// VM name (for messages).
    pub name: String,
    /// VMM `--id`.
    pub vmm_id: String,
    /// The VM's state directory (logs, disks).
    pub dir: PathBuf,
    /// The VM's runtime directory (sockets).
    pub run_dir: PathBuf,
    /// Kernel image.
    pub kernel: PathBuf,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub boot_args: String,
    /// Root disk.
    pub root_disk: PathBuf,
    /// Persistent work disk (second drive, `work`, `/dev/vdb`), if any.
    pub work_disk: Option<PathBuf>,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// The guest's network identity; `None` boots without a NIC.
    pub guest: Option<GuestNic>,
}

/// A guest's address and MAC (from the VM row).
#[derive(Debug, Clone)]
pub struct GuestNic {
    /// Static IPv4 address.
    pub ip: std::net::Ipv4Addr,
    /// MAC address.
    pub mac: String,
}

/// Boot steps reported to the caller's progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchStage {
    /// Spawning the VMM and waiting for its API socket.
    Spawning,
    /// Sending the machine configuration.
    Configuring,
    /// `InstanceStart` sent.
    Booting,
}

/// When the steps of a launch happened, for the daemon's log and the
/// benchmark: the VMM's own start-up (spawn to API socket) is told apart
/// from banger's work.
#[derive(Debug, Clone, Copy)]
pub struct LaunchTimings {
    /// How long the network took (TAP from the pool or made, NAT); zero
    /// without a network.
    pub network: std::time::Duration,
    /// Just before the VMM was spawned.
    pub spawned: std::time::Instant,
    /// When its API socket answered.
    pub socket_ready: std::time::Instant,
    /// When `InstanceStart` was sent.
    pub start_sent: std::time::Instant,
    /// When `InstanceStart` was acknowledged.
    pub started: std::time::Instant,
}

/// The host-side service.
pub struct VmmLauncher {
    privops: Arc<dyn PrivilegedOps>,
    firecracker_bin: PathBuf,
    socket_timeout: Duration,
    net: Option<Arc<HostNetwork>>,
    procfs: banger_fcproc::ProcFs,
}

impl VmmLauncher {
    /// Build the service.
    pub fn new(
        privops: Arc<dyn PrivilegedOps>,
        firecracker_bin: PathBuf,
        socket_timeout: Duration,
    ) -> Self {
        Self {
            privops,
            firecracker_bin,
            socket_timeout,
            net: None,
            procfs: banger_fcproc::ProcFs::host(),
        }
    }

    /// Read VMM identities from `procfs` (the host's `/proc` by default).
    pub fn with_procfs(mut self, procfs: banger_fcproc::ProcFs) -> Self {
        self.procfs = procfs;
        self
    }

    /// Give VMs a network through `net`.
    pub fn with_network(mut self, net: Arc<HostNetwork>) -> Self {
        self.net = Some(net);
        self
    }

    /// The network plumbing, when enabled.
    pub fn network(&self) -> Option<&Arc<HostNetwork>> {
        self.net.as_ref()
    }

    /// Make sure guest `guest_ip` behind `tap` reaches the outside (NAT
    /// table and forwarding; a no-op once applied, or when NAT or the
    /// network is off). The caller resolves the VM's address and TAP.
    pub async fn ensure_nat(&self, guest_ip: std::net::Ipv4Addr, tap: &str) -> Result<(), VmError> {
        match &self.net {
            Some(net) => Ok(net
                .nat
                .ensure(net.privops(), &net.settings, guest_ip, tap)
                .await?),
            None => Ok(()),
        }
    }

    /// Publish `name.vm` for a VM that became running.
    pub fn publish(&self, h: &VmHandles) {
        if let (Some(net), Some((name, ip))) = (&self.net, &h.dns) {
            net.dns.publish(name, *ip);
        }
    }

    /// The resolved VMM binary.
    pub fn firecracker_bin(&self) -> &Path {
        &self.firecracker_bin
    }

    /// Spawn, configure and start a VMM. On failure nothing is left
    /// running and the sockets are removed. On success the VM directory
    /// still holds the intent record (`handles::write_intent`): the caller
    /// removes it once `handles.json` is written.
    pub async fn launch(
        &self,
        spec: &LaunchSpec,
        mut progress: impl FnMut(LaunchStage),
    ) -> Result<(VmHandles, LaunchTimings), VmError> {
        progress(LaunchStage::Spawning);
        std::fs::create_dir_all(&spec.run_dir)
            .map_err(VmError::io("cannot create", &spec.run_dir))?;
        let api_sock = VmFiles::api_sock(&spec.run_dir);
        let vsock = VmFiles::vsock(&spec.run_dir);
        remove_if_exists(&api_sock)?;
        remove_if_exists(&vsock)?;
        remove_if_exists(&VmFiles::exit_status(&spec.dir))?;
        // Firecracker overwrites logs from offset 0 without truncating.
        for f in [VmFiles::vmm_log(&spec.dir), VmFiles::metrics(&spec.dir)] {
            std::fs::write(&f, b"").map_err(VmError::io("cannot reset", &f))?;
        }
        let mut spec_net = spec.clone();
        let mut tap = None;
        let net_began = std::time::Instant::now();
        if let (Some(net), Some(g)) = (&self.net, &spec.guest) {
            net.ensure_up().await?;
            let t = net.take_tap().await?;
            if let Err(e) = self.ensure_nat(g.ip, &t).await {
                net.give_back(t);
                return Err(e);
            }
            spec_net.boot_args = format!(
                "{} {}",
                spec.boot_args,
                net.settings.kernel_ip_arg_named(g.ip, &spec.name)
            );
            tap = Some(t);
        }
        let network = net_began.elapsed();
        let spec = &spec_net;
        let started_at = banger_store::now_millis();
        let intent = VmHandles {
            pid: 0,
            start_time: None,
            api_sock: api_sock.clone(),
            vsock: Some(vsock.clone()),
            binary: self.firecracker_bin.clone(),
            started_at,
            dns: tap
                .as_ref()
                .and(spec.guest.as_ref())
                .map(|g| (spec.name.clone(), g.ip)),
            tap,
        };
        let give_back = |h: &VmHandles| {
            handles::remove_intent(&spec.dir);
            if let (Some(net), Some(t)) = (&self.net, &h.tap) {
                net.give_back(t.clone());
            }
        };
        // The intent first: a daemon killed from here on leaves a record
        // (and the TAP in it) that reconcile acts on.
        if let Err(e) = handles::write_intent(&spec.dir, &intent) {
            give_back(&intent);
            return Err(e);
        }
        let spawned = std::time::Instant::now();
        let (pid, start_time) = match self.spawn_exclusive(spec, &api_sock, &vsock).await {
            Ok(p) => p,
            Err(e) => {
                give_back(&intent);
                return Err(e);
            }
        };
        let handles = VmHandles {
            pid,
            start_time: Some(start_time),
            ..intent
        };
        match self
            .configure_and_start(spec, &handles, &mut progress)
            .await
        {
            Ok((socket_ready, start_sent)) => Ok((
                handles,
                LaunchTimings {
                    network,
                    spawned,
                    socket_ready,
                    start_sent,
                    started: std::time::Instant::now(),
                },
            )),
            Err(message) => {
                let _ = self.kill(&handles).await;
                self.release(&handles);
                handles::remove_intent(&spec.dir);
                let tail = last_lines(&VmFiles::stderr(&spec.dir), 3);
                let message = if tail.is_empty() {
                    message
                } else {
                    format!("{message}; VMM stderr: {}", tail.join(" | "))
                };
                Err(VmError::Vmm {
                    vm: spec.name.clone(),
                    message,
                })
            }
        }
    }

    /// Spawn the VMM. When the VM's lock is held, a VMM this daemon has no
    /// record of still runs on its disks (a daemon killed between a spawn
    /// and its records): it is found by its `--id`, killed, and the spawn
    /// tried again; never are two VMMs run on one VM's disks.
    async fn spawn_exclusive(
        &self,
        spec: &LaunchSpec,
        api_sock: &Path,
        vsock: &Path,
    ) -> Result<(u32, u64), VmError> {
        let req = SpawnVmm {
            binary: self.firecracker_bin.clone(),
            api_sock: api_sock.to_path_buf(),
            id: spec.vmm_id.clone(),
            console_log: VmFiles::console(&spec.dir),
            stderr_log: VmFiles::stderr(&spec.dir),
            exit_status_file: VmFiles::exit_status(&spec.dir),
            lock_file: VmFiles::lock(&spec.dir),
        };
        let mut ended = 0;
        for attempt in 0..20 {
            let r = req.clone();
            match privileged(&self.privops, move |p| p.spawn_vmm(r)).await {
                Err(PrivCallError::Failed(PrivOpsError::Refused { reason, .. }))
                    if reason.contains(VMM_LOCK_HELD) =>
                {
                    if attempt == 0 {
                        ended = self.end_vmms_of(&spec.vmm_id, &spec.run_dir).await?;
                        tracing::warn!(vm = %spec.name, ended, "a VMM banger had no record of held the VM's lock; ended it");
                        // It may have bound its sockets meanwhile.
                        remove_if_exists(api_sock)?;
                        remove_if_exists(vsock)?;
                    }
                    // The lock goes with the last process holding it.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other.map_err(VmError::from),
            }
        }
        Err(VmError::Conflict(format!(
            "{VMM_LOCK_HELD} of VM {} ({} held; {ended} VMM(s) with its id ended, but the lock is still held); find the process with `fuser {}` and end it",
            spec.name,
            VmFiles::lock(&spec.dir).display(),
            VmFiles::lock(&spec.dir).display()
        )))
    }

    /// Every live VMM of the owner (uid and executable checked) that
    /// carries an `--id` and an `--api-sock` below `runtime_dir` (so the
    /// VMMs of another state directory of the same user are left alone),
    /// in one pass over `/proc` (on a blocking thread).
    pub async fn find_vmms(&self, runtime_dir: &Path) -> Vec<FoundVmm> {
        let binary = self.firecracker_bin.clone();
        let uid = nix::unistd::geteuid().as_raw();
        let under = runtime_dir.to_path_buf();
        let proc_root = self.procfs.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut found = banger_privops::scan_vmms(&proc_root, uid, &binary);
            found.retain(|f| f.api_sock.as_ref().is_some_and(|a| a.starts_with(&under)));
            found
        })
        .await
        .unwrap_or_default()
    }

    /// SIGKILL every VMM whose `--id` is `vmm_id` and whose API socket is
    /// in `run_dir` (the VM's runtime directory), and wait for each to be
    /// gone; returns how many were signalled.
    pub async fn end_vmms_of(&self, vmm_id: &str, run_dir: &Path) -> Result<usize, VmError> {
        let mut found = self.find_vmms(run_dir).await;
        found.retain(|f| f.id == vmm_id);
        self.end_found(found).await
    }

    /// SIGKILL the given VMMs (through the helper, which checks uid, start
    /// time and executable) and wait for each to be gone. A refusal (the
    /// process changed between the scan and the signal) is logged and the
    /// others are still ended.
    pub async fn end_found(&self, found: Vec<FoundVmm>) -> Result<usize, VmError> {
        let mut n = 0;
        for f in found {
            let (pid, start_time) = (f.pid, f.start_time);
            match privileged(&self.privops, move |p| {
                p.signal_vmm(pid, start_time, VmmSignal::Kill)
            })
            .await
            {
                Ok(true) => {
                    n += 1;
                    let _ = banger_fcproc::wait_exit_timeout(f.pid, Duration::from_secs(5)).await;
                }
                Ok(false) => {}
                Err(PrivCallError::Failed(e @ PrivOpsError::Refused { .. })) => {
                    tracing::warn!(pid = f.pid, id = %f.id, error = %e, "not ending a VMM the helper refused to signal");
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }

    /// The start time of `pid` when it is a live VMM of the owner (uid and
    /// executable checked): how handles of older versions, without a start
    /// time, are completed at adoption.
    pub fn vmm_start_time(&self, pid: u32) -> Option<u64> {
        let ident = banger_privops::read_identity(&self.procfs.root, pid)?;
        let ok = ident.uid == nix::unistd::geteuid().as_raw()
            && !ident.zombie
            && ident.runs(&self.firecracker_bin);
        ok.then_some(ident.start_time)
    }

    async fn configure_and_start(
        &self,
        spec: &LaunchSpec,
        h: &VmHandles,
        progress: &mut impl FnMut(LaunchStage),
    ) -> Result<(std::time::Instant, std::time::Instant), String> {
        banger_fcproc::wait_for_socket(&h.api_sock, self.socket_timeout, h.pid)
            .await
            .map_err(|e| format!("the VMM did not come up: {}", error_chain(&e)))?;
        let socket_ready = std::time::Instant::now();
        progress(LaunchStage::Configuring);
        let fc = FirecrackerClient::new(&h.api_sock);
        let step = |e: banger_fcproc::FcClientError| error_chain(&e);
        fc.put_logger(&Logger {
            log_path: Some(VmFiles::vmm_log(&spec.dir).display().to_string()),
            level: Some(banger_fcapi::LogLevel::Info),
            show_level: Some(true),
            show_log_origin: Some(false),
            module: None,
        })
        .await
        .map_err(step)?;
        fc.put_metrics(&Metrics::new(
            VmFiles::metrics(&spec.dir).display().to_string(),
        ))
        .await
        .map_err(step)?;
        let vcpus =
            u8::try_from(spec.vcpus).map_err(|_| format!("{} vCPUs is too many", spec.vcpus))?;
        fc.put_machine_config(&MachineConfiguration::new(vcpus, spec.memory_mib as usize))
            .await
            .map_err(step)?;
        fc.put_boot_source(&BootSource {
            kernel_image_path: spec.kernel.display().to_string(),
            boot_args: Some(spec.boot_args.clone()),
            initrd_path: spec.initrd.as_ref().map(|p| p.display().to_string()),
        })
        .await
        .map_err(step)?;
        fc.put_drive(&Drive::new(
            "rootfs",
            spec.root_disk.display().to_string(),
            true,
        ))
        .await
        .map_err(step)?;
        // Second, so the guest sees it as /dev/vdb (the fstab line seeding wrote).
        if let Some(work) = &spec.work_disk {
            fc.put_drive(&Drive::new("work", work.display().to_string(), false))
                .await
                .map_err(step)?;
        }
        if let (Some(tap), Some(g)) = (&h.tap, &spec.guest) {
            let mut nic = banger_fcapi::NetworkInterface::new("eth0", tap.as_str());
            nic.guest_mac = Some(
                g.mac
                    .parse()
                    .map_err(|e| format!("invalid guest MAC {}: {e:?}", g.mac))?,
            );
            fc.put_network_interface(&nic).await.map_err(step)?;
        }
        if let Some(vsock) = &h.vsock {
            fc.put_vsock(&Vsock {
                guest_cid: GUEST_CID,
                uds_path: vsock.display().to_string(),
                vsock_id: None,
            })
            .await
            .map_err(step)?;
        }
        progress(LaunchStage::Booting);
        let start_sent = std::time::Instant::now();
        fc.instance_start().await.map_err(step)?;
        Ok((socket_ready, start_sent))
    }

    /// Ctrl-Alt-Del, wait up to `timeout`, then SIGKILL. Returns after the
    /// process is gone.
    pub async fn stop(&self, h: &VmHandles, timeout: Duration) -> Result<StopOutcome, VmError> {
        let fc = FirecrackerClient::new(&h.api_sock);
        let outcome = banger_fcproc::graceful_shutdown(&fc, h.pid, timeout)
            .await
            .unwrap_or(StopOutcome::TimedOut);
        if outcome == StopOutcome::TimedOut {
            self.kill(h).await?;
        }
        Ok(outcome)
    }

    /// SIGKILL the VMM and wait for it to be gone. `Ok(false)` when it was
    /// already gone.
    pub async fn kill(&self, h: &VmHandles) -> Result<bool, VmError> {
        let Some(start_time) = h.start_time.or_else(|| self.vmm_start_time(h.pid)) else {
            return Ok(false);
        };
        // Gone, or the pid now names another process: nothing of ours.
        if !banger_privops::is_same_process(&self.procfs.root, h.pid, start_time) {
            return Ok(false);
        }
        let pid = h.pid;
        let delivered = privileged(&self.privops, move |p| {
            p.signal_vmm(pid, start_time, VmmSignal::Kill)
        })
        .await?;
        if delivered {
            let _ = banger_fcproc::wait_exit_timeout(h.pid, Duration::from_secs(5)).await;
        }
        Ok(delivered)
    }

    /// Release what a stopped VM held: its sockets, its `.vm` record and
    /// its TAP (back to the pool, or deleted when the pool is full).
    pub fn release(&self, h: &VmHandles) {
        let _ = std::fs::remove_file(&h.api_sock);
        if let Some(v) = &h.vsock {
            let _ = std::fs::remove_file(v);
        }
        if let Some(net) = &self.net {
            if let Some((name, ip)) = &h.dns
                && net.dns.zone.addr_of(&name.to_ascii_lowercase()) == Some(*ip)
            {
                net.dns.withdraw(name);
            }
            if let Some(tap) = &h.tap {
                net.give_back(tap.clone());
            }
        }
    }
}

fn remove_if_exists(p: &Path) -> Result<(), VmError> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(VmError::io("cannot remove", p)(e)),
    }
}

/// The last `n` non-empty lines of a text file (lossy UTF-8).
pub fn last_lines(path: &Path, n: usize) -> Vec<String> {
    let Ok(data) = read_tail(path, 64 * 1024) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&data);
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Up to `max` trailing bytes of a file.
/// The complete lines of `path` from byte `since` on (at most `max`
/// bytes) and the offset after the last of them. `since` past the end (the
/// file was truncated or rotated) reads from the start; a partial last
/// line is left for the next call.
pub fn read_since(path: &Path, since: u64, max: u64) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = if since > len { 0 } else { since };
    f.seek(SeekFrom::Start(from))?;
    let mut buf = Vec::new();
    f.take(max).read_to_end(&mut buf)?;
    let keep = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    buf.truncate(keep);
    Ok((buf, from + keep as u64))
}

/// The last `max` bytes of `path`.
pub fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod read_tests {
    use super::read_since;

    #[test]
    fn read_since_returns_complete_lines_and_restarts_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("console.log");
        std::fs::write(&f, "one\ntwo\npart").unwrap();
        let (data, end) = read_since(&f, 0, 1 << 20).unwrap();
        assert_eq!((data.as_slice(), end), (&b"one\ntwo\n"[..], 8));
        let (data, end) = read_since(&f, end, 1 << 20).unwrap();
        assert_eq!((data.as_slice(), end), (&b""[..], 8), "partial line waits");
        std::fs::write(&f, "one\ntwo\npartial\nthree\n").unwrap();
        let (data, end) = read_since(&f, end, 1 << 20).unwrap();
        assert_eq!((data.as_slice(), end), (&b"partial\nthree\n"[..], 22));
        // Rotated: shorter than the offset, read from the start.
        std::fs::write(&f, "new\n").unwrap();
        let (data, end) = read_since(&f, end, 1 << 20).unwrap();
        assert_eq!((data.as_slice(), end), (&b"new\n"[..], 4));
    }
}
