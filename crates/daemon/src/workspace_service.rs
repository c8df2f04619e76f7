//! `WorkspaceService`: the guest-side work of `workspace.prepare` /
//! `workspace.export` and the auth-key / git-identity sync onto a VM's work
//! disk. This slice wires the service, its lock set and its seams; the
//! operations themselves arrive with the workspace work.
//!
//! It holds no pointer to `VMService`: what it needs from VMs comes through
//! the [`VmLookup`] trait, declared here and implemented by `VMService`.

use std::sync::Arc;

use banger_api::Vm;

use crate::error::DaemonError;
use crate::lockset::VmLockSet;

/// What the workspace service needs to know about VMs.
pub trait VmLookup: Send + Sync {
    /// Resolve a VM by name or id.
    fn resolve_vm(&self, name_or_id: &str) -> Result<Vm, DaemonError>;
    /// Whether the VM's VMM is alive right now.
    fn is_alive(&self, vm_id: &str) -> bool;
}

/// The workspace service.
pub struct WorkspaceService {
    /// Per-VM locks scoped to workspace operations. Lock order: a caller
    /// takes `VMService.vm_locks[id]` only to validate and snapshot, releases
    /// it, then takes this one for the guest I/O; the two are never held
    /// together, so `vm stop` never waits behind a long import.
    pub workspace_locks: VmLockSet,
    vms: Arc<dyn VmLookup>,
}

impl WorkspaceService {
    /// Build the service over its VM seam.
    pub fn new(vms: Arc<dyn VmLookup>) -> Self {
        Self {
            workspace_locks: VmLockSet::default(),
            vms,
        }
    }

    /// The VM a workspace operation targets, refused unless it runs.
    pub fn running_vm(&self, name_or_id: &str) -> Result<Vm, DaemonError> {
        let vm = self.vms.resolve_vm(name_or_id)?;
        if !self.vms.is_alive(&vm.id) {
            return Err(DaemonError::Conflict(format!(
                "VM {} is not running; start it with `banger vm start {}`",
                vm.name, vm.name
            )));
        }
        Ok(vm)
    }
}
