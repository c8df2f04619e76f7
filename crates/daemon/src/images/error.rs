//! `ImageError`: the image service's own failures (images, `build/` and
//! `kernels/`), each with its kind; the failures every service shares come
//! from [`service_error!`](crate::service_error).

use banger_api::ErrorKind;

use crate::common::error::DaemonError;
use crate::images::seed::SeedError;

crate::service_error! {
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
        /// No connection to the registry: the cause first (e.g. connection
        /// refused), then what was tried. A failure (exit 1), not a bad
        /// argument.
        #[error(
            "{cause}: cannot reach registry {registry} to fetch the manifest of {reference}; check that the registry is up and reachable from this host (address, network, proxy, firewall)"
        )]
        RegistryUnreachable {
            /// The innermost cause.
            cause: String,
            /// `host[:port]` as resolved.
            registry: String,
            /// The whole image reference.
            reference: String,
        },
        /// The owner's registry credentials cannot be used (a config file,
        /// a credential helper, an identity token): a failure (exit 1)
        /// naming the file or helper and the fix, not a bad argument.
        #[error(transparent)]
        Credentials(#[from] crate::images::registry_auth::RegistryAuthError),
        /// Seeding failed.
        #[error(transparent)]
        Seed(#[from] SeedError),
        /// A `common` helper (the blocking pool, ...) failed.
        #[error(transparent)]
        Common(#[from] DaemonError),
    }
    through Common;
}

impl ImageError {
    /// The kind of an image service's own failure (the shared ones are
    /// answered by `kind()` before this is asked).
    fn own_kind(&self) -> ErrorKind {
        match self {
            ImageError::NameTaken(_) => ErrorKind::Conflict,
            ImageError::RegistryUnreachable { .. } | ImageError::Credentials(_) => {
                ErrorKind::Internal
            }
            ImageError::NoSuchImage(_) | ImageError::Gone(_) => ErrorKind::NotFound,
            ImageError::NotAbsolute { .. } | ImageError::NoFile { .. } | ImageError::Seed(_) => {
                ErrorKind::InvalidArgument
            }
            ImageError::Common(e) => e.kind(),
            // The shared variants never get here.
            _ => ErrorKind::Internal,
        }
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
                ImageError::RegistryUnreachable {
                    cause: "Connection refused (os error 111)".into(),
                    registry: "127.0.0.1:1".into(),
                    reference: "127.0.0.1:1/x:1".into(),
                },
                ErrorKind::Internal,
            ),
            (
                ImageError::Credentials(
                    crate::images::registry_auth::RegistryAuthError::IdentityToken {
                        registry: "id.example".into(),
                        path: "/h/.docker/config.json".into(),
                    },
                ),
                ErrorKind::Internal,
            ),
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

    #[test]
    fn wrapped_library_failures_keep_their_words_and_kind() {
        let io = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let store = || banger_store::StoreError::CreateDir {
            path: "/var/lib/banger".into(),
            source: io(),
        };
        let tool = || banger_imagemgr::ImageMgrError::Io {
            path: "/r.ext4".into(),
            source: io(),
        };
        let wrong = || banger_imagemgr::ImageMgrError::WrongKind {
            path: "/k".into(),
            expected: "an ELF kernel",
            found: "text".into(),
        };
        let refused = || banger_privops::PrivOpsError::Refused {
            op: "mount",
            reason: "outside the state dir".into(),
        };
        let cases = [
            (ImageError::Store(store()), DaemonError::Store(store())),
            (ImageError::Tool(tool()), DaemonError::Image(tool())),
            (ImageError::Tool(wrong()), DaemonError::Image(wrong())),
            (
                ImageError::PrivOps(refused()),
                DaemonError::PrivOps(refused()),
            ),
        ];
        for (image, common) in cases {
            assert_eq!(image.kind(), common.kind());
            let (a, b) = (to_rpc(&DaemonError::from(image)), to_rpc(&common));
            assert_eq!((a.kind, a.message), (b.kind, b.message));
        }
        assert!(
            to_rpc(&DaemonError::from(ImageError::Store(store())))
                .message
                .contains("permission denied")
        );
    }
}
