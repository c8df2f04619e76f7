//! `VMService`: the VM lifecycle state machine, the handle cache, the
//! per-VM lock set and the create-operation registry.
//!
//! Lifecycle operations live in `create.rs`, `lifecycle.rs` and
//! `stats.rs`; this file holds the service's state and its read paths.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use banger_api::rpc::{LogSource, VmLogsParams};
use banger_api::{Operation, Vm, VmDetail, VmLogs, VmPaths, VmRuntime};
use banger_store::Store;

use crate::common::error::DaemonError;
use crate::common::lockset::VmLockSet;
use crate::common::{OpEntry, OpTracker, VmFiles, root_disk, work_disk};
use crate::config::{Config, Layout};
use crate::forwards::ForwardService;
use crate::images::ImageService;
use crate::vms::error::VmError;
use crate::vms::handles::HandleCache;
use crate::vms::launcher::VmmLauncher;
use crate::vms::stats::StatSample;
use crate::workspace::{VmLookup, WorkspaceService};

/// The VM service.
pub struct VMService {
    pub(crate) store: Arc<Store>,
    pub(crate) config: Arc<Config>,
    pub(crate) layout: Layout,
    pub(crate) net: Arc<VmmLauncher>,
    pub(crate) images: Arc<ImageService>,
    #[allow(dead_code)] // reached by the workspace work through VM starts
    pub(crate) ws: Arc<WorkspaceService>,
    /// One lock per VM id, held for a whole lifecycle operation on that VM
    /// (start holds it across disk preparation, VMM spawn and boot). The
    /// outermost lock: acquire before `create_vm_mu`, `image_ops_mu` and
    /// every leaf lock, never while holding any of them, and never together
    /// with `WorkspaceService.workspace_locks[id]`.
    pub(crate) vm_locks: Arc<VmLockSet>,
    /// Narrow reservation lock: held only to re-check that a name is free,
    /// allocate the guest IP/MAC and insert the `created` row. Image
    /// resolution happens before it and the boot after it.
    pub(crate) create_vm_mu: tokio::sync::Mutex<()>,
    /// In-flight and recently finished create operations (own leaf lock).
    pub(crate) create_ops: OpTracker,
    /// Transient VMM facts per running VM (own leaf lock).
    pub(crate) handles: Arc<HandleCache>,
    /// Last stats sample per running VM (leaf lock).
    pub(crate) samples: Mutex<HashMap<String, StatSample>>,
    pub(crate) procfs: banger_fcproc::ProcFs,
    /// How root disks are made (copy or device-mapper snapshot).
    pub(crate) root_disks: Arc<dyn banger_dmsnap::RootDiskStrategy>,
    /// Work-disk templates (`work_disk.rs`): held shared while one is
    /// cloned, alone while one is built (so concurrent first creates build
    /// it once, and no template is removed while being cloned). A leaf
    /// lock, taken under `vm_locks[id]`.
    pub(crate) templates_mu: tokio::sync::RwLock<()>,
    /// Port forwards: shown by `vm.show`, closed by `vm.delete`.
    pub forwards: Arc<ForwardService>,
}

impl VMService {
    /// Build the service.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        config: Arc<Config>,
        layout: Layout,
        net: Arc<VmmLauncher>,
        images: Arc<ImageService>,
        ws: Arc<WorkspaceService>,
        handles: Arc<HandleCache>,
    ) -> Self {
        Self {
            create_ops: OpTracker::new(Arc::clone(&store)),
            forwards: Arc::new(ForwardService::new(Arc::clone(&store))),
            store,
            config,
            layout,
            net,
            images,
            ws,
            vm_locks: Arc::new(VmLockSet::default()),
            create_vm_mu: tokio::sync::Mutex::new(()),
            handles,
            samples: Mutex::new(HashMap::new()),
            procfs: banger_fcproc::ProcFs::host(),
            root_disks: Arc::new(banger_dmsnap::CopyStrategy),
            templates_mu: tokio::sync::RwLock::new(()),
        }
    }

    /// Share `forwards` (the daemon's forward service) instead of a private one.
    pub fn with_forwards(mut self, forwards: Arc<ForwardService>) -> Self {
        self.forwards = forwards;
        self
    }

    /// Make root disks with `strategy` (the copy by default).
    pub fn with_root_disks(mut self, strategy: Arc<dyn banger_dmsnap::RootDiskStrategy>) -> Self {
        self.root_disks = strategy;
        self
    }

    /// Read processes from `procfs` (the host's `/proc` by default).
    pub fn with_procfs(mut self, procfs: banger_fcproc::ProcFs) -> Self {
        self.procfs = procfs;
        self
    }

    /// Share `locks` as this service's `vm_locks` (the workspace service
    /// takes them through its `VmLookup` seam for its snapshot phase).
    pub fn sharing_vm_locks(mut self, locks: Arc<VmLockSet>) -> Self {
        self.vm_locks = locks;
        self
    }

    /// Find a VM by name or id.
    pub fn resolve(&self, name_or_id: &str) -> Result<Vm, VmError> {
        resolve_vm(&self.store, name_or_id)
    }

    /// `vm.list`.
    pub fn list(&self) -> Result<Vec<Vm>, VmError> {
        Ok(self.store.list_vms()?)
    }

    /// `vm.show`.
    pub fn show(&self, name_or_id: &str) -> Result<VmDetail, VmError> {
        let vm = self.resolve(name_or_id)?;
        let runtime = self.handles.get(&vm.id).map(|h| VmRuntime {
            pid: h.pid,
            api_socket: h.api_sock.display().to_string(),
            vsock_socket: h.vsock.map(|v| v.display().to_string()),
        });
        let paths = self.paths(&vm.id);
        let forwards = self.forwards.of_vm(&vm.id)?;
        let provision = self.store.vm_provision(&vm.id)?;
        Ok(VmDetail {
            vm,
            runtime,
            paths,
            forwards,
            provision,
        })
    }

    /// `vm.provision_record`: replace the VM's provisioning record (the
    /// CLI runs the scripts over SSH and reports each state change).
    pub fn record_provision(
        &self,
        p: &banger_api::VmProvisionParams,
    ) -> Result<Vec<banger_api::ProvisionRun>, VmError> {
        if p.runs.len() > 64 {
            return Err(banger_api::RpcError::new(
                banger_api::ErrorKind::InvalidArgument,
                format!("{} provisioning runs; at most 64", p.runs.len()),
            )
            .into());
        }
        if let Some(r) = p.runs.iter().find(|r| r.script.len() > 4096) {
            return Err(banger_api::RpcError::new(
                banger_api::ErrorKind::InvalidArgument,
                format!(
                    "provisioning script name of {} bytes; at most 4096",
                    r.script.len()
                ),
            )
            .into());
        }
        let vm = self.resolve(&p.vm)?;
        self.store.set_vm_provision(&vm.id, &p.runs)?;
        Ok(p.runs.clone())
    }

    pub(crate) fn paths(&self, id: &str) -> VmPaths {
        let dir = self.layout.vm_dir(id);
        let work = work_disk(&dir);
        let work_len = std::fs::metadata(&work).ok().map(|m| m.len());
        VmPaths {
            root_disk: root_disk(&dir).display().to_string(),
            console_log: VmFiles::console(&dir).display().to_string(),
            vmm_log: VmFiles::vmm_log(&dir).display().to_string(),
            dir: dir.display().to_string(),
            work_disk: work_len.map(|_| work.display().to_string()),
            work_disk_bytes: work_len.unwrap_or(0),
        }
    }

    /// `vm.logs`: the last lines of the console or the VMM log.
    pub fn logs(&self, p: &VmLogsParams) -> Result<VmLogs, VmError> {
        let tail = p.tail.unwrap_or(100);
        banger_api::validate::log_tail(tail)?;
        let tail = tail as usize;
        let vm = self.resolve(&p.vm)?;
        let dir = self.layout.vm_dir(&vm.id);
        let path = match p.source {
            LogSource::Console => VmFiles::console(&dir),
            LogSource::Vmm => VmFiles::vmm_log(&dir),
        };
        if let Some(since) = p.since {
            // Follow mode: the bytes after `since` (the CLI starts over
            // from 0 when the file shrank, e.g. after a rotation).
            let (lines, end) = if path.exists() {
                let (data, end) = crate::vms::launcher::read_since(&path, since, 4 << 20)
                    .map_err(VmError::io("cannot read", &path))?;
                let text = String::from_utf8_lossy(&data);
                (text.lines().map(str::to_string).collect(), end)
            } else {
                (Vec::new(), 0)
            };
            return Ok(VmLogs {
                path: path.display().to_string(),
                lines,
                end,
            });
        }
        // The current file, preceded by its rotated generation when the
        // current one holds fewer lines than asked for.
        let read = |p: &std::path::Path| -> Result<Vec<String>, VmError> {
            if !p.exists() {
                return Ok(Vec::new());
            }
            let data = crate::vms::launcher::read_tail(p, 4 << 20)
                .map_err(VmError::io("cannot read", p))?;
            Ok(String::from_utf8_lossy(&data)
                .lines()
                .map(str::to_string)
                .collect())
        };
        let end = std::fs::metadata(&path).map_or(0, |m| m.len());
        let mut lines = read(&path)?;
        if lines.len() < tail {
            let mut older = read(&crate::common::rotated(&path))?;
            older.append(&mut lines);
            lines = older;
        }
        let lines = lines.split_off(lines.len().saturating_sub(tail));
        Ok(VmLogs {
            path: path.display().to_string(),
            lines,
            end,
        })
    }

    /// `operation.get`.
    pub fn operation(&self, id: &str) -> Result<Operation, VmError> {
        if let Some(op) = self.create_ops.get(id) {
            return Ok(op);
        }
        self.store.get_operation(id)?.ok_or_else(|| {
            VmError::NotFound(format!("no operation {id}; see `banger operation list`"))
        })
    }

    /// `operation.list`.
    pub fn operations(&self) -> Result<Vec<Operation>, VmError> {
        Ok(self.store.list_operations()?)
    }

    /// A watcher for operation `id`, or its final state if it is no longer
    /// in memory.
    pub fn watch(
        &self,
        id: &str,
    ) -> Result<Result<tokio::sync::watch::Receiver<OpEntry>, Operation>, VmError> {
        match self.create_ops.subscribe(id) {
            Some(rx) => Ok(Ok(rx)),
            None => self.operation(id).map(Err),
        }
    }

    /// Drop finished operations older than the retention time, in memory
    /// and in the store.
    pub fn prune_operations(&self) -> Result<usize, VmError> {
        let keep = std::time::Duration::from_secs(self.config.daemon.operation_retention_secs);
        let n = self.create_ops.prune(keep);
        let cutoff = banger_store::now_millis() - keep.as_millis() as i64;
        let m = self.store.prune_operations(cutoff)?;
        Ok(n.max(m))
    }
}

fn resolve_vm(store: &Store, name_or_id: &str) -> Result<Vm, VmError> {
    store
        .find_vm(name_or_id)?
        .ok_or_else(|| VmError::NoSuchVm(name_or_id.to_string()))
}

/// [`VmLookup`] for the workspace service, built from the store and the
/// handle cache (no `VMService` pointer, so no construction cycle).
pub struct StoreVmLookup {
    /// The store.
    pub store: Arc<Store>,
    /// The shared handle cache.
    pub handles: Arc<HandleCache>,
    /// `VMService.vm_locks`, shared.
    pub vm_locks: Arc<VmLockSet>,
    /// The `/proc` liveness is read from.
    pub procfs: banger_fcproc::ProcFs,
}

impl VmLookup for StoreVmLookup {
    fn resolve_vm(&self, name_or_id: &str) -> Result<Vm, DaemonError> {
        Ok(resolve_vm(&self.store, name_or_id)?)
    }

    fn is_alive(&self, vm_id: &str) -> bool {
        self.handles.get(vm_id).is_some_and(|h| {
            h.start_time
                .is_some_and(|t| banger_privops::is_same_process(&self.procfs.root, h.pid, t))
        })
    }

    fn vm_locks(&self) -> &VmLockSet {
        &self.vm_locks
    }

    fn list_vms(&self) -> Result<Vec<Vm>, DaemonError> {
        Ok(self.store.list_vms()?)
    }

    fn vsock_socket(&self, vm_id: &str) -> Option<std::path::PathBuf> {
        self.handles.get(vm_id).and_then(|h| h.vsock)
    }

    fn has_nic(&self, vm_id: &str) -> bool {
        self.handles.get(vm_id).is_none_or(|h| h.tap.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Liveness is read from the `/proc` the daemon was given, not the host's.
    #[test]
    fn liveness_reads_the_given_proc() {
        let t = tempfile::tempdir().unwrap();
        let me = std::process::id();
        let start_time = banger_privops::read_identity(std::path::Path::new("/proc"), me)
            .unwrap()
            .start_time;
        let handles = Arc::new(HandleCache::default());
        handles.adopt(
            "vm1",
            crate::vms::handles::VmHandles {
                pid: me,
                start_time: Some(start_time),
                api_sock: t.path().join("api.sock"),
                vsock: None,
                binary: "/usr/bin/firecracker".into(),
                started_at: Default::default(),
                tap: None,
                dns: None,
            },
        );
        let lookup = |procfs| StoreVmLookup {
            store: Arc::new(Store::open(t.path().join("banger.db")).unwrap()),
            handles: Arc::clone(&handles),
            vm_locks: Arc::new(VmLockSet::default()),
            procfs,
        };
        assert!(lookup(banger_fcproc::ProcFs::host()).is_alive("vm1"));
        let empty = t.path().join("proc");
        std::fs::create_dir(&empty).unwrap();
        assert!(!lookup(banger_fcproc::ProcFs::new(&empty)).is_alive("vm1"));
    }
}
