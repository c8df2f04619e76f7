//! `HostNetwork`: the bridge, the TAP pool, NAT and the `.vm` DNS routing,
//! with their setup, reconcile and reset. The VMM launcher that uses it
//! lives in `vms/`.

mod dns_routing;
mod error;
mod nat;
mod service;
mod tap_pool;

pub use error::NetworkError;
pub use service::{HostNetwork, NetSettings};
pub use tap_pool::is_tap_name;
