//! Start, stop, restart, kill, delete and set. Each takes the VM's lock for
//! its whole duration; every state change is one store transaction
//! (`transition_vm`, a compare-and-set on the current state).

use std::sync::Arc;
use std::time::Duration;

use banger_api::rpc::{VmDeleteParams, VmSetParams, VmStopParams};
use banger_api::{ByteSize, Deleted, Vm, VmCreated, VmState, validate};

use crate::common::Persist;

use crate::common::VmFiles;
use crate::common::blocking;
use crate::common::error::error_chain;
use crate::common::{root_disk, work_disk};
use crate::vms::error::VmError;
use crate::vms::handles::VmHandles;
use crate::vms::launcher::{GuestNic, LaunchSpec, LaunchStage, last_lines};
use crate::vms::service::VMService;

/// States from which a VM may be started.
const STARTABLE: &[VmState] = &[VmState::Created, VmState::Stopped, VmState::Error];

impl VMService {
    /// `vm.start`.
    pub async fn start(self: &Arc<Self>, name: &str) -> Result<Vm, VmError> {
        let vm = self.resolve(name)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        if vm.state == VmState::Running {
            return Err(VmError::Conflict(format!(
                "VM {} is already running",
                vm.name
            )));
        }
        self.start_locked(&vm, None, std::time::Instant::now())
            .await
    }

    /// `vm.start_op`: check that the VM may start, then boot it in the
    /// background under an operation (stages 1–4 as for `vm.create`), so
    /// the CLI shows progress for the whole boot.
    pub async fn start_op(self: &Arc<Self>, name: &str) -> Result<VmCreated, VmError> {
        let requested = std::time::Instant::now();
        let vm = self.resolve(name)?;
        {
            let _g = self.vm_locks.lock(&vm.id).await;
            let vm = self.reload(&vm.id)?;
            if !STARTABLE.contains(&vm.state) {
                return Err(VmError::Conflict(format!(
                    "VM {} is {}; only a created, stopped or failed VM starts",
                    vm.name, vm.state
                )));
            }
        }
        let op = self.create_ops.start(
            "vm.start",
            vm.name.clone(),
            4,
            Persist::Always {
                vm_id: vm.id.clone(),
            },
        );
        let this = Arc::clone(self);
        let (vm_id, op_id) = (vm.id.clone(), op.id.clone());
        tokio::spawn(async move {
            let result = async {
                let _g = this.vm_locks.lock(&vm_id).await;
                let vm = this.reload(&vm_id)?;
                if vm.state == VmState::Running {
                    return Err(VmError::Conflict(format!(
                        "VM {} is already running",
                        vm.name
                    )));
                }
                this.op_stage(&op_id, 1, "preparing disks");
                this.start_locked(&vm, Some(&op_id), requested).await
            }
            .await;
            this.finish_op(&op_id, result.map(|_| ()));
        });
        Ok(VmCreated {
            vm,
            operation: Some(op),
        })
    }

    /// Boot `vm`; the caller holds its lock. On failure the VM is left in
    /// `error` with the reason, and nothing of the VMM remains.
    pub(crate) async fn start_locked(
        self: &Arc<Self>,
        vm: &Vm,
        op: Option<&str>,
        requested: std::time::Instant,
    ) -> Result<Vm, VmError> {
        if !self.root_disks.present(&self.layout.vm_dir(&vm.id)) {
            return Err(self.fail_start(vm, VmError::Conflict(format!(
                "VM {} has no root disk (its creation was interrupted); delete it with `banger vm delete {}` and create it again",
                vm.name, vm.name
            ))));
        }
        let image = match self.images.get(&vm.image_id) {
            Ok(i) if i.kernel_path.is_empty() => {
                return Err(self.fail_start(vm, VmError::Conflict(format!(
                    "image {} has no kernel (it was pulled without --kernel); pull or register it again with `--kernel FILE` or `--kernel-name NAME`",
                    i.name
                ))));
            }
            Ok(i) => i,
            Err(e) => return Err(self.fail_start(vm, e.into())),
        };
        {
            // A device-mapper root disk whose devices a host reboot removed
            // is re-assembled here from the image and its COW file.
            let strategy = Arc::clone(&self.root_disks);
            let (id, dir) = (vm.id.clone(), self.layout.vm_dir(&vm.id));
            let base = std::path::PathBuf::from(&image.rootfs_path);
            let ensured = blocking(move || Ok(strategy.ensure(&id, &base, &dir)?)).await;
            if let Err(e) = ensured {
                return Err(self.fail_start(vm, e));
            }
        }
        let began = std::time::Instant::now();
        let vm = self
            .store
            .transition_vm(&vm.id, STARTABLE, VmState::Starting, |v| {
                v.last_error = None;
            })?;
        let dir = self.layout.vm_dir(&vm.id);
        let work_began = std::time::Instant::now();
        let work = match self.ensure_work_disk(&vm, &image).await {
            Ok(w) => w,
            Err(e) => return Err(self.fail_start(&vm, e)),
        };
        let identity_began = std::time::Instant::now();
        if self.config.guest.sync_identity && !work.identity_written {
            // Keys and git identity onto the work disk, else the root disk
            // (workspace/authsync.rs); a work disk just cloned from its
            // template has them already (vms/work_disk.rs).
            let ws = Arc::clone(&self.ws);
            let disk = root_disk(&dir);
            let w = work.path.clone();
            let synced =
                tokio::task::spawn_blocking(move || ws.sync_identity(&disk, w.as_deref())).await;
            if let Ok(Err(e)) = synced {
                tracing::warn!(vm = %vm.name, error = %error_chain(&e), "cannot sync keys and git identity");
            }
        }
        let identity_done = std::time::Instant::now();
        let spec = LaunchSpec {
            name: vm.name.clone(),
            vmm_id: crate::vms::reconcile::vmm_id(&vm.id),
            run_dir: self.layout.vm_run_dir(&vm.id),
            kernel: image.kernel_path.clone().into(),
            initrd: image.initrd_path.clone().map(Into::into),
            boot_args: self.config.vm.kernel_args.clone(),
            root_disk: root_disk(&dir),
            work_disk: work.path,
            dir,
            vcpus: vm.vcpus,
            memory_mib: vm.memory_mib,
            guest: Some(GuestNic {
                ip: vm.guest_ip,
                mac: vm.guest_mac.clone(),
            }),
        };
        let progress = |stage: LaunchStage| {
            if let Some(op) = op {
                let (step, text) = match stage {
                    LaunchStage::Spawning => (2, "starting VMM"),
                    LaunchStage::Configuring => (3, "configuring VM"),
                    LaunchStage::Booting => (4, "booting"),
                };
                self.op_stage(op, step, text);
            }
        };
        let (handles, t) = match self.net.launch(&spec, progress).await {
            Ok(h) => h,
            Err(e) => return Err(self.fail_start(&vm, e)),
        };
        // The pid and start time are on disk: the intent record goes.
        let put = self.handles.put(&vm.id, &spec.dir, handles.clone());
        crate::vms::handles::remove_intent(&spec.dir);
        if let Err(e) = put {
            let _ = self.net.kill(&handles).await;
            self.net.release(&handles);
            return Err(self.fail_start(&vm, e));
        }
        // Readiness: `running` only once the guest answers (workspace/ready.rs).
        if let Err(e) = self
            .ws
            .wait_ready(vm.guest_ip, handles.vsock.as_deref(), handles.tap.is_some())
            .await
        {
            let _ = self.net.kill(&handles).await;
            self.net.release(&handles);
            self.handles.remove(&vm.id, &spec.dir);
            let console = last_lines(&VmFiles::console(&spec.dir), 15).join("\n");
            return Err(self.fail_start(
                &vm,
                VmError::Vmm {
                    vm: vm.name.clone(),
                    message: format!(
                        "the guest did not become reachable: {}; last console lines:\n{console}",
                        error_chain(&e)
                    ),
                },
            ));
        }
        let ready = std::time::Instant::now();
        let vm = self
            .store
            .transition_vm(&vm.id, &[VmState::Starting], VmState::Running, |v| {
                v.started_at = Some(handles.started_at);
            })?;
        self.net.publish(&handles);
        self.watch_exit(vm.id.clone(), handles, true);
        let us = |a: std::time::Instant, b: std::time::Instant| {
            b.saturating_duration_since(a).as_micros() as u64
        };
        tracing::info!(
            vm = %vm.name,
            request_to_instance_start_us = us(requested, t.start_sent),
            before_start_us = us(requested, began),
            work_disk_us = us(work_began, identity_began),
            identity_us = us(identity_began, identity_done),
            network_us = t.network.as_micros() as u64,
            configure_us = us(t.socket_ready, t.start_sent),
            vmm_startup_us = us(t.spawned, t.socket_ready),
            instance_start_us = us(t.start_sent, t.started),
            guest_boot_us = us(t.started, ready),
            request_to_ready_us = us(requested, ready),
            "VM running"
        );
        Ok(vm)
    }

    fn fail_start(&self, vm: &Vm, e: VmError) -> VmError {
        let reason = error_chain(&e);
        if let Err(se) = self.store.transition_vm(&vm.id, &[], VmState::Error, |v| {
            v.last_error = Some(reason.clone());
            v.started_at = None;
        }) {
            tracing::error!(vm = %vm.name, error = %se, "cannot record failed start");
        }
        e
    }

    /// Follow the VMM process; if it exits while the VM is still meant to
    /// run, mark the VM stopped with the reason and release what it held.
    /// `own_child` says whether this daemon spawned the VMM (then the
    /// privileged adapter records its exit status) or adopted it.
    pub(crate) fn watch_exit(self: &Arc<Self>, vm_id: String, h: VmHandles, own_child: bool) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = banger_fcproc::wait_exit(h.pid).await {
                tracing::warn!(pid = h.pid, error = %e, "cannot watch VMM; relying on reconcile");
                return;
            }
            this.on_vmm_exit(&vm_id, &h, own_child).await;
        });
    }

    async fn on_vmm_exit(&self, vm_id: &str, h: &VmHandles, own_child: bool) {
        let _g = self.vm_locks.lock(vm_id).await;
        // A stop, kill or restart already handled this process.
        if self.handles.get(vm_id).map(|c| c.pid) != Some(h.pid) {
            return;
        }
        let dir = self.layout.vm_dir(vm_id);
        let status = read_exit_status(&dir, own_child).await;
        let clean = status.as_deref() == Some("exited with status 0");
        let reason = if clean {
            None
        } else {
            let mut msg = format!(
                "the VMM (pid {}) {} while the VM was running",
                h.pid,
                status.as_deref().unwrap_or("exited")
            );
            let tail: Vec<String> = last_lines(&VmFiles::stderr(&dir), 2)
                .into_iter()
                .chain(last_lines(&VmFiles::vmm_log(&dir), 2))
                .collect();
            if !tail.is_empty() {
                msg.push_str("; last output: ");
                msg.push_str(&tail.join(" | "));
            }
            Some(msg)
        };
        self.release(vm_id);
        match self.store.transition_vm(
            vm_id,
            &[VmState::Running, VmState::Starting],
            VmState::Stopped,
            |v| {
                v.started_at = None;
                v.last_error = reason.clone();
            },
        ) {
            Ok(vm) => {
                tracing::warn!(vm = %vm.name, reason = ?reason, "VMM exited; VM marked stopped")
            }
            Err(e) => tracing::debug!(vm_id, error = %e, "VMM exit after state change"),
        }
    }

    /// Forget a VM's handles and remove its sockets.
    pub(crate) fn release(&self, vm_id: &str) {
        if let Some(h) = self.handles.remove(vm_id, &self.layout.vm_dir(vm_id)) {
            self.net.release(&h);
        }
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(vm_id);
    }

    /// `vm.stop`: Ctrl-Alt-Del, SIGKILL after the timeout.
    pub async fn stop(self: &Arc<Self>, p: &VmStopParams) -> Result<Vm, VmError> {
        if let Some(t) = p.timeout_secs {
            validate::stop_timeout_secs(t)?;
        }
        let vm = self.resolve(&p.vm)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        self.stop_locked(&vm, self.timeout(p.timeout_secs)).await
    }

    async fn stop_locked(&self, vm: &Vm, timeout: Duration) -> Result<Vm, VmError> {
        if !vm.state.has_vmm() {
            return Ok(vm.clone());
        }
        let vm = self
            .store
            .transition_vm(&vm.id, &[], VmState::Stopping, |_| {})?;
        if let Some(h) = self.handles.get(&vm.id) {
            let outcome = self.net.stop(&h, timeout).await?;
            tracing::info!(vm = %vm.name, ?outcome, "VM stopped");
        }
        self.release(&vm.id);
        Ok(self
            .store
            .transition_vm(&vm.id, &[], VmState::Stopped, |v| {
                v.started_at = None;
            })?)
    }

    /// `vm.restart`.
    pub async fn restart(self: &Arc<Self>, p: &VmStopParams) -> Result<Vm, VmError> {
        if let Some(t) = p.timeout_secs {
            validate::stop_timeout_secs(t)?;
        }
        let vm = self.resolve(&p.vm)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        let vm = self.stop_locked(&vm, self.timeout(p.timeout_secs)).await?;
        self.start_locked(&vm, None, std::time::Instant::now())
            .await
    }

    /// `vm.kill`.
    pub async fn kill(self: &Arc<Self>, name: &str) -> Result<Vm, VmError> {
        let vm = self.resolve(name)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        self.kill_locked(&vm).await
    }

    async fn kill_locked(&self, vm: &Vm) -> Result<Vm, VmError> {
        if !vm.state.has_vmm() {
            return Ok(vm.clone());
        }
        match self.handles.get(&vm.id) {
            Some(h) => {
                self.net.kill(&h).await?;
            }
            // No record (a start whose spawn was not recorded): find it by id.
            None => {
                self.net
                    .end_vmms_of(
                        &crate::vms::reconcile::vmm_id(&vm.id),
                        &self.layout.vm_run_dir(&vm.id),
                    )
                    .await?;
            }
        }
        self.release(&vm.id);
        Ok(self
            .store
            .transition_vm(&vm.id, &[], VmState::Stopped, |v| {
                v.started_at = None;
            })?)
    }

    /// `vm.delete`.
    pub async fn delete(self: &Arc<Self>, p: &VmDeleteParams) -> Result<Deleted, VmError> {
        let vm = self.resolve(&p.vm)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        if vm.state.has_vmm() {
            if !p.force {
                return Err(VmError::Conflict(format!(
                    "VM {} is running; stop it first (`banger vm stop {}`) or delete with --force",
                    vm.name, vm.name
                )));
            }
            self.kill_locked(&vm).await?;
        }
        // Whatever the records say, no VMM of this VM survives it.
        let ended = self
            .net
            .end_vmms_of(
                &crate::vms::reconcile::vmm_id(&vm.id),
                &self.layout.vm_run_dir(&vm.id),
            )
            .await?;
        if ended > 0 {
            tracing::warn!(vm = %vm.name, ended, "ended VMMs of the deleted VM that no record named");
        }
        self.store.delete_vm(&vm.id)?;
        // Its forwards' rows went with it; their listeners close now.
        self.forwards.close_vm(&vm.id).await;
        {
            // Its root-disk devices first (dm snapshot, loops), then its files.
            let strategy = Arc::clone(&self.root_disks);
            let (id, dir) = (vm.id.clone(), self.layout.vm_dir(&vm.id));
            let removed = blocking(move || Ok(strategy.remove(&id, &dir)?)).await;
            if let Err(e @ VmError::RootDisk(_)) = removed {
                tracing::warn!(vm = %vm.name, error = %e, "cannot remove the root disk's devices; reconcile will retry");
            }
        }
        for dir in [self.layout.vm_dir(&vm.id), self.layout.vm_run_dir(&vm.id)] {
            if let Err(e) = std::fs::remove_dir_all(&dir)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove VM files; reconcile will retry");
            }
        }
        self.vm_locks.forget(&vm.id);
        // Its pinned SSH host key goes with it (workspace/ssh.rs).
        let ws = Arc::clone(&self.ws);
        let id = vm.id.clone();
        let _ = tokio::task::spawn_blocking(move || ws.forget_host_key(&id)).await;
        tracing::info!(vm = %vm.name, "VM deleted");
        Ok(Deleted {
            id: vm.id,
            name: vm.name,
        })
    }

    /// `vm.set`: resources of a VM without a VMM; disks only grow.
    pub async fn set(self: &Arc<Self>, p: &VmSetParams) -> Result<Vm, VmError> {
        if p.vcpus.is_none() && p.memory_mib.is_none() && p.disk.is_none() && p.work_disk.is_none()
        {
            return Err(VmError::Invalid(
                "nothing to change: give --vcpus, --memory, --disk or --work-disk".into(),
            ));
        }
        if let Some(n) = p.vcpus {
            validate::vcpus(n)?;
        }
        if let Some(m) = p.memory_mib {
            validate::memory_mib(m)?;
        }
        if let Some(d) = p.disk {
            validate::disk_size("disk", d)?;
        }
        if let Some(w) = p.work_disk {
            validate::disk_size("work disk", w)?;
        }
        let vm = self.resolve(&p.vm)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        if vm.state.has_vmm() {
            return Err(VmError::Conflict(format!(
                "VM {} is {}; stop it first with `banger vm stop {}`",
                vm.name, vm.state, vm.name
            )));
        }
        // Every check first, so a refused request changes nothing.
        if let Some(d) = p.disk {
            if d.bytes() < vm.disk_bytes {
                return Err(VmError::Invalid(format!(
                    "disk size {d} is smaller than the current {}; disks only grow",
                    ByteSize(vm.disk_bytes)
                )));
            }
            // Within what the disk's ext4 can grow to (a dm snapshot
            // refuses any growth below).
            let root = root_disk(&self.layout.vm_dir(&vm.id));
            if d.bytes() > vm.disk_bytes
                && self.root_disks.kind() == banger_dmsnap::StrategyKind::Copy
                && root.is_file()
            {
                crate::vms::create::check_growable(&root, d, "disk")?;
            }
        }
        if let Some(w) = p.work_disk {
            if w.bytes() < vm.work_disk_bytes {
                return Err(VmError::Invalid(format!(
                    "work disk size {w} is smaller than the current {}; disks only grow",
                    ByteSize(vm.work_disk_bytes)
                )));
            }
            if vm.work_disk_bytes == 0 {
                return Err(VmError::Conflict(format!(
                    "VM {} has no work disk (its image has no work seed); run `banger managed-seed refresh` and create a new VM",
                    vm.name
                )));
            }
            if w.bytes() > vm.work_disk_bytes {
                // The work disk, or the seed it will be made from.
                let disk = work_disk(&self.layout.vm_dir(&vm.id));
                let fs = if disk.is_file() {
                    Some(disk)
                } else {
                    self.images
                        .get(&vm.image_id)
                        .ok()
                        .and_then(|i| i.work_seed_path.map(std::path::PathBuf::from))
                };
                if let Some(fs) = fs.filter(|f| f.is_file()) {
                    crate::vms::create::check_growable(&fs, w, "work disk")?;
                }
            }
        }
        let mut disk_bytes = vm.disk_bytes;
        if let Some(d) = p.disk
            && d.bytes() > vm.disk_bytes
        {
            // Through the root-disk strategy: a copy grows (file and
            // ext4), a device-mapper snapshot refuses clearly.
            let strategy = Arc::clone(&self.root_disks);
            let (id, dir) = (vm.id.clone(), self.layout.vm_dir(&vm.id));
            let size = d.bytes();
            blocking(move || Ok::<_, VmError>(strategy.grow(&id, &dir, size)))
                .await?
                .map_err(|e| match e {
                    e @ banger_dmsnap::RootDiskError::CannotGrow { .. } => {
                        VmError::Invalid(e.to_string())
                    }
                    e => VmError::from(e),
                })?;
            disk_bytes = size;
        }
        let mut work_disk_bytes = vm.work_disk_bytes;
        if let Some(w) = p.work_disk {
            let disk = work_disk(&self.layout.vm_dir(&vm.id));
            let size = w.bytes();
            if size > vm.work_disk_bytes && disk.is_file() {
                blocking(move || -> Result<(), VmError> {
                    banger_imagemgr::grow_file(&disk, size)?;
                    banger_imagemgr::resize_ext4(&disk)?;
                    Ok(())
                })
                .await?;
            }
            work_disk_bytes = size;
        }
        let vm = self.store.transition_vm(
            &vm.id,
            &[VmState::Created, VmState::Stopped, VmState::Error],
            vm.state,
            |v| {
                v.work_disk_bytes = work_disk_bytes;
                if let Some(n) = p.vcpus {
                    v.vcpus = n;
                }
                if let Some(m) = p.memory_mib {
                    v.memory_mib = m;
                }
                v.disk_bytes = disk_bytes;
            },
        )?;
        Ok(vm)
    }

    fn reload(&self, id: &str) -> Result<Vm, VmError> {
        self.store
            .get_vm(id)?
            .ok_or_else(|| VmError::DeletedMeanwhile)
    }

    fn timeout(&self, secs: Option<u64>) -> Duration {
        secs.map(Duration::from_secs)
            .unwrap_or_else(|| self.config.stop_timeout())
    }
}

/// The exit line the privileged adapter writes for the VMMs it spawned; it
/// may land a moment after the process is seen gone (longer on a loaded
/// host). An adopted VMM has no such line.
async fn read_exit_status(dir: &std::path::Path, own_child: bool) -> Option<String> {
    let f = VmFiles::exit_status(dir);
    let tries = if own_child { 300 } else { 1 };
    for _ in 0..tries {
        // The writer creates the file before it writes the line: an empty
        // file means "not yet", and only a complete line counts.
        if let Ok(s) = std::fs::read_to_string(&f)
            && s.ends_with('\n')
        {
            return Some(s.trim().to_string());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
