//! The one thing the registry needs to know about an operation.

/// A snapshot of an asynchronous operation's progress.
///
/// Values are cloned out of the registry for every reader, so keep them small
/// (the daemon stores its wire `Operation`).
pub trait AsyncOp: Clone + Send + Sync + 'static {
    /// Whether the operation has finished, successfully or not.
    ///
    /// Once an operation reports done it is expected to stay done: the
    /// registry records the first moment it saw it finished and prunes by that.
    fn is_done(&self) -> bool;
}
