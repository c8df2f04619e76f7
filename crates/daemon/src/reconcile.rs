//! Reconcile at daemon start: make the store, the VM directories and the
//! host agree after a crash or a host reboot.
//!
//! For each VM: a VMM still running (same PID *and* same API socket on its
//! command line, so a recycled PID never counts) is adopted; a VM whose VMM
//! is gone is marked stopped and what it held is released; a VM whose
//! creation was interrupted before its disk existed is marked `error`.
//! Operations a dead daemon left running are marked failed, and VM
//! directories that belong to no VM are removed.

use std::collections::HashSet;
use std::sync::Arc;

use banger_api::VmState;
use banger_fcproc::FirecrackerClient;

use crate::error::DaemonError;
use crate::handles;
use crate::host_network::VmFiles;
use crate::vm_service::VMService;

/// What reconcile did, for the log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// VMs whose running VMM was adopted.
    pub adopted: Vec<String>,
    /// VMs marked stopped because their VMM was gone.
    pub reaped: Vec<String>,
    /// VMs marked error (interrupted create or start).
    pub errored: Vec<String>,
    /// Orphan VM directories removed.
    pub removed_dirs: usize,
    /// Operations marked failed.
    pub failed_ops: usize,
    /// Stale root-disk dm devices removed.
    pub stale_dm: usize,
    /// Stale root-disk loop devices detached.
    pub stale_loops: usize,
}

impl VMService {
    /// Run the VM part of reconcile.
    pub async fn reconcile(self: &Arc<Self>) -> Result<ReconcileReport, DaemonError> {
        let mut report = ReconcileReport {
            failed_ops: self.store.fail_running_operations(
                "bangerd stopped while this operation ran; check the VM with `banger vm show`",
            )?,
            ..Default::default()
        };
        let vms = self.store.list_vms()?;
        for vm in &vms {
            let _g = self.vm_locks.lock(&vm.id).await;
            let dir = self.layout.vm_dir(&vm.id);
            if vm.state == VmState::Created && !self.root_disks.present(&dir) {
                self.store.transition_vm(&vm.id, &[VmState::Created], VmState::Error, |v| {
                    v.last_error = Some("creation was interrupted before the root disk was ready; delete the VM and create it again".into());
                })?;
                report.errored.push(vm.name.clone());
                continue;
            }
            if !vm.state.has_vmm() {
                continue;
            }
            let alive = handles::read_file(&dir).filter(|h| {
                banger_privops::vmm_matches(std::path::Path::new("/proc"), h.pid, &h.api_sock)
            });
            match alive {
                Some(h) if self.booted(&h.api_sock).await && vm.state != VmState::Stopping => {
                    self.handles.adopt(&vm.id, h.clone());
                    self.net.publish(&h);
                    if vm.state != VmState::Running {
                        self.store
                            .transition_vm(&vm.id, &[], VmState::Running, |v| {
                                v.started_at = Some(h.started_at);
                            })?;
                    }
                    self.watch_exit(vm.id.clone(), h, false);
                    report.adopted.push(vm.name.clone());
                }
                Some(h) => {
                    // Half-started or half-stopped when the daemon died.
                    let _ = self.net.kill(&h).await;
                    self.net.release(&h);
                    self.handles.remove(&vm.id, &dir);
                    let interrupted_start = vm.state == VmState::Starting;
                    self.store.transition_vm(
                        &vm.id,
                        &[],
                        if interrupted_start {
                            VmState::Error
                        } else {
                            VmState::Stopped
                        },
                        |v| {
                            v.started_at = None;
                            if interrupted_start {
                                v.last_error = Some(
                                    "bangerd stopped while the VM was starting; start it again"
                                        .into(),
                                );
                            }
                        },
                    )?;
                    if interrupted_start {
                        report.errored.push(vm.name.clone());
                    } else {
                        report.reaped.push(vm.name.clone());
                    }
                }
                None => {
                    if let Some(h) = handles::read_file(&dir) {
                        self.net.release(&h);
                    }
                    self.handles.remove(&vm.id, &dir);
                    let status = std::fs::read_to_string(VmFiles::exit_status(&dir))
                        .map(|s| s.trim().to_string())
                        .unwrap_or_else(|_| "was gone".into());
                    self.store
                        .transition_vm(&vm.id, &[], VmState::Stopped, |v| {
                            v.started_at = None;
                            v.last_error =
                                Some(format!("the VMM {status} while bangerd was not running"));
                        })?;
                    report.reaped.push(vm.name.clone());
                }
            }
        }
        let known: HashSet<String> = vms.iter().map(|v| v.id.clone()).collect();
        {
            // Root-disk devices of VMs that no longer exist (banger-dmsnap).
            let strategy = Arc::clone(&self.root_disks);
            let (vms_dir, known) = (self.layout.state_dir.join("vms"), known.clone());
            match tokio::task::spawn_blocking(move || strategy.remove_stale(&vms_dir, &known)).await
            {
                Ok(Ok(stale)) => {
                    report.stale_dm = stale.dm_removed.len();
                    report.stale_loops = stale.loops_detached.len();
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot remove stale root-disk devices"),
                Err(e) => tracing::warn!(error = %e, "stale root-disk device task failed"),
            }
        }
        report.removed_dirs = self.remove_orphan_dirs(known);
        tracing::info!(?report, "reconcile done");
        Ok(report)
    }

    async fn booted(&self, api_sock: &std::path::Path) -> bool {
        let fc = FirecrackerClient::new(api_sock);
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(2), fc.instance_info()).await,
            Ok(Ok(info)) if info.state == banger_fcapi::InstanceState::Running
        )
    }

    fn remove_orphan_dirs(&self, known: HashSet<String>) -> usize {
        let mut removed = 0;
        for base in [
            self.layout.state_dir.join("vms"),
            self.layout.runtime_dir.join("vms"),
        ] {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !known.contains(&name) && std::fs::remove_dir_all(e.path()).is_ok() {
                    tracing::info!(dir = %e.path().display(), "removed orphan VM directory");
                    removed += 1;
                }
            }
        }
        removed
    }
}
