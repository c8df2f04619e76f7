//! `/hotplug/memory`: the virtio-mem device.

use serde::{Deserialize, Serialize};

use crate::model::ApiModel;

/// Body of `PUT /hotplug/memory` (pre-boot), and `GET /vm/config`'s `memory-hotplug`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryHotplugConfig {
    /// Total hotpluggable memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size_mib: Option<u64>,
    /// Slot size in MiB (minimum and default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_size_mib: Option<u64>,
    /// Block size in MiB (minimum and default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size_mib: Option<u64>,
}

impl ApiModel for MemoryHotplugConfig {
    const DEFINITION: &'static str = "MemoryHotplugConfig";
    const FIELDS: &'static [&'static str] = &["total_size_mib", "slot_size_mib", "block_size_mib"];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            total_size_mib: Some(1024),
            slot_size_mib: Some(128),
            block_size_mib: Some(2),
        }
    }
}

/// Body of `PATCH /hotplug/memory` (post-boot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryHotplugSizeUpdate {
    /// Memory the guest should have plugged, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_size_mib: Option<u64>,
}

impl ApiModel for MemoryHotplugSizeUpdate {
    const DEFINITION: &'static str = "MemoryHotplugSizeUpdate";
    const FIELDS: &'static [&'static str] = &["requested_size_mib"];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            requested_size_mib: Some(256),
        }
    }
}

/// Body of `GET /hotplug/memory`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryHotplugStatus {
    /// Total hotpluggable memory in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_size_mib: Option<u64>,
    /// Slot size in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_size_mib: Option<u64>,
    /// Block size in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size_mib: Option<u64>,
    /// Memory currently plugged, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugged_size_mib: Option<u64>,
    /// Memory requested, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_size_mib: Option<u64>,
}

impl ApiModel for MemoryHotplugStatus {
    const DEFINITION: &'static str = "MemoryHotplugStatus";
    const FIELDS: &'static [&'static str] = &[
        "total_size_mib",
        "slot_size_mib",
        "block_size_mib",
        "plugged_size_mib",
        "requested_size_mib",
    ];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            total_size_mib: Some(1024),
            slot_size_mib: Some(128),
            block_size_mib: Some(2),
            plugged_size_mib: Some(0),
            requested_size_mib: Some(0),
        }
    }
}
