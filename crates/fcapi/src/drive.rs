//! `PUT`/`PATCH /drives/{drive_id}`: virtio block devices.

use serde::{Deserialize, Serialize};

use crate::model::{ApiModel, api_enum};
use crate::rate_limiter::RateLimiter;

/// How the block device treats guest flush requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CacheType {
    /// Ignore flushes (Firecracker's default).
    #[default]
    Unsafe,
    /// Honour flushes with `fsync`.
    Writeback,
}

api_enum!(CacheType {
    Unsafe => "Unsafe",
    Writeback => "Writeback",
});

/// The block device's I/O engine.
///
/// Declared `Async` first because Firecracker does, and serde lists variants
/// in declaration order in its error messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IoEngine {
    /// io_uring (developer preview in Firecracker).
    Async,
    /// Blocking I/O (Firecracker's default).
    #[default]
    Sync,
}

api_enum!(IoEngine {
    Async => "Async",
    Sync => "Sync",
});

/// Body of `PUT /drives/{drive_id}`, and an entry of `GET /vm/config`'s `drives`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drive {
    /// Id; must equal the id in the path (alphanumerics and `_`).
    pub drive_id: String,
    /// Partition UUID of the root partition (root device only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partuuid: Option<String>,
    /// Whether this is the root device (`/dev/vda`); at most one.
    pub is_root_device: bool,
    /// Flush handling. Default `Unsafe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_type: Option<CacheType>,
    /// Open the backing file read-only. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_read_only: Option<bool>,
    /// Host path of the backing file (virtio-block). Exactly one of this and `socket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_on_host: Option<String>,
    /// I/O rate limiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
    /// I/O engine. Default `Sync`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io_engine: Option<IoEngine>,
    /// vhost-user-block backend socket. Exactly one of this and `path_on_host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket: Option<String>,
}

impl Drive {
    /// A read-write virtio-block drive backed by `path_on_host`.
    pub fn new(
        drive_id: impl Into<String>,
        path_on_host: impl Into<String>,
        is_root_device: bool,
    ) -> Self {
        Self {
            drive_id: drive_id.into(),
            partuuid: None,
            is_root_device,
            cache_type: None,
            is_read_only: Some(false),
            path_on_host: Some(path_on_host.into()),
            rate_limiter: None,
            io_engine: None,
            socket: None,
        }
    }

    /// Sets `is_read_only`.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.is_read_only = Some(read_only);
        self
    }

    /// Fills unset optional fields with Firecracker's defaults, as `GET /vm/config` shows them.
    pub fn with_defaults(mut self) -> Self {
        self.cache_type.get_or_insert(CacheType::Unsafe);
        self.is_read_only.get_or_insert(false);
        self.io_engine.get_or_insert(IoEngine::Sync);
        self
    }
}

impl ApiModel for Drive {
    const DEFINITION: &'static str = "Drive";
    const FIELDS: &'static [&'static str] = &[
        "drive_id",
        "partuuid",
        "is_root_device",
        "cache_type",
        "is_read_only",
        "path_on_host",
        "rate_limiter",
        "io_engine",
        "socket",
    ];
    const REQUIRED: &'static [&'static str] = &["drive_id", "is_root_device"];

    fn sample() -> Self {
        Self {
            partuuid: Some("0eaa91a0-01".into()),
            cache_type: Some(CacheType::Writeback),
            rate_limiter: Some(RateLimiter::sample()),
            io_engine: Some(IoEngine::Async),
            socket: Some("/s".into()),
            ..Self::new("rootfs", "/r", true)
        }
    }
}

/// Body of `PATCH /drives/{drive_id}` (post-boot): new backing file and/or rate limiter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialDrive {
    /// Id; must equal the id in the path.
    pub drive_id: String,
    /// New backing file (tells the guest the disk changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_on_host: Option<String>,
    /// New rate limiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
}

impl ApiModel for PartialDrive {
    const DEFINITION: &'static str = "PartialDrive";
    const FIELDS: &'static [&'static str] = &["drive_id", "path_on_host", "rate_limiter"];
    const REQUIRED: &'static [&'static str] = &["drive_id"];

    fn sample() -> Self {
        Self {
            drive_id: "rootfs".into(),
            path_on_host: Some("/r".into()),
            rate_limiter: Some(RateLimiter::sample()),
        }
    }
}
