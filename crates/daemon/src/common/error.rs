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
    /// A guest or a remote service did not answer.
    #[error("{0}")]
    Unreachable(String),
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
    /// A service's own error (`ImageError`, `VmError`, ...), with its kind.
    #[error(transparent)]
    Service(ServiceFailure),
}

/// A boxed [`ServiceError`]: shows and chains exactly as the error it holds.
#[derive(Debug)]
pub struct ServiceFailure(pub Box<dyn ServiceError>);

impl std::fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ServiceFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A service's own error type: every variant answers with an RPC kind.
/// It becomes a [`DaemonError`] at the service's public boundary through
/// the `From` impl that [`service_error!`](crate::service_error) writes.
pub trait ServiceError: std::error::Error + Send + Sync + 'static {
    /// The RPC kind this error answers with.
    fn kind(&self) -> ErrorKind;
}

/// The RPC kind of a store failure.
pub fn store_kind(e: &banger_store::StoreError) -> ErrorKind {
    e.kind()
}

/// The RPC kind of a privileged-operation failure: refused is bad input.
pub fn privops_kind(e: &banger_privops::PrivOpsError) -> ErrorKind {
    match e {
        banger_privops::PrivOpsError::Refused { .. } => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

/// The RPC kind of an image-file failure: a file of the wrong kind is bad input.
pub fn tool_kind(e: &banger_imagemgr::ImageMgrError) -> ErrorKind {
    match e {
        banger_imagemgr::ImageMgrError::WrongKind { .. } => ErrorKind::InvalidArgument,
        _ => ErrorKind::Internal,
    }
}

/// Declare a service's error enum (which derives `Debug` and
/// `thiserror::Error` itself): its own variants, then the failures
/// every service shares, written once here: `Invalid`, `NotFound`,
/// `Conflict` (a message of that kind), `Internal` ("internal error: …"),
/// `Io` (a host file operation), `Store`, `PrivOps` and `Tool` (an image
/// file check or copy), each with the kind and the words `DaemonError`
/// gives it. The enum's own `own_kind()` gives its own variants' kinds.
///
/// Also writes `kind()`, [`ServiceError`], the `io` mapper for `?`, its
/// `From<RpcError>` (a validation failure becomes the variant of its kind,
/// as it becomes `DaemonError`'s) and its one conversion into
/// [`DaemonError`]: the variants named after `through` hold an error that
/// already converts into `DaemonError` (a `common` helper's, another
/// service's) and convert as that error does; every other variant is
/// boxed with its kind.
#[macro_export]
macro_rules! service_error {
    (
        $(#[$meta:meta])*
        pub enum $t:ident { $($own:tt)* }
        through $($through:ident),+;
    ) => {
        $(#[$meta])*
        pub enum $t {
            $($own)*
            /// Bad input; nothing changed.
            #[error("{0}")]
            Invalid(String),
            /// The named object does not exist.
            #[error("{0}")]
            NotFound(String),
            /// In use, taken or in the wrong state; nothing changed.
            #[error("{0}")]
            Conflict(String),
            /// Something that should not happen (a worker thread, a tool run).
            #[error("internal error: {0}")]
            Internal(String),
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
            // `{0}` with the error as source, not `transparent` (which
            // cannot cross this macro's hygiene): error_chain skips the
            // repeated text, so the words are the same.
            /// The store failed.
            #[error("{0}")]
            Store(#[from] banger_store::StoreError),
            /// A privileged operation failed or was refused.
            #[error("{0}")]
            PrivOps(#[from] banger_privops::PrivOpsError),
            /// An image file check or copy failed.
            #[error("{0}")]
            Tool(#[from] banger_imagemgr::ImageMgrError),
        }

        impl $t {
            /// The RPC kind (and so the CLI exit code) this error answers with.
            pub fn kind(&self) -> banger_api::ErrorKind {
                use banger_api::ErrorKind;
                match self {
                    $t::Invalid(_) => ErrorKind::InvalidArgument,
                    $t::NotFound(_) => ErrorKind::NotFound,
                    $t::Conflict(_) => ErrorKind::Conflict,
                    $t::Internal(_) | $t::Io { .. } => ErrorKind::Internal,
                    $t::Store(e) => $crate::common::error::store_kind(e),
                    $t::PrivOps(e) => $crate::common::error::privops_kind(e),
                    $t::Tool(e) => $crate::common::error::tool_kind(e),
                    own => own.own_kind(),
                }
            }
        }

        impl $t {
            /// Build an `Io` error mapper for `?`.
            pub fn io(
                what: &'static str,
                path: &std::path::Path,
            ) -> impl FnOnce(std::io::Error) -> Self {
                let path = path.to_path_buf();
                move |source| $t::Io { what, path, source }
            }
        }

        impl From<banger_api::RpcError> for $t {
            fn from(e: banger_api::RpcError) -> Self {
                match e.kind {
                    banger_api::ErrorKind::InvalidArgument => $t::Invalid(e.message),
                    banger_api::ErrorKind::NotFound => $t::NotFound(e.message),
                    banger_api::ErrorKind::Conflict => $t::Conflict(e.message),
                    _ => $t::Internal(e.message),
                }
            }
        }

        impl $crate::common::error::ServiceError for $t {
            fn kind(&self) -> banger_api::ErrorKind {
                $t::kind(self)
            }
        }

        impl From<$t> for $crate::common::error::DaemonError {
            fn from(e: $t) -> Self {
                match e {
                    $($t::$through(inner) => $crate::common::error::common(inner),)+
                    e => $crate::common::error::DaemonError::Service(
                        $crate::common::error::ServiceFailure(Box::new(e)),
                    ),
                }
            }
        }
    };
}

/// `e` as the common error (the conversion [`service_error!`] uses for the
/// variants it passes through).
pub fn common(e: impl Into<DaemonError>) -> DaemonError {
    e.into()
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
            ErrorKind::Unreachable => DaemonError::Unreachable(e.message),
            _ => DaemonError::Internal(e.message),
        }
    }
}

impl DaemonError {
    /// A service error of `kind` whose message is `e`'s chain, as the plain
    /// common variant of that kind (an internal one says "internal error"):
    /// how `WorkspaceOpError` becomes the common error. `ImageError` and
    /// `VmError` are boxed whole instead ([`service_error!`](crate::service_error)).
    pub fn of_kind(kind: ErrorKind, e: &dyn std::error::Error) -> DaemonError {
        DaemonError::from(RpcError::new(kind, error_chain(e)))
    }

    /// The RPC kind this error answers with (the CLI's exit code follows
    /// from it). A service error (`NetworkError`, `ImageError`, `VmError`,
    /// `WorkspaceOpError`) keeps its kind through its conversion into
    /// `DaemonError`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DaemonError::Invalid(_) => ErrorKind::InvalidArgument,
            DaemonError::NotFound(_) => ErrorKind::NotFound,
            DaemonError::Conflict(_) => ErrorKind::Conflict,
            DaemonError::Unreachable(_) => ErrorKind::Unreachable,
            DaemonError::Store(s) => store_kind(s),
            DaemonError::Image(e) => tool_kind(e),
            DaemonError::PrivOps(e) => privops_kind(e),
            DaemonError::Service(e) => e.0.kind(),
            DaemonError::RootDisk(_)
            | DaemonError::Vmm { .. }
            | DaemonError::Io { .. }
            | DaemonError::Internal(_) => ErrorKind::Internal,
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
