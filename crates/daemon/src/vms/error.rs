//! `VmError`: the VM service's own failures, each with its kind; the
//! failures of the services it uses (images, host network) are
//! wrapped with theirs.

use banger_api::ErrorKind;

use crate::common::PrivCallError;
use crate::common::error::{DaemonError, privops_kind, store_kind, tool_kind};
use crate::host_network::NetworkError;
use crate::images::ImageError;

/// Why a VM operation failed.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// No VM has this name or id.
    #[error("no VM named {0:?}; see `banger vm list`")]
    NoSuchVm(String),
    /// The name is in use.
    #[error(
        "a VM named {0:?} already exists; choose another name or delete it with `banger vm delete {0}`"
    )]
    NameTaken(String),
    /// The VM was deleted before its creation went on.
    #[error("the VM was deleted")]
    Deleted,
    /// The VM was deleted while an operation on it ran.
    #[error("the VM was deleted meanwhile")]
    DeletedMeanwhile,
    /// Bad input (a size, a setting, ...); nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// The named operation or file does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The VM is in the wrong state, or a name is taken; nothing changed.
    #[error("{0}")]
    Conflict(String),
    /// Something that should not happen (a worker thread, serialisation).
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
    /// The VMM could not be started, configured or stopped.
    #[error("VM {vm}: {message}")]
    Vmm {
        /// VM name.
        vm: String,
        /// What failed, with the VMM's own words.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] banger_store::StoreError),
    /// A privileged operation failed or was refused.
    #[error(transparent)]
    PrivOps(#[from] banger_privops::PrivOpsError),
    /// A VM root disk could not be made or removed.
    #[error(transparent)]
    RootDisk(#[from] banger_dmsnap::RootDiskError),
    /// An image file check or copy failed.
    #[error(transparent)]
    Tool(#[from] banger_imagemgr::ImageMgrError),
    /// The image service failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The host network failed.
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// A `common` helper (the blocking pool, the operation tracker, ...) failed.
    #[error(transparent)]
    Common(#[from] DaemonError),
}

impl VmError {
    /// The RPC kind this error answers with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VmError::NoSuchVm(_)
            | VmError::Deleted
            | VmError::DeletedMeanwhile
            | VmError::NotFound(_) => ErrorKind::NotFound,
            VmError::NameTaken(_) | VmError::Conflict(_) => ErrorKind::Conflict,
            VmError::Invalid(_) => ErrorKind::InvalidArgument,
            VmError::Internal(_)
            | VmError::Io { .. }
            | VmError::Vmm { .. }
            | VmError::RootDisk(_) => ErrorKind::Internal,
            VmError::Store(e) => store_kind(e),
            VmError::PrivOps(e) => privops_kind(e),
            VmError::Tool(e) => tool_kind(e),
            VmError::Image(e) => e.kind(),
            VmError::Network(e) => e.kind(),
            VmError::Common(e) => e.kind(),
        }
    }
}

crate::service_error!(VmError; Image, Network, Common);

impl From<PrivCallError> for VmError {
    fn from(e: PrivCallError) -> Self {
        VmError::Common(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::error::to_rpc;

    #[test]
    fn converts_with_its_message_and_kind() {
        let cases = [
            (
                VmError::NoSuchVm("dev".into()),
                ErrorKind::NotFound,
                "no VM named \"dev\"; see `banger vm list`",
            ),
            (
                VmError::NameTaken("dev".into()),
                ErrorKind::Conflict,
                "a VM named \"dev\" already exists; choose another name or delete it with `banger vm delete dev`",
            ),
            (VmError::Deleted, ErrorKind::NotFound, "the VM was deleted"),
            (
                VmError::DeletedMeanwhile,
                ErrorKind::NotFound,
                "the VM was deleted meanwhile",
            ),
        ];
        for (e, kind, message) in cases {
            assert_eq!(e.kind(), kind);
            let rpc = to_rpc(&DaemonError::from(e));
            assert_eq!((rpc.kind, rpc.message.as_str()), (kind, message));
        }
    }

    #[test]
    fn wrapped_and_shared_failures_answer_as_the_common_error_did() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let cases = [
            (
                VmError::Image(ImageError::NoSuchImage("base".into())),
                DaemonError::from(ImageError::NoSuchImage("base".into())),
            ),
            (
                VmError::Network(NetworkError::Dns("no resolver".into())),
                DaemonError::from(NetworkError::Dns("no resolver".into())),
            ),
            (
                VmError::from(PrivCallError::Panicked("boom".into())),
                DaemonError::from(PrivCallError::Panicked("boom".into())),
            ),
            (
                VmError::Vmm {
                    vm: "dev".into(),
                    message: "socket gone".into(),
                },
                DaemonError::Vmm {
                    vm: "dev".into(),
                    message: "socket gone".into(),
                },
            ),
            (
                VmError::Internal("x".into()),
                DaemonError::Internal("x".into()),
            ),
            (
                VmError::io("cannot read", std::path::Path::new("/l"))(io()),
                DaemonError::io("cannot read", std::path::Path::new("/l"))(io()),
            ),
            (
                VmError::from(banger_api::RpcError::new(ErrorKind::Conflict, "taken")),
                DaemonError::from(banger_api::RpcError::new(ErrorKind::Conflict, "taken")),
            ),
        ];
        for (vm, common) in cases {
            assert_eq!(vm.kind(), common.kind());
            let (a, b) = (to_rpc(&DaemonError::from(vm)), to_rpc(&common));
            assert_eq!((a.kind, a.message), (b.kind, b.message));
        }
    }
}
