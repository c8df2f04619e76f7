//! The warm TAP pool: persistent TAPs already attached to the bridge and
//! up, so a VM start only pops a name. The pool owns its mutex, a leaf lock
//! held for a push or pop only; refills run in the background.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use banger_config::DEVICE_PREFIX;

/// Ready TAP names.
#[derive(Debug)]
pub struct TapPool {
    free: Mutex<VecDeque<String>>,
    target: usize,
    refilling: AtomicBool,
}

impl TapPool {
    /// A pool that keeps `target` TAPs ready.
    pub fn new(target: usize) -> Self {
        Self {
            free: Mutex::new(VecDeque::new()),
            target,
            refilling: AtomicBool::new(false),
        }
    }

    /// Pop a ready TAP.
    pub fn take(&self) -> Option<String> {
        self.lock().pop_front()
    }

    /// Keep `tap` if the pool is short of its target; `false` means the
    /// caller must delete it.
    pub fn give_back(&self, tap: String) -> bool {
        let mut free = self.lock();
        if free.len() < self.target && !free.contains(&tap) {
            free.push_back(tap);
            true
        } else {
            false
        }
    }

    /// Add a freshly created TAP (refill).
    pub fn add(&self, tap: String) {
        self.lock().push_back(tap);
    }

    /// How many TAPs are missing to reach the target.
    pub fn missing(&self) -> usize {
        self.target.saturating_sub(self.lock().len())
    }

    /// Ready TAPs.
    pub fn names(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    /// Empty the pool, returning what it held.
    pub fn drain(&self) -> Vec<String> {
        self.lock().drain(..).collect()
    }

    /// Target size.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Claim the right to refill; `false` when a refill already runs.
    pub fn begin_refill(&self) -> bool {
        !self.refilling.swap(true, Ordering::AcqRel)
    }

    /// Release it.
    pub fn end_refill(&self) {
        self.refilling.store(false, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<String>> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether `name` is one of banger's TAP names.
pub fn is_tap_name(name: &str) -> bool {
    name.strip_prefix(DEVICE_PREFIX)
        .and_then(|r| r.strip_prefix('t'))
        .is_some_and(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A fresh TAP name: the prefix, `t`, 8 random hex digits (11 characters,
/// within the kernel's 15).
pub fn new_tap_name() -> String {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
            ^ std::process::id();
        b = n.to_le_bytes();
    }
    format!(
        "{DEVICE_PREFIX}t{:02x}{:02x}{:02x}{:02x}",
        b[0], b[1], b[2], b[3]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keeps_its_target() {
        let p = TapPool::new(2);
        assert_eq!(p.missing(), 2);
        p.add("bgt00000001".into());
        p.add("bgt00000002".into());
        assert_eq!(p.missing(), 0);
        let t = p.take().unwrap();
        assert_eq!(t, "bgt00000001");
        assert!(!p.give_back("bgt00000002".into()), "no duplicates");
        assert!(p.give_back(t.clone()));
        assert!(!p.give_back("bgt00000003".into()), "full");
        assert_eq!(p.drain().len(), 2);
        assert!(p.begin_refill());
        assert!(!p.begin_refill());
        p.end_refill();
        assert!(p.begin_refill());
    }

    #[test]
    fn names() {
        let n = new_tap_name();
        assert_eq!(n.len(), 11);
        assert!(is_tap_name(&n), "{n}");
        assert_ne!(n, new_tap_name());
        assert!(!is_tap_name("bg0"));
        assert!(!is_tap_name("bgtzzzzzzzz"));
        assert!(!is_tap_name("eth0"));
    }
}
