//! `/balloon`: the virtio-balloon device, its updates and statistics.

use serde::{Deserialize, Serialize};

use crate::model::ApiModel;

/// Body of `PUT /balloon` (pre-boot) and of `GET /balloon`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balloon {
    /// Target balloon size in MiB.
    pub amount_mib: u32,
    /// Deflate the balloon when the guest is out of memory.
    pub deflate_on_oom: bool,
    /// Statistics polling interval in seconds; 0 disables statistics. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats_polling_interval_s: Option<u16>,
    /// Enable free page hinting. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_page_hinting: Option<bool>,
    /// Enable free page reporting. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_page_reporting: Option<bool>,
}

impl Balloon {
    /// A balloon of `amount_mib` MiB.
    pub fn new(amount_mib: u32, deflate_on_oom: bool) -> Self {
        Self {
            amount_mib,
            deflate_on_oom,
            stats_polling_interval_s: None,
            free_page_hinting: None,
            free_page_reporting: None,
        }
    }

    /// Fills unset optional fields with Firecracker's defaults, as `GET /balloon` shows them.
    pub fn with_defaults(mut self) -> Self {
        self.stats_polling_interval_s.get_or_insert(0);
        self.free_page_hinting.get_or_insert(false);
        self.free_page_reporting.get_or_insert(false);
        self
    }
}

impl ApiModel for Balloon {
    const DEFINITION: &'static str = "Balloon";
    const FIELDS: &'static [&'static str] = &[
        "amount_mib",
        "deflate_on_oom",
        "stats_polling_interval_s",
        "free_page_hinting",
        "free_page_reporting",
    ];
    const REQUIRED: &'static [&'static str] = &["amount_mib", "deflate_on_oom"];

    fn sample() -> Self {
        Self {
            stats_polling_interval_s: Some(1),
            ..Self::new(16, true).with_defaults()
        }
    }
}

/// Body of `PATCH /balloon` (post-boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonUpdate {
    /// New target size in MiB.
    pub amount_mib: u32,
}

impl ApiModel for BalloonUpdate {
    const DEFINITION: &'static str = "BalloonUpdate";
    const FIELDS: &'static [&'static str] = &["amount_mib"];
    const REQUIRED: &'static [&'static str] = &["amount_mib"];

    fn sample() -> Self {
        Self { amount_mib: 8 }
    }
}

/// Body of `PATCH /balloon/statistics` (post-boot; cannot turn statistics on or off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonStatsUpdate {
    /// New polling interval in seconds.
    pub stats_polling_interval_s: u16,
}

impl ApiModel for BalloonStatsUpdate {
    const DEFINITION: &'static str = "BalloonStatsUpdate";
    const FIELDS: &'static [&'static str] = &["stats_polling_interval_s"];
    const REQUIRED: &'static [&'static str] = &["stats_polling_interval_s"];

    fn sample() -> Self {
        Self {
            stats_polling_interval_s: 5,
        }
    }
}

/// Body of `GET /balloon/statistics`: sizes plus the guest's memory statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonStats {
    /// Target size in 4 KiB pages.
    pub target_pages: u32,
    /// Current size in 4 KiB pages.
    pub actual_pages: u32,
    /// Target size in MiB.
    pub target_mib: u32,
    /// Current size in MiB.
    pub actual_mib: u32,
    /// Bytes swapped in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_in: Option<u64>,
    /// Bytes swapped out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap_out: Option<u64>,
    /// Major page faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major_faults: Option<u64>,
    /// Minor page faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor_faults: Option<u64>,
    /// Free memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_memory: Option<u64>,
    /// Total memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_memory: Option<u64>,
    /// Available memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_memory: Option<u64>,
    /// Disk cache in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_caches: Option<u64>,
    /// Successful hugetlb allocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugetlb_allocations: Option<u64>,
    /// Failed hugetlb allocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hugetlb_failures: Option<u64>,
    /// OOM kills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kill: Option<u64>,
    /// Allocation stalls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alloc_stall: Option<u64>,
    /// Pages scanned by kswapd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_scan: Option<u64>,
    /// Pages scanned directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_scan: Option<u64>,
    /// Pages reclaimed by kswapd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_reclaim: Option<u64>,
    /// Pages reclaimed directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_reclaim: Option<u64>,
}

impl ApiModel for BalloonStats {
    const DEFINITION: &'static str = "BalloonStats";
    const FIELDS: &'static [&'static str] = &[
        "target_pages",
        "actual_pages",
        "target_mib",
        "actual_mib",
        "swap_in",
        "swap_out",
        "major_faults",
        "minor_faults",
        "free_memory",
        "total_memory",
        "available_memory",
        "disk_caches",
        "hugetlb_allocations",
        "hugetlb_failures",
        "oom_kill",
        "alloc_stall",
        "async_scan",
        "direct_scan",
        "async_reclaim",
        "direct_reclaim",
    ];
    const REQUIRED: &'static [&'static str] =
        &["target_pages", "actual_pages", "target_mib", "actual_mib"];

    fn sample() -> Self {
        Self {
            target_pages: 256,
            actual_pages: 256,
            target_mib: 1,
            actual_mib: 1,
            swap_in: Some(0),
            swap_out: Some(0),
            major_faults: Some(1),
            minor_faults: Some(2),
            free_memory: Some(3),
            total_memory: Some(4),
            available_memory: Some(5),
            disk_caches: Some(6),
            hugetlb_allocations: Some(0),
            hugetlb_failures: Some(0),
            oom_kill: Some(0),
            alloc_stall: Some(0),
            async_scan: Some(0),
            direct_scan: Some(0),
            async_reclaim: Some(0),
            direct_reclaim: Some(0),
        }
    }
}

/// Body of `PATCH /balloon/hinting/start`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonStartCmd {
    /// Ask the guest to acknowledge when the run stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge_on_stop: Option<bool>,
}

impl ApiModel for BalloonStartCmd {
    const DEFINITION: &'static str = "BalloonStartCmd";
    const FIELDS: &'static [&'static str] = &["acknowledge_on_stop"];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            acknowledge_on_stop: Some(true),
        }
    }
}

/// Body of `GET /balloon/hinting/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalloonHintingStatus {
    /// Last command id sent by the host.
    pub host_cmd: u32,
    /// Last command id acknowledged by the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_cmd: Option<u32>,
}

impl ApiModel for BalloonHintingStatus {
    const DEFINITION: &'static str = "BalloonHintingStatus";
    const FIELDS: &'static [&'static str] = &["host_cmd", "guest_cmd"];
    const REQUIRED: &'static [&'static str] = &["host_cmd"];

    fn sample() -> Self {
        Self {
            host_cmd: 2,
            guest_cmd: Some(1),
        }
    }
}
