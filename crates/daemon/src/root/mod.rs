//! The composition root: [`Daemon`] (the shared infrastructure and the
//! services, built by [`wire_services`]), the RPC server and its dispatch
//! (`rpc.rs`), the `bangerd` entry (`entry.rs`) and `network.reset`, which
//! needs both the store and the host network.

mod daemon;
mod entry;
mod network_reset;
pub mod rpc;

pub use daemon::{Daemon, GuestSeams, HostSeams, OpenOptions, privops_policy, wire_services};
pub use entry::{Args, main};
