//! `VMService`: the VM lifecycle. `service.rs` holds the state (handle
//! cache, lock set, create operations) and the read paths; `create.rs`
//! `vm.create`; `lifecycle.rs` start, stop, delete and set; `stats.rs`
//! stats; `reconcile.rs` the startup reconcile; `promote.rs` promoting a VM
//! to an image; `launcher.rs` the VMM launcher (Firecracker process,
//! sockets, TAP and DNS publication); `handles.rs` the per-VM runtime
//! handles; `alloc.rs` guest addresses; `work_disk.rs` work disks cloned
//! from per-image templates.

mod alloc;
mod create;
mod error;
pub mod handles;
mod launcher;
mod lifecycle;
mod promote;
mod reconcile;
mod service;
mod stats;
mod work_disk;

pub use error::VmError;
pub use handles::HandleCache;
pub use launcher::VmmLauncher;
pub use reconcile::ReconcileReport;
pub use service::{StoreVmLookup, VMService};
