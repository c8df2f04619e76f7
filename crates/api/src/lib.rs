//! Types shared by the `banger` CLI and the `bangerd` daemon.
//!
//! The daemon serves a Unix socket speaking newline-delimited JSON (see
//! [`rpc`]). Every request is one [`rpc::Request`] variant; its method name
//! (`vm.create`, `image.list`, …) is the serde tag. The models the requests
//! return ([`Vm`], [`Image`], [`Operation`], …) live in [`model`]; names and
//! sizes are validated by the functions in [`validate`], which both sides use
//! so that the CLI can refuse bad input before it reaches the daemon and the
//! daemon refuses it again for any other client.
#![warn(missing_docs)]

pub mod doctor;
pub mod forward;
pub mod guest;
pub mod model;
pub mod network;
pub mod rpc;
pub mod size;
pub mod validate;

pub use model::*;
pub use network::NetworkReset;
pub use rpc::{ErrorKind, Request, RpcError};
pub use size::ByteSize;

/// Version of the RPC protocol. The handshake refuses a peer speaking another one.
pub const PROTOCOL_VERSION: u32 = 1;

/// Version of the banger packages (CLI and daemon are built together).
pub const BANGER_VERSION: &str = env!("CARGO_PKG_VERSION");
