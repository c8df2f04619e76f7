//! Per-VM locks (the seed's `vmLockSet`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// A map of one async mutex per VM id, handing out owned guards.
///
/// The map's own `std::sync::Mutex` is a leaf lock held only to look up or
/// insert an entry, never across an await.
#[derive(Debug, Default)]
pub struct VmLockSet {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl VmLockSet {
    /// Wait for and take the lock of VM `id`.
    pub async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        let m = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Forget VM `id`'s lock (after delete). Holders and waiters keep theirs.
    pub fn forget(&self, id: &str) {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn same_id_serialises_other_ids_do_not() {
        let set = Arc::new(VmLockSet::default());
        let g = set.lock("a").await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), set.lock("b"))
                .await
                .is_ok()
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(50), set.lock("a"))
                .await
                .is_err()
        );
        drop(g);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), set.lock("a"))
                .await
                .is_ok()
        );
    }
}
