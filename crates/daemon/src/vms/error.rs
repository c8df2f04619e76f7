//! `VmError`: the VM service's own failures, each with its kind; the
//! failures of the services it uses (images, host network) are wrapped
//! with theirs, and the failures every service shares come from
//! [`service_error!`](crate::service_error).

use banger_api::ErrorKind;

use crate::common::PrivCallError;
use crate::common::error::DaemonError;
use crate::host_network::NetworkError;
use crate::images::ImageError;

crate::service_error! {
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
        /// The VMM could not be started, configured or stopped.
        #[error("VM {vm}: {message}")]
        Vmm {
            /// VM name.
            vm: String,
            /// What failed, with the VMM's own words.
            message: String,
        },
        /// A VM root disk could not be made or removed.
        #[error(transparent)]
        RootDisk(#[from] banger_dmsnap::RootDiskError),
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
    through Image, Network, Common;
}

impl VmError {
    /// The kind of a VM service's own failure (the shared ones are
    /// answered by `kind()` before this is asked).
    fn own_kind(&self) -> ErrorKind {
        match self {
            VmError::NoSuchVm(_) | VmError::Deleted | VmError::DeletedMeanwhile => {
                ErrorKind::NotFound
            }
            VmError::NameTaken(_) => ErrorKind::Conflict,
            VmError::Image(e) => e.kind(),
            VmError::Network(e) => e.kind(),
            VmError::Common(e) => e.kind(),
            // `Vmm`, `RootDisk` (the shared variants never get here).
            _ => ErrorKind::Internal,
        }
    }
}

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
