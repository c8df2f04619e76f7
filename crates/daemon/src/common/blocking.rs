//! The one way blocking work leaves the async workers: privileged calls
//! (the `PrivilegedOps` seam is synchronous, and its netlink calls run their
//! own small runtime, which must never nest inside the daemon's) and slow
//! file work (copies, hashes, kernel extraction) run on tokio's blocking
//! pool through these helpers.

use std::sync::Arc;

use banger_privops::{PrivOpsError, PrivilegedOps};

use crate::common::error::DaemonError;

/// Run `f` on a blocking thread; `f` fails with its caller's error type
/// (a panic comes back as [`DaemonError::Internal`] in it).
pub async fn blocking<T: Send + 'static, E: From<DaemonError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| E::from(DaemonError::Internal(e.to_string())))?
}

/// Why a privileged call failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivCallError {
    /// The seam refused or failed the call.
    #[error(transparent)]
    Failed(#[from] PrivOpsError),
    /// The blocking thread panicked.
    #[error("internal error: privileged call panicked: {0}")]
    Panicked(String),
}

impl From<PrivCallError> for DaemonError {
    fn from(e: PrivCallError) -> Self {
        match e {
            PrivCallError::Failed(e) => DaemonError::PrivOps(e),
            PrivCallError::Panicked(m) => {
                DaemonError::Internal(format!("privileged call panicked: {m}"))
            }
        }
    }
}

/// Run a privileged call on a blocking thread.
pub async fn privileged<T: Send + 'static>(
    privops: &Arc<dyn PrivilegedOps>,
    f: impl FnOnce(&dyn PrivilegedOps) -> Result<T, PrivOpsError> + Send + 'static,
) -> Result<T, PrivCallError> {
    let p = Arc::clone(privops);
    tokio::task::spawn_blocking(move || f(&*p))
        .await
        .map_err(|e| PrivCallError::Panicked(e.to_string()))?
        .map_err(PrivCallError::Failed)
}
