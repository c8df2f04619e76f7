//! The daemon's error type and its one mapping to RPC errors.

use banger_api::{ErrorKind, RpcError};

/// Everything a daemon request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad input; nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// The named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Name taken, or the object is in the wrong state; nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] banger_store::StoreError),
    /// A privileged operation failed or was refused.
    #[error(transparent)]
    PrivOps(#[from] banger_privops::PrivOpsError),
    /// An image file check or copy failed.
    #[error(transparent)]
    Image(#[from] banger_imagemgr::ImageMgrError),
    /// A VM root disk could not be made or removed.
    #[error(transparent)]
    RootDisk(#[from] banger_dmsnap::RootDiskError),
    /// The VMM could not be started, configured or stopped.
    #[error("VM {vm}: {message}")]
    Vmm {
        /// VM name.
        vm: String,
        /// What failed, with the VMM's own words.
        message: String,
    },
    /// A host file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl DaemonError {
    /// Build an [`DaemonError::Io`] mapper for `?`.
    pub fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> DaemonError {
        let path = path.to_path_buf();
        move |source| DaemonError::Io { what, path, source }
    }
}

impl From<RpcError> for DaemonError {
    fn from(e: RpcError) -> Self {
        match e.kind {
            ErrorKind::InvalidArgument => DaemonError::Invalid(e.message),
            ErrorKind::NotFound => DaemonError::NotFound(e.message),
            ErrorKind::Conflict => DaemonError::Conflict(e.message),
            _ => DaemonError::Internal(e.message),
        }
    }
}

impl DaemonError {
    /// A service error of `kind` whose message is `e`'s chain: how the
    /// services' typed errors (`ImageError`, `VmError`, ...) become the
    /// common error with their kind.
    pub fn of_kind(kind: ErrorKind, e: &dyn std::error::Error) -> DaemonError {
        DaemonError::from(RpcError::new(kind, error_chain(e)))
    }

    /// The RPC kind this error answers with (the CLI's exit code follows
    /// from it). A service error (`NetworkError`, `WorkspaceOpError`)
    /// keeps its kind through its conversion into `DaemonError`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DaemonError::Invalid(_) => ErrorKind::InvalidArgument,
            DaemonError::NotFound(_) => ErrorKind::NotFound,
            DaemonError::Conflict(_) => ErrorKind::Conflict,
            DaemonError::Store(s) => s.kind(),
            DaemonError::Image(banger_imagemgr::ImageMgrError::WrongKind { .. }) => {
                ErrorKind::InvalidArgument
            }
            DaemonError::PrivOps(banger_privops::PrivOpsError::Refused { .. }) => {
                ErrorKind::InvalidArgument
            }
            _ => ErrorKind::Internal,
        }
    }
}

/// The single place where daemon errors become wire errors.
pub fn to_rpc(e: &DaemonError) -> RpcError {
    RpcError::new(e.kind(), error_chain(e))
}

/// `e` and its sources joined with ": ", skipping repeats.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}
