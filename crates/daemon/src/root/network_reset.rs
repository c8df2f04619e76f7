//! `network.reset`: remove everything banger created on the host network
//! (until `banger system uninstall` exists, this is how it is undone).

use banger_api::{NetworkReset, VmState};

use crate::common::error::DaemonError;
use crate::root::daemon::Daemon;

impl Daemon {
    /// Refused while any VM has a VMM (their names are listed); otherwise
    /// removes the DNS server and resolver routing, every banger TAP, the
    /// bridge and the NAT table, and restores IPv4 forwarding. The next VM
    /// start sets the network up again.
    pub async fn network_reset(&self) -> Result<NetworkReset, DaemonError> {
        let Some(net) = self.net.network() else {
            return Err(DaemonError::Conflict(
                "the guest network is disabled (network.enabled = false); there is nothing to reset"
                    .into(),
            ));
        };
        let running: Vec<String> = self
            .store
            .list_vms()?
            .into_iter()
            .filter(|v| v.state.has_vmm() || v.state == VmState::Starting)
            .map(|v| v.name)
            .collect();
        if !running.is_empty() {
            return Err(DaemonError::Conflict(format!(
                "VMs still run: {}; stop them first (`banger vm stop <name>`)",
                running.join(", ")
            )));
        }
        let r = net.reset().await?;
        Ok(NetworkReset {
            links: r.links,
            nat_table: r.nat_table,
            ip_forward_restored: r.ip_forward,
        })
    }
}
