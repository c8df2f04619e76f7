//! `ImageError`: the image service's own failures, each with its kind.

use banger_api::ErrorKind;

use crate::common::error::DaemonError;
use crate::images::seed::SeedError;

/// Why an image operation failed (besides the store, the image tools and
/// I/O, which come as `DaemonError` directly).
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
}

impl ImageError {
    /// The RPC kind this error answers with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NameTaken(_) => ErrorKind::Conflict,
            ImageError::NoSuchImage(_) | ImageError::Gone(_) => ErrorKind::NotFound,
            ImageError::NotAbsolute { .. } | ImageError::NoFile { .. } | ImageError::Seed(_) => {
                ErrorKind::InvalidArgument
            }
        }
    }
}

impl From<ImageError> for DaemonError {
    fn from(e: ImageError) -> Self {
        DaemonError::of_kind(e.kind(), &e)
    }
}

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
}
