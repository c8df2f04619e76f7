//! Token-bucket rate limiters attached to drives, net, entropy, pmem and serial.

use serde::{Deserialize, Serialize};

use crate::model::ApiModel;

/// One token bucket. `size` 0 or `refill_time` 0 disables it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenBucket {
    /// Bucket size in tokens (bytes for bandwidth, requests for ops).
    pub size: u64,
    /// Extra tokens available once, at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_time_burst: Option<u64>,
    /// Milliseconds to refill the whole bucket.
    pub refill_time: u64,
}

impl TokenBucket {
    /// A bucket of `size` tokens refilled every `refill_time_ms` milliseconds.
    pub fn new(size: u64, refill_time_ms: u64) -> Self {
        Self {
            size,
            one_time_burst: None,
            refill_time: refill_time_ms,
        }
    }
}

impl ApiModel for TokenBucket {
    const DEFINITION: &'static str = "TokenBucket";
    const FIELDS: &'static [&'static str] = &["size", "one_time_burst", "refill_time"];
    const REQUIRED: &'static [&'static str] = &["size", "refill_time"];

    fn sample() -> Self {
        Self {
            size: 1000,
            one_time_burst: Some(10),
            refill_time: 100,
        }
    }
}

/// A bandwidth bucket and an operations bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimiter {
    /// Bytes per refill period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<TokenBucket>,
    /// Operations per refill period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ops: Option<TokenBucket>,
}

impl ApiModel for RateLimiter {
    const DEFINITION: &'static str = "RateLimiter";
    const FIELDS: &'static [&'static str] = &["bandwidth", "ops"];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            bandwidth: Some(TokenBucket::sample()),
            ops: Some(TokenBucket::new(100, 1000)),
        }
    }
}
