//! `PUT`/`PATCH /network-interfaces/{iface_id}`: virtio-net devices on host taps.

use serde::{Deserialize, Serialize};

use crate::mac::MacAddr;
use crate::model::ApiModel;
use crate::rate_limiter::RateLimiter;

/// Body of `PUT /network-interfaces/{iface_id}`, and an entry of `GET /vm/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkInterface {
    /// Id; must equal the id in the path (alphanumerics and `_`).
    pub iface_id: String,
    /// Host tap device name (opened, or created as root, at this call).
    pub host_dev_name: String,
    /// Guest MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_mac: Option<MacAddr>,
    /// MTU, 68..=65535.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u16>,
    /// Rate limiter for received packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_rate_limiter: Option<RateLimiter>,
    /// Rate limiter for transmitted packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_rate_limiter: Option<RateLimiter>,
}

impl NetworkInterface {
    /// An interface `iface_id` on tap `host_dev_name` with no MAC or limits.
    pub fn new(iface_id: impl Into<String>, host_dev_name: impl Into<String>) -> Self {
        Self {
            iface_id: iface_id.into(),
            host_dev_name: host_dev_name.into(),
            guest_mac: None,
            mtu: None,
            rx_rate_limiter: None,
            tx_rate_limiter: None,
        }
    }

    /// Sets the guest MAC address.
    pub fn with_mac(mut self, mac: MacAddr) -> Self {
        self.guest_mac = Some(mac);
        self
    }
}

impl ApiModel for NetworkInterface {
    const DEFINITION: &'static str = "NetworkInterface";
    const FIELDS: &'static [&'static str] = &[
        "iface_id",
        "host_dev_name",
        "guest_mac",
        "mtu",
        "rx_rate_limiter",
        "tx_rate_limiter",
    ];
    const REQUIRED: &'static [&'static str] = &["iface_id", "host_dev_name"];

    fn sample() -> Self {
        Self {
            mtu: Some(1500),
            rx_rate_limiter: Some(RateLimiter::sample()),
            tx_rate_limiter: Some(RateLimiter::sample()),
            ..Self::new("eth0", "tap0").with_mac(MacAddr([6, 0, 0xac, 0x10, 0, 2]))
        }
    }
}

/// Body of `PATCH /network-interfaces/{iface_id}` (post-boot): new rate limiters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialNetworkInterface {
    /// Id; must equal the id in the path.
    pub iface_id: String,
    /// New receive rate limiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_rate_limiter: Option<RateLimiter>,
    /// New transmit rate limiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_rate_limiter: Option<RateLimiter>,
}

impl ApiModel for PartialNetworkInterface {
    const DEFINITION: &'static str = "PartialNetworkInterface";
    const FIELDS: &'static [&'static str] = &["iface_id", "rx_rate_limiter", "tx_rate_limiter"];
    const REQUIRED: &'static [&'static str] = &["iface_id"];

    fn sample() -> Self {
        Self {
            iface_id: "eth0".into(),
            rx_rate_limiter: Some(RateLimiter::sample()),
            tx_rate_limiter: Some(RateLimiter::sample()),
        }
    }
}
