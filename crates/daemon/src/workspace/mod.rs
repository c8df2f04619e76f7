//! `WorkspaceService`: everything done inside a guest over SSH or the guest
//! agent: `workspace.prepare` (`prepare.rs`), `workspace.export`
//! (`export.rs`), file sync (`files.rs`), guest ports (`ports.rs`), the
//! readiness wait (`ready.rs`), SSH access (`access.rs`, `ssh.rs`), the
//! guest settings (`workspace/guest_config.rs`) and the identity sync onto a VM's disk
//! before boot (`authsync.rs`).

mod access;
mod authsync;
mod export;
mod files;
mod guest_config;
pub(crate) mod ports;
mod prepare;
mod ready;
mod service;
mod ssh;
#[cfg(test)]
mod tests;

pub use authsync::{AuthSyncError, IdentityFiles, write_files};
pub use guest_config::GuestConfig;
pub use service::{VmLookup, WorkspaceDeps, WorkspaceService};
pub use ssh::{GuestDial, SshClient, WaitForSsh, banner_waiter, bulk_cipher_preference};
