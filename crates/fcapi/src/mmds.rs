//! `PUT /mmds/config`: the microVM metadata service.

use serde::{Deserialize, Serialize};

use crate::model::{ApiModel, api_enum};

/// MMDS protocol version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MmdsVersion {
    /// Plain GETs (deprecated; the default).
    #[default]
    V1,
    /// Session tokens required.
    V2,
}

api_enum!(MmdsVersion {
    V1 => "V1",
    V2 => "V2",
});

/// Body of `PUT /mmds/config`. The contents themselves (`PUT /mmds`) are free-form JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MmdsConfig {
    /// Protocol version. Default `V1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<MmdsVersion>,
    /// Interfaces (by `iface_id`, already configured) that may reach MMDS.
    pub network_interfaces: Vec<String>,
    /// Link-local IPv4 address of the service. Default `169.254.169.254`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    /// Serve EC2 IMDS-compatible responses. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imds_compat: Option<bool>,
}

impl MmdsConfig {
    /// Firecracker's default MMDS address.
    pub const DEFAULT_IPV4_ADDRESS: &'static str = "169.254.169.254";

    /// Fills unset optional fields with Firecracker's defaults.
    pub fn with_defaults(mut self) -> Self {
        self.version.get_or_insert(MmdsVersion::V1);
        self.ipv4_address
            .get_or_insert_with(|| Self::DEFAULT_IPV4_ADDRESS.to_string());
        self.imds_compat.get_or_insert(false);
        self
    }
}

impl ApiModel for MmdsConfig {
    const DEFINITION: &'static str = "MmdsConfig";
    const FIELDS: &'static [&'static str] = &[
        "version",
        "network_interfaces",
        "ipv4_address",
        "imds_compat",
    ];
    const REQUIRED: &'static [&'static str] = &["network_interfaces"];

    fn sample() -> Self {
        Self {
            version: Some(MmdsVersion::V2),
            network_interfaces: vec!["eth0".into()],
            ipv4_address: Some("169.254.170.2".into()),
            imds_compat: Some(true),
        }
    }
}
