//! `ImageError`: the image service's own failures (images, `build/` and
//! `kernels/`), each with its kind.

use banger_api::ErrorKind;

use crate::common::error::{DaemonError, privops_kind, store_kind, tool_kind};
use crate::images::seed::SeedError;

/// Why an image or kernel operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The name is in use.
    #[error(
        "an image named {0:?} already exists; pick another name or delete it with `banger image delete {0}`"
    )]
    NameTaken(String),
    /// No image has this name or id.
    #[error(
        "no image named {0:?}; register one with `banger image register {0} --rootfs FILE --kernel FILE` (see `banger image list`)"
    )]
    NoSuchImage(String),
    /// The image a VM refers to is gone.
    #[error("image {0} no longer exists")]
    Gone(String),
    /// A file argument is not an absolute path.
    #[error("{what} path {path:?} must be absolute")]
    NotAbsolute {
        /// What the file is.
        what: String,
        /// As given.
        path: String,
    },
    /// A file argument names no regular file.
    #[error("{what} {path} does not exist or is not a regular file")]
    NoFile {
        /// What the file is.
        what: String,
        /// As given.
        path: String,
    },
    /// Seeding failed.
    #[error(transparent)]
    Seed(#[from] SeedError),
    /// Bad input (a reference, URL, recipe, catalogue entry, ...); nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// The named kernel, blob or file does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The kernel or image is in use, or its name is taken; nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// A download, a tool run or a worker thread failed.
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
    /// The store failed.
    #[error(transparent)]
    Store(#[from] banger_store::StoreError),
    /// An image file check or copy failed.
    #[error(transparent)]
    Tool(#[from] banger_imagemgr::ImageMgrError),
    /// A privileged operation failed or was refused.
    #[error(transparent)]
    PrivOps(#[from] banger_privops::PrivOpsError),
    /// A `common` helper (the blocking pool, ...) failed.
    #[error(transparent)]
    Common(#[from] DaemonError),
}

impl ImageError {
    /// The RPC kind this error answers with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NameTaken(_) | ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::NoSuchImage(_) | ImageError::Gone(_) | ImageError::NotFound(_) => {
                ErrorKind::NotFound
            }
            ImageError::NotAbsolute { .. }
            | ImageError::NoFile { .. }
            | ImageError::Seed(_)
            | ImageError::Invalid(_) => ErrorKind::InvalidArgument,
            ImageError::Internal(_) | ImageError::Io { .. } => ErrorKind::Internal,
            ImageError::Store(e) => store_kind(e),
            ImageError::Tool(e) => tool_kind(e),
            ImageError::PrivOps(e) => privops_kind(e),
            ImageError::Common(e) => e.kind(),
        }
    }
}

crate::service_error!(ImageError; Common);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::error::{error_chain, to_rpc};

    #[test]
    fn converts_with_its_message_and_kind() {
        let cases = [
            (ImageError::NameTaken("base".into()), ErrorKind::Conflict),
            (ImageError::NoSuchImage("base".into()), ErrorKind::NotFound),
            (ImageError::Gone("01ab".into()), ErrorKind::NotFound),
            (
                ImageError::NotAbsolute {
                    what: "rootfs".into(),
                    path: "r.ext4".into(),
                },
                ErrorKind::InvalidArgument,
            ),
            (
                ImageError::NoFile {
                    what: "kernel".into(),
                    path: "/k".into(),
                },
                ErrorKind::InvalidArgument,
            ),
        ];
        for (e, kind) in cases {
            let message = error_chain(&e);
            assert_eq!(e.kind(), kind);
            let rpc = to_rpc(&DaemonError::from(e));
            assert_eq!((rpc.kind, rpc.message), (kind, message));
        }
        assert_eq!(
            ImageError::NameTaken("base".into()).to_string(),
            "an image named \"base\" already exists; pick another name or delete it with `banger image delete base`"
        );
    }

    #[test]
    fn shared_failures_answer_as_the_common_error_did() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let cases = [
            (
                ImageError::Internal("boom".into()),
                DaemonError::Internal("boom".into()),
            ),
            (
                ImageError::Invalid("bad".into()),
                DaemonError::Invalid("bad".into()),
            ),
            (
                ImageError::NotFound("gone".into()),
                DaemonError::NotFound("gone".into()),
            ),
            (
                ImageError::Conflict("busy".into()),
                DaemonError::Conflict("busy".into()),
            ),
            (
                ImageError::io("cannot create", std::path::Path::new("/x"))(io()),
                DaemonError::io("cannot create", std::path::Path::new("/x"))(io()),
            ),
            (
                ImageError::Common(DaemonError::Internal("pool".into())),
                DaemonError::Internal("pool".into()),
            ),
            (
                ImageError::from(banger_api::RpcError::new(ErrorKind::Internal, "x")),
                DaemonError::from(banger_api::RpcError::new(ErrorKind::Internal, "x")),
            ),
        ];
        for (image, common) in cases {
            let (a, b) = (to_rpc(&DaemonError::from(image)), to_rpc(&common));
            assert_eq!((a.kind, a.message), (b.kind, b.message));
        }
    }
}
