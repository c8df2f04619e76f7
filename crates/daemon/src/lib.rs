//! `bangerd`: the owner daemon, one folder per part.
//!
//! - `root/`: [`Daemon`], the composition root: it owns the shared
//!   infrastructure (store, layout, config, privileged-ops adapter) and the
//!   services built by [`wire_services`]; the RPC server, whose dispatch
//!   ([`root::rpc::dispatch`]) is one `match` forwarding into them; the
//!   `bangerd` entry.
//! - `common/`: what the services share (errors, locks, the operation
//!   tracker, VM files, the blocking helper); it imports no service.
//! - the services: `host_network/` ([`HostNetwork`]), `images/`
//!   ([`ImageService`], `KernelService`), `workspace/`
//!   ([`WorkspaceService`]), `forwards/` ([`ForwardService`], port
//!   forwards) and `vms/` ([`VMService`]), the only one that uses the
//!   others, through their `mod.rs` items.
//! - `doctor/`: host diagnostics.
//!
//! `tests/layout.rs` checks these import rules. See `ARCHITECTURE.md` at the
//! repository root for the map, the seams and the lock order.

pub mod common;
pub mod config;
pub mod doctor;
pub mod forwards;
pub mod host_network;
pub mod images;
pub mod privops_choice;
pub mod root;
pub mod vms;
pub mod workspace;

pub use forwards::ForwardService;
pub use host_network::HostNetwork;
pub use images::ImageService;
pub use root::{Args, Daemon, OpenOptions, main, wire_services};
pub use vms::{VMService, VmmLauncher};
pub use workspace::WorkspaceService;
