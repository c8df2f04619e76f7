//! Why the simulator process ends unsuccessfully.
//!
//! Each variant's `Display` is Firecracker's log text for the failure and
//! [`SimError::firecracker_debug`] its `Error: RunWithApi(...)` stderr line,
//! so a daemon sees the same output from the simulator as from Firecracker.

use std::io;
use std::path::PathBuf;

use banger_fcapi::InstanceIdError;
use thiserror::Error;

/// A fatal simulator error.
#[derive(Debug, Error)]
pub enum SimError {
    /// `--id` is malformed; Firecracker panics (SIGABRT) on this.
    #[error("Invalid instance ID: {0:?}")]
    InvalidInstanceId(InstanceIdError),
    /// The API socket path already exists.
    #[error("Failed to open the API socket at: {}. Check that it is not already used.", .0.display())]
    SocketInUse(PathBuf),
    /// Binding the API socket failed (e.g. its directory is missing).
    #[error("Failed to bind and run the HTTP server: IO error: {source}")]
    BindSocket {
        /// The socket path.
        path: PathBuf,
        /// The bind error.
        source: io::Error,
    },
    /// A startup log or metrics file could not be opened.
    #[error("Failed to open {}: {source}", path.display())]
    OpenFile {
        /// The file.
        path: PathBuf,
        /// The open error.
        source: io::Error,
    },
    /// A command-line value Firecracker would refuse.
    #[error("Arguments parsing error: {0}")]
    InvalidArgument(String),
    /// The async runtime could not be created.
    #[error("Failed to create the async runtime: {0}")]
    Runtime(#[source] io::Error),
    /// A flag the simulator does not implement.
    #[error("{0} is not supported by the Firecracker simulator")]
    Unsupported(&'static str),
    /// The simulated guest crashed (`--sim-crash-after-start-ms`).
    #[error("Failed to run the microVM: the vCPU exited with an error")]
    GuestCrashed,
    /// A failed `PUT /snapshot/load` (fatal in Firecracker).
    #[error("Failed to load the microVM from the snapshot")]
    SnapshotLoad,
    /// QEMU (the QEMU front's guest) ended abnormally.
    #[error("Failed to run the microVM: {0}")]
    QemuFailed(String),
}

impl SimError {
    /// The exit status Firecracker ends with for this error (134 means SIGABRT).
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::InvalidInstanceId(_) => 134,
            Self::InvalidArgument(_) => crate::args::ARGS_EXIT_CODE,
            _ => 1,
        }
    }

    /// Whether Firecracker dies by panicking (abort) rather than exiting.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::InvalidInstanceId(_))
    }

    /// The `Debug` form Firecracker prints on stderr as `Error: <this>`.
    pub fn firecracker_debug(&self) -> String {
        match self {
            Self::InvalidInstanceId(e) => format!("InvalidInstanceId({e:?})"),
            Self::SocketInUse(path) => format!(
                "RunWithApi(FailedToBindSocket({:?}))",
                path.display().to_string()
            ),
            Self::BindSocket { source, .. } => {
                format!("RunWithApi(FailedToBindAndRunHttpServer(IOError({source:?})))")
            }
            Self::OpenFile { path, source } => {
                format!("OpenFile({:?}, {source:?})", path.display().to_string())
            }
            Self::InvalidArgument(text) => format!("ArgParse({text:?})"),
            Self::Runtime(source) => format!("Runtime({source:?})"),
            Self::Unsupported(what) => format!("Unsupported({what:?})"),
            Self::GuestCrashed => "RunWithApi(MicroVMStoppedWithError(GenericError))".into(),
            Self::SnapshotLoad => "RunWithApi(BuildFromApi(Restore))".into(),
            Self::QemuFailed(detail) => format!("RunWithApi(MicroVMStoppedWithError({detail:?}))"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_errors_print_like_firecracker() {
        let e = SimError::SocketInUse("/tmp/x.sock".into());
        assert_eq!(
            e.firecracker_debug(),
            "RunWithApi(FailedToBindSocket(\"/tmp/x.sock\"))"
        );
        let e = SimError::BindSocket {
            path: "/nodir/a.sock".into(),
            source: io::Error::from_raw_os_error(2),
        };
        assert_eq!(
            e.firecracker_debug(),
            "RunWithApi(FailedToBindAndRunHttpServer(IOError(Os { code: 2, kind: NotFound, message: \"No such file or directory\" })))"
        );
        assert_eq!(
            e.to_string(),
            "Failed to bind and run the HTTP server: IO error: No such file or directory (os error 2)"
        );
    }
}
