//! What every service shares and no service owns: the error type and its
//! mapping to RPC errors, the per-VM lock set, the operation tracker, the
//! files of a VM directory, the host-side names and the helper that runs
//! blocking (privileged) calls off the async workers. Nothing here imports
//! a service.

mod blocking;
pub mod error;
mod guest_identity;
mod host;
pub mod lockset;
mod ops;
pub mod route;
mod vm_files;

pub use blocking::{PrivCallError, blocking, privileged};
pub use guest_identity::{
    GuestAccount, GuestAccountError, KeygenError, authorized_keys, ensure_keypair,
    existing_authorized_keys, guest_account,
};
pub use host::{DEVICE_PREFIX, FileVersion, owner_home};
pub use ops::{OpEntry, OpTracker, Persist};
pub use vm_files::{
    LOG_MAX_BYTES, VmFiles, root_disk, rotate_log, rotate_vm_logs, rotated, work_disk,
    work_templates_dir,
};
