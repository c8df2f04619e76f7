//! Small optional devices: `PUT /entropy`, `PUT /serial` and `PUT /pmem/{id}`.

use serde::{Deserialize, Serialize};

use crate::model::ApiModel;
use crate::rate_limiter::{RateLimiter, TokenBucket};

/// Body of `PUT /entropy`: a virtio-rng device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntropyDevice {
    /// Rate limiter for random bytes handed to the guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
}

impl ApiModel for EntropyDevice {
    const DEFINITION: &'static str = "EntropyDevice";
    const FIELDS: &'static [&'static str] = &["rate_limiter"];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            rate_limiter: Some(RateLimiter::sample()),
        }
    }
}

/// Body of `PUT /serial`: where the guest's 8250 console output goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialDevice {
    /// File receiving serial output (instead of Firecracker's stdout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_out_path: Option<String>,
    /// Output rate limit (a bare token bucket, in bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<TokenBucket>,
}

impl ApiModel for SerialDevice {
    const DEFINITION: &'static str = "SerialDevice";
    const FIELDS: &'static [&'static str] = &["serial_out_path", "rate_limiter"];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            serial_out_path: Some("/serial.log".into()),
            rate_limiter: Some(TokenBucket::sample()),
        }
    }
}

/// Body of `PUT /pmem/{id}`: a virtio-pmem device backed by a host file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pmem {
    /// Id; must equal the id in the path.
    pub id: String,
    /// Host path of the backing file.
    pub path_on_host: String,
    /// Use as the root device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_device: Option<bool>,
    /// Map read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// I/O rate limiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
}

impl ApiModel for Pmem {
    const DEFINITION: &'static str = "Pmem";
    const FIELDS: &'static [&'static str] = &[
        "id",
        "path_on_host",
        "root_device",
        "read_only",
        "rate_limiter",
    ];
    const REQUIRED: &'static [&'static str] = &["id", "path_on_host"];

    fn sample() -> Self {
        Self {
            id: "pmem0".into(),
            path_on_host: "/p".into(),
            root_device: Some(false),
            read_only: Some(true),
            rate_limiter: Some(RateLimiter::sample()),
        }
    }
}

/// Body of `PATCH /pmem/{id}` (post-boot): a new rate limiter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialPmem {
    /// Id; must equal the id in the path.
    pub id: String,
    /// New rate limiter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiter: Option<RateLimiter>,
}

impl ApiModel for PartialPmem {
    const DEFINITION: &'static str = "PartialPmem";
    const FIELDS: &'static [&'static str] = &["id", "rate_limiter"];
    const REQUIRED: &'static [&'static str] = &["id"];

    fn sample() -> Self {
        Self {
            id: "pmem0".into(),
            rate_limiter: Some(RateLimiter::sample()),
        }
    }
}
