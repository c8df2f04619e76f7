//! Wire types of the host network.

use serde::{Deserialize, Serialize};

/// `network.reset`: what was removed from the host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkReset {
    /// Links deleted (TAPs, then the bridge).
    pub links: Vec<String>,
    /// banger's nftables table existed and was deleted.
    pub nat_table: bool,
    /// The `net.ipv4.ip_forward` value restored, when banger had changed it.
    pub ip_forward_restored: Option<bool>,
}
