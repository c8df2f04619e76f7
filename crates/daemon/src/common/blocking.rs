//! The one way blocking work leaves the async workers: privileged calls
//! (the `PrivilegedOps` seam is synchronous, and its netlink calls run their
//! own small runtime, which must never nest inside the daemon's) and slow
//! file work (copies, hashes, kernel extraction) run on tokio's blocking
//! pool through these helpers.

use std::sync::Arc;

use banger_privops::{PrivOpsError, PrivilegedOps};

use crate::common::error::DaemonError;

/// Run `f` on a blocking thread.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, DaemonError> + Send + 'static,
) -> Result<T, DaemonError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))?
}

/// Run a privileged call on a blocking thread.
pub async fn privileged<T: Send + 'static>(
    privops: &Arc<dyn PrivilegedOps>,
    f: impl FnOnce(&dyn PrivilegedOps) -> Result<T, PrivOpsError> + Send + 'static,
) -> Result<T, DaemonError> {
    let p = Arc::clone(privops);
    tokio::task::spawn_blocking(move || f(&*p))
        .await
        .map_err(|e| DaemonError::Internal(format!("privileged call panicked: {e}")))?
        .map_err(DaemonError::from)
}
