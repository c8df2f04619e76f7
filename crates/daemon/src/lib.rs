//! `bangerd`: the owner daemon.
//!
//! [`Daemon`] is the composition root: it owns the shared infrastructure
//! (store, layout, config, privileged-ops adapter) and four services built
//! by [`wire_services`]: [`HostNetwork`], [`ImageService`],
//! [`WorkspaceService`] and [`VMService`]. RPC dispatch
//! ([`rpc_server::dispatch`]) is one `match` forwarding into them. See
//! `ARCHITECTURE.md` at the repository root for the map, the seams and the
//! lock order.

mod alloc;
pub mod config;
pub mod daemon;
pub mod dns_routing;
pub mod doctor;
pub mod doctor_net;
pub mod error;
pub mod guest_access;
pub mod guest_config;
mod guest_files;
pub mod guest_ports;
pub mod guest_ready;
pub mod guest_ssh;
pub mod handles;
pub mod host_network;
mod image_promote;
pub mod image_refresh;
pub mod image_seed;
pub mod image_service;
mod images_build;
mod images_bundle;
mod images_manifest;
mod images_pull;
pub mod kernel_catalog;
pub mod kernel_service;
pub mod lockset;
mod main_entry;
pub mod nat;
pub mod network;
mod network_reset;
pub mod privops_choice;
pub mod reconcile;
pub mod registry_auth;
pub mod rpc_server;
pub mod tap_pool;
pub mod vm_authsync;
mod vm_create;
mod vm_lifecycle;
pub mod vm_service;
pub mod vm_stats;
mod workspace_export;
mod workspace_prepare;
pub mod workspace_service;
#[cfg(test)]
mod workspace_tests;

pub use daemon::{Daemon, OpenOptions, wire_services};
pub use host_network::HostNetwork;
pub use image_service::ImageService;
pub use main_entry::{Args, main};
pub use vm_service::VMService;
pub use workspace_service::WorkspaceService;
