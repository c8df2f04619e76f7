//! [`Registry`]: operations by id, each behind a `tokio::sync::watch` channel.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::AsyncOp;

/// In-flight and recently finished operations, by id.
///
/// Share it with `Arc<Registry<T>>`. Every method is synchronous and quick,
/// so it may be called from async code directly.
pub struct Registry<T: AsyncOp> {
    /// Operations by id.
    ///
    /// A leaf lock: held only to look up, add or remove entries. It is never
    /// held across an `.await`, while running a caller's closure, or while
    /// waiting on an operation's channel (values are read and written through
    /// a clone of the entry's sender after the lock is released), so callers
    /// may hold any of their own locks when they call in.
    entries: Mutex<BTreeMap<String, Entry<T>>>,
}

struct Entry<T> {
    /// The current value; watchers hold receivers of this channel.
    tx: watch::Sender<T>,
    /// When the operation was first seen done.
    finished_at: Option<Instant>,
}

impl<T: AsyncOp> Registry<T> {
    /// An empty registry.
    pub fn new() -> Self {
        Registry {
            entries: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds an operation under `id`.
    ///
    /// An existing entry with the same id is replaced; its watchers keep the
    /// old value and see their channel close.
    pub fn insert(&self, id: impl Into<String>, op: T) {
        let finished_at = op.is_done().then(Instant::now);
        let (tx, _) = watch::channel(op);
        self.lock().insert(id.into(), Entry { tx, finished_at });
    }

    /// Changes the operation `id` in place and notifies its watchers; returns
    /// the new value, or `None` if there is no such operation.
    ///
    /// Updates to one operation are serialised, so concurrent callers never
    /// lose each other's changes. `f` runs while that operation's channel is
    /// locked (the registry itself is not): keep it to field assignments, and
    /// never read or update the same operation from it, which would deadlock.
    /// The first update that leaves the operation done records its
    /// finish time for [`prune`](Registry::prune).
    pub fn update(&self, id: &str, f: impl FnOnce(&mut T)) -> Option<T> {
        let tx = self.sender(id)?;
        let mut after = None;
        tx.send_modify(|op| {
            f(op);
            after = Some(op.clone());
        });
        let after = after?;
        if after.is_done() {
            let mut entries = self.lock();
            // The entry may have been removed or replaced meanwhile.
            if let Some(entry) = entries.get_mut(id)
                && entry.tx.same_channel(&tx)
                && entry.finished_at.is_none()
            {
                entry.finished_at = Some(Instant::now());
            }
        }
        Some(after)
    }

    /// The current value of operation `id`.
    pub fn get(&self, id: &str) -> Option<T> {
        let tx = self.sender(id)?;
        let op = tx.borrow().clone();
        Some(op)
    }

    /// Follows operation `id`.
    ///
    /// The receiver's current value counts as not yet seen, so the first
    /// `changed().await` returns at once; after that it wakes for later
    /// changes. Changes made faster than the watcher reads may be coalesced,
    /// but the latest value is never missed, so a watcher always sees the
    /// final one, even if it subscribes after the operation finished.
    /// `rx.wait_for(AsyncOp::is_done)` waits for that final value. Once the
    /// operation is pruned or removed, `changed()` returns an error and
    /// `borrow()` still shows the last value.
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<T>> {
        let tx = self.sender(id)?;
        let mut rx = tx.subscribe();
        rx.mark_changed();
        Some(rx)
    }

    /// Current values of all operations, ordered by id.
    pub fn list(&self) -> Vec<T> {
        let senders: Vec<watch::Sender<T>> =
            self.lock().values().map(|entry| entry.tx.clone()).collect();
        senders.iter().map(|tx| tx.borrow().clone()).collect()
    }

    /// Drops operations that finished at least `finished_longer_than` ago;
    /// running ones are kept. Returns how many were dropped.
    pub fn prune(&self, finished_longer_than: Duration) -> usize {
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, entry| {
            entry
                .finished_at
                .is_none_or(|at| at.elapsed() < finished_longer_than)
        });
        before - entries.len()
    }

    /// Drops operation `id` whatever its state; returns its last value.
    pub fn remove(&self, id: &str) -> Option<T> {
        let entry = self.lock().remove(id)?;
        let op = entry.tx.borrow().clone();
        Some(op)
    }

    /// Number of operations held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the registry holds no operations.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// A clone of operation `id`'s sender, so the channel can be used after
    /// the registry lock is released.
    fn sender(&self, id: &str) -> Option<watch::Sender<T>> {
        self.lock().get(id).map(|entry| entry.tx.clone())
    }

    /// The entries. Nothing panics while holding the lock except allocation
    /// failure, and every critical section leaves the map consistent, so a
    /// poisoned lock is safe to use.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry<T>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T: AsyncOp> Default for Registry<T> {
    fn default() -> Self {
        Registry::new()
    }
}

impl<T: AsyncOp> fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("len", &self.len())
            .finish()
    }
}
