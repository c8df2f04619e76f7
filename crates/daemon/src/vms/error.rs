//! `VmError`: the VM service's own failures, each with its kind.

use banger_api::ErrorKind;

use crate::common::error::DaemonError;

/// Why a VM operation failed (besides the other services, the store and
/// the host, which come as `DaemonError` directly).
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
}

impl VmError {
    /// The RPC kind this error answers with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VmError::NoSuchVm(_) | VmError::Deleted | VmError::DeletedMeanwhile => {
                ErrorKind::NotFound
            }
            VmError::NameTaken(_) => ErrorKind::Conflict,
        }
    }
}

impl From<VmError> for DaemonError {
    fn from(e: VmError) -> Self {
        DaemonError::of_kind(e.kind(), &e)
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
}
