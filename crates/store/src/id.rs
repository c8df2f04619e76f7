//! Identifiers and timestamps for stored objects.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use banger_api::UnixMillis;

/// The current wall-clock time in milliseconds since the Unix epoch.
///
/// A clock set before 1970 reads as 0.
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| UnixMillis::try_from(d.as_millis()).unwrap_or(UnixMillis::MAX))
        .unwrap_or(0)
}

/// A fresh identifier: 16 lowercase hex digits from the OS random source.
pub fn new_id() -> String {
    let mut bytes = [0u8; 8];
    if let Err(err) = getrandom::fill(&mut bytes) {
        // The OS source does not fail on a booted Linux host; if it ever does,
        // ids still have to be unique, not secret, so degrade instead of dying.
        tracing::warn!(%err, "OS random source failed; deriving the id from time and pid");
        bytes = fallback_bytes();
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Unique-per-process bytes from the clock, the pid and a counter, mixed with
/// SplitMix64 so that consecutive ids do not share prefixes.
fn fallback_bytes() -> [u8; 8] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let seed = nanos
        ^ u64::from(std::process::id()).rotate_left(40)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn is_id(s: &str) -> bool {
        s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    #[test]
    fn ids_are_16_lowercase_hex_digits_and_distinct() {
        let ids: HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| is_id(id)), "{ids:?}");
    }

    #[test]
    fn fallback_ids_are_distinct() {
        let ids: HashSet<String> = (0..1000).map(|_| hex(&fallback_bytes())).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| is_id(id)));
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_millis() > 1_577_836_800_000);
    }
}
