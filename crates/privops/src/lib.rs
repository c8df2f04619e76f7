//! The privileged-operations seam.
//!
//! Everything the owner daemon does that needs privilege on the supported
//! host path goes through [`PrivilegedOps::execute`] with one [`PrivOp`]:
//! a closed set of typed operations, each answered by a [`PrivReply`].
//! Two implementations exist: [`LocalPrivOps`], the in-process adapter
//! used on the dev path, and [`RootHelperClient`], the RPC client of
//! `bangerd-root` on the system path (protocol in [`wire`]). Both validate the same preconditions, written on each
//! variant, so a caller cannot tell them apart.
//!
//! The trait is synchronous: every operation is a short syscall sequence.
//! Async callers run it directly when it is quick (spawn, signal) and on a
//! blocking thread otherwise.
#![warn(missing_docs)]

mod client;
mod local;
mod op;
mod policy;
mod proc;
pub mod wire;

pub use client::{DEFAULT_HELPER_SOCKET, RootHelperClient};
pub use local::LocalPrivOps;
pub use op::{PrivOp, PrivReply, SpawnVmm, VmmSignal};
pub use policy::{MAX_IFNAME, Policy};
pub use proc::vmm_matches;

use std::path::PathBuf;

/// Why a privileged operation failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrivOpsError {
    /// A field broke the operation's preconditions; nothing was done.
    #[error("refused {op}: {reason}")]
    Refused {
        /// Operation name.
        op: &'static str,
        /// Which rule it broke.
        reason: String,
    },
    /// Starting the VMM binary failed.
    #[error("cannot start VMM binary {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file the operation needed could not be prepared.
    #[error("cannot prepare {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be delivered.
    #[error("cannot signal process {pid}")]
    Signal {
        /// Target.
        pid: u32,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The helper socket could not be reached.
    #[error(
        "cannot reach bangerd-root at {socket}; is it running? (`banger system status`, or start bangerd-root)"
    )]
    HelperUnavailable {
        /// The socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The helper answered with an error other than a refusal, or broke the protocol.
    #[error("{op} through bangerd-root failed: {message}")]
    Helper {
        /// Operation name.
        op: &'static str,
        /// The helper's reason.
        message: String,
    },
}

/// The seam. See the crate docs.
pub trait PrivilegedOps: Send + Sync {
    /// Perform `op`, or refuse it without side effects.
    fn execute(&self, op: PrivOp) -> Result<PrivReply, PrivOpsError>;

    /// Spawn a VMM; returns its PID.
    fn spawn_vmm(&self, spec: SpawnVmm) -> Result<u32, PrivOpsError> {
        match self.execute(PrivOp::SpawnVmm(spec))? {
            PrivReply::Spawned { pid } => Ok(pid),
            other => Err(unexpected("spawn_vmm", &other)),
        }
    }

    /// Signal a VMM; `Ok(false)` when it was already gone.
    fn signal_vmm(
        &self,
        pid: u32,
        api_sock: PathBuf,
        signal: VmmSignal,
    ) -> Result<bool, PrivOpsError> {
        match self.execute(PrivOp::SignalVmm {
            pid,
            api_sock,
            signal,
        })? {
            PrivReply::Signalled { delivered } => Ok(delivered),
            other => Err(unexpected("signal_vmm", &other)),
        }
    }
}

fn unexpected(op: &'static str, reply: &PrivReply) -> PrivOpsError {
    PrivOpsError::Refused {
        op,
        reason: format!("unexpected reply {reply:?}"),
    }
}
