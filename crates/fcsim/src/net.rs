//! Network interfaces (`/network-interfaces`).
//!
//! The simulator cannot create or open taps (it runs unprivileged and must
//! not touch the host network), so `host_dev_name` is only recorded. What it
//! does check is what Firecracker's checks produce without a kernel: a MAC
//! already used by another interface, a tap name already opened by another
//! interface (the kernel answers EBUSY there), and a name longer than
//! `IFNAMSIZ - 1`. As in Firecracker, re-`PUT` of an id first drops the old
//! device, so a failing re-`PUT` leaves the interface removed.

use banger_fcapi::{NetworkInterface, PartialNetworkInterface, validate_mtu};

use crate::fault::Fault;

const IFNAMSIZ: usize = 16;
const CREATE: &str = "Network config error: Could not create the network device";

/// The interface list in insertion order.
#[derive(Debug, Default)]
pub struct NetDevices {
    list: Vec<NetworkInterface>,
}

impl NetDevices {
    /// Adds or replaces an interface (`PUT /network-interfaces/{id}`).
    pub fn insert(&mut self, config: NetworkInterface) -> Result<(), Fault> {
        if let Some(mac) = config.guest_mac
            && self
                .list
                .iter()
                .any(|n| n.iface_id != config.iface_id && n.guest_mac == Some(mac))
        {
            return Err(Fault::bad_request(format!(
                "Network config error: The MAC address is already in use: {mac}"
            )));
        }
        let position = self.list.iter().position(|n| n.iface_id == config.iface_id);
        if let Some(index) = position {
            self.list.remove(index);
        }
        let name = &config.host_dev_name;
        if name.is_empty() || name.len() >= IFNAMSIZ {
            // Approximate text: not recorded.
            return Err(Fault::bad_request(format!(
                "{CREATE}: Open tap device failed: Invalid interface name: {name}"
            )));
        }
        if self.list.iter().any(|n| &n.host_dev_name == name) {
            return Err(Fault::bad_request(format!(
                "{CREATE}: Open tap device failed: Error while creating ifreq structure: Device or resource busy (os error 16). Invalid TUN/TAP Backend provided by {name}. Check our documentation on setting up the network devices."
            )));
        }
        if let Some(mtu) = config.mtu {
            validate_mtu(mtu).map_err(|e| Fault::bad_request(format!("{CREATE}: {e}")))?;
        }
        match position {
            Some(index) => self.list.insert(index, config),
            None => self.list.push(config),
        }
        Ok(())
    }

    /// Applies `PATCH /network-interfaces/{id}` (post-boot).
    pub fn update(&mut self, update: &PartialNetworkInterface) -> Result<(), Fault> {
        // Approximate text: not recorded.
        let iface = self
            .list
            .iter_mut()
            .find(|n| n.iface_id == update.iface_id)
            .ok_or_else(|| {
                Fault::bad_request("Network config error: Invalid interface ID - not found.")
            })?;
        if update.rx_rate_limiter.is_some() {
            iface.rx_rate_limiter = update.rx_rate_limiter;
        }
        if update.tx_rate_limiter.is_some() {
            iface.tx_rate_limiter = update.tx_rate_limiter;
        }
        Ok(())
    }

    /// Removes an interface (hot-unplug); false when the id is unknown.
    pub fn remove(&mut self, id: &str) -> bool {
        let before = self.list.len();
        self.list.retain(|n| n.iface_id != id);
        self.list.len() != before
    }

    /// Whether an interface with this id exists.
    pub fn contains(&self, id: &str) -> bool {
        self.list.iter().any(|n| n.iface_id == id)
    }

    /// Configurations in order.
    pub fn configs(&self) -> Vec<NetworkInterface> {
        self.list.clone()
    }
}
