//! Reconcile at daemon start: make the store, the VM directories and the
//! host agree after a crash or a host reboot.
//!
//! VMMs are found, not remembered: one pass over `/proc` lists the owner's
//! processes running the configured VMM binary, by their `--id`
//! (`banger-<vm id>`). For each VM: a `running` VM whose recorded VMM
//! (same pid, same start time) is among them and reports `Running` is
//! adopted; every other VMM carrying its id is ended (SIGKILL through the
//! helper, which checks uid, start time and executable), whatever its
//! records say, so no VMM survives that banger does not know about. The
//! state then says what happened: a start that was interrupted (spawn,
//! configuration or the readiness wait) is `error`, a stop is `stopped`, a
//! running VM whose VMM is gone is `stopped` with the exit status. VMMs
//! with banger's id prefix whose VM no longer exists are ended too.
//! Operations a dead daemon left running are marked failed, and VM
//! directories that belong to no VM are removed.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use banger_api::{Vm, VmState};
use banger_fcproc::FirecrackerClient;
use banger_privops::FoundVmm;

use crate::common::VmFiles;
use crate::common::blocking;
use crate::vms::VmError;
use crate::vms::handles::{self, VmHandles};
use crate::vms::service::VMService;

/// Every VMM's `--id` starts with this; the rest is the VM id.
pub const VMM_ID_PREFIX: &str = "banger-";

/// The `--id` of VM `vm_id`'s VMM.
pub fn vmm_id(vm_id: &str) -> String {
    format!("{VMM_ID_PREFIX}{vm_id}")
}

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
    /// VMMs ended because no VM could adopt them (interrupted starts,
    /// stops and deletes, duplicates).
    pub ended_vmms: usize,
    /// Work-disk templates whose build was interrupted (`.partial`).
    pub removed_partial_templates: usize,
}

impl VMService {
    /// Run the VM part of reconcile.
    pub async fn reconcile(self: &Arc<Self>) -> Result<ReconcileReport, VmError> {
        let mut report = ReconcileReport {
            failed_ops: self.store.fail_running_operations(
                "bangerd stopped while this operation ran; check the VM with `banger vm show`",
            )?,
            ..Default::default()
        };
        let vms = self.store.list_vms()?;
        let mut found: HashMap<String, Vec<FoundVmm>> = HashMap::new();
        for f in self.net.find_vmms(&self.layout.runtime_dir).await {
            found.entry(f.id.clone()).or_default().push(f);
        }
        for vm in &vms {
            let _g = self.vm_locks.lock(&vm.id).await;
            let found = found.remove(&vmm_id(&vm.id)).unwrap_or_default();
            self.reconcile_vm(vm, found, &mut report).await?;
        }
        // VMMs of VMs that no longer exist (a daemon killed in a delete).
        let strays: Vec<FoundVmm> = found
            .into_iter()
            .filter(|(id, _)| id.starts_with(VMM_ID_PREFIX))
            .flat_map(|(_, v)| v)
            .collect();
        if !strays.is_empty() {
            tracing::warn!(?strays, "ending VMMs whose VM no longer exists");
            report.ended_vmms += self.net.end_found(strays).await?;
        }
        let known: HashSet<String> = vms.iter().map(|v| v.id.clone()).collect();
        {
            // Root-disk devices of VMs that no longer exist (banger-dmsnap).
            let strategy = Arc::clone(&self.root_disks);
            let (vms_dir, known) = (self.layout.state_dir.join("vms"), known.clone());
            match blocking(move || Ok::<_, VmError>(strategy.remove_stale(&vms_dir, &known))).await
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
        report.removed_partial_templates =
            crate::vms::work_disk::sweep_template_partials(&self.layout.state_dir.join("images"));
        tracing::info!(?report, "reconcile done");
        Ok(report)
    }

    /// Settle one VM (its lock held) given the live VMMs carrying its id.
    async fn reconcile_vm(
        self: &Arc<Self>,
        vm: &Vm,
        mut found: Vec<FoundVmm>,
        report: &mut ReconcileReport,
    ) -> Result<(), VmError> {
        let dir = self.layout.vm_dir(&vm.id);
        sweep_partials(&dir);
        let recorded = handles::read_file(&dir);
        let intent = handles::read_intent(&dir);
        // The recorded VMM, if it still runs: same pid and, when the record
        // has one (older files do not), same start time.
        let live = recorded.as_ref().and_then(|h| {
            let i = found
                .iter()
                .position(|f| f.pid == h.pid && h.start_time.is_none_or(|t| t == f.start_time))?;
            let f = found.remove(i);
            Some(VmHandles {
                start_time: Some(f.start_time),
                ..h.clone()
            })
        });
        let adopted = match live {
            Some(h) if vm.state == VmState::Running && self.booted(&h.api_sock).await => Some(h),
            Some(h) => {
                // Not adoptable (half started, half stopped, not answering).
                found.push(FoundVmm {
                    pid: h.pid,
                    start_time: h.start_time.unwrap_or_default(),
                    id: vmm_id(&vm.id),
                    api_sock: Some(h.api_sock),
                });
                None
            }
            None => None,
        };
        let ended = if found.is_empty() {
            0
        } else {
            tracing::warn!(vm = %vm.name, state = %vm.state, vmms = ?found, "ending VMMs no record can adopt");
            self.net.end_found(std::mem::take(&mut found)).await?
        };
        report.ended_vmms += ended;
        if let Some(h) = adopted {
            handles::remove_intent(&dir);
            // Rewrites handles.json with the start time (older files lack it).
            if let Err(e) = self.handles.put(&vm.id, &dir, h.clone()) {
                tracing::warn!(vm = %vm.name, error = %e, "cannot rewrite handles.json");
                self.handles.adopt(&vm.id, h.clone());
            }
            self.net.publish(&h);
            self.watch_exit(vm.id.clone(), h, false);
            report.adopted.push(vm.name.clone());
            return Ok(());
        }
        // Nothing runs for this VM any more: release what the records hold
        // (TAP, DNS record, sockets) and remove them.
        // Both exist only between the handles write and the intent's
        // removal, for the same launch (same TAP): release it once.
        if let Some(h) = recorded.as_ref().or(intent.as_ref()) {
            self.net.release(h);
        }
        self.handles.remove(&vm.id, &dir);
        handles::remove_intent(&dir);
        let run_dir = self.layout.vm_run_dir(&vm.id);
        for sock in [VmFiles::api_sock(&run_dir), VmFiles::vsock(&run_dir)] {
            let _ = std::fs::remove_file(sock);
        }
        if vm.state == VmState::Created && !self.root_disks.present(&dir) {
            self.store.transition_vm(&vm.id, &[VmState::Created], VmState::Error, |v| {
                v.last_error = Some("creation was interrupted before the root disk was ready; delete the VM and create it again".into());
            })?;
            report.errored.push(vm.name.clone());
            return Ok(());
        }
        match vm.state {
            VmState::Starting => {
                self.store
                    .transition_vm(&vm.id, &[], VmState::Error, |v| {
                        v.started_at = None;
                        v.last_error = Some(
                            "bangerd stopped while the VM was starting (before the guest was ready); its VMM was ended; start it again"
                                .into(),
                        );
                    })?;
                report.errored.push(vm.name.clone());
            }
            VmState::Stopping => {
                self.store
                    .transition_vm(&vm.id, &[], VmState::Stopped, |v| {
                        v.started_at = None;
                    })?;
                report.reaped.push(vm.name.clone());
            }
            VmState::Running => {
                let reason = if ended > 0 {
                    "its VMM could not be adopted after bangerd restarted (no matching record, or its API did not answer) and was ended"
                        .to_string()
                } else {
                    let status = std::fs::read_to_string(VmFiles::exit_status(&dir))
                        .ok()
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "was gone".into());
                    format!("the VMM {status} while bangerd was not running")
                };
                self.store
                    .transition_vm(&vm.id, &[], VmState::Stopped, |v| {
                        v.started_at = None;
                        v.last_error = Some(reason.clone());
                    })?;
                report.reaped.push(vm.name.clone());
            }
            VmState::Created | VmState::Stopped | VmState::Error => {}
        }
        Ok(())
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

/// Remove what an interrupted write left in a VM directory: disks being
/// made (`*.partial`: root and work disks are renamed into place only when
/// complete) and half-written records (`.*.tmp`). Nothing writes them while
/// reconcile runs (before the socket is served).
fn sweep_partials(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let partial =
            name.ends_with(".partial") || (name.starts_with('.') && name.ends_with(".tmp"));
        if partial && e.file_type().is_ok_and(|t| t.is_file()) {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    tracing::info!(file = %e.path().display(), "removed an interrupted write")
                }
                Err(err) => {
                    tracing::warn!(file = %e.path().display(), error = %err, "cannot remove an interrupted write")
                }
            }
        }
    }
}
