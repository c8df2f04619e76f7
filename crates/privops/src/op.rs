//! The closed set of privileged operations and their replies.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Policy, PrivOpsError};

/// Start a VMM process (Firecracker or anything speaking its API).
///
/// Preconditions: `binary` is an existing file; `api_sock`'s directory
/// exists and `api_sock` itself does not (Firecracker refuses to start on a
/// leftover socket); `id` is 1–64 characters of ASCII alphanumerics and `-`
/// (Firecracker's `--id` rule); the output files' directories exist.
///
/// Effects: the process runs in its own process group (so terminal signals
/// aimed at the daemon do not reach it, and it outlives a daemon crash) with
/// stdin from `/dev/null`, stdout (the guest serial console) appended to
/// `console_log`, stderr appended to `stderr_log`. When it exits, a line
/// describing its exit status is written to `exit_status_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnVmm {
    /// The VMM binary.
    pub binary: PathBuf,
    /// `--api-sock`.
    pub api_sock: PathBuf,
    /// `--id`.
    pub id: String,
    /// Receives the VMM's stdout (serial console).
    pub console_log: PathBuf,
    /// Receives the VMM's stderr.
    pub stderr_log: PathBuf,
    /// Written with the exit status once the process ends.
    pub exit_status_file: PathBuf,
}

/// Signals the daemon may send to a VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmmSignal {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

/// A privileged operation. One `match` in each implementation handles them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrivOp {
    /// See [`SpawnVmm`].
    SpawnVmm(SpawnVmm),
    /// Signal a VMM.
    ///
    /// Preconditions: `pid` is alive and its command line carries
    /// `--api-sock <api_sock>`, so a recycled PID is never signalled. A PID
    /// that is gone (or a zombie) is not an error: the reply says
    /// `delivered: false`.
    SignalVmm {
        /// Target process.
        pid: u32,
        /// The socket it was started with.
        api_sock: PathBuf,
        /// Which signal.
        signal: VmmSignal,
    },
}

impl PrivOp {
    /// Check every field against `policy`; on success return the operation
    /// with its paths resolved (symlinks followed), which is what must be
    /// performed. Nothing is touched on failure.
    pub fn validate(self, policy: &Policy) -> Result<PrivOp, PrivOpsError> {
        let op = self.name();
        match self {
            PrivOp::SpawnVmm(s) => {
                let id_ok = !s.id.is_empty()
                    && s.id.len() <= 64
                    && s.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !id_ok {
                    return Err(PrivOpsError::Refused {
                        op,
                        reason: format!("invalid VMM id {:?}: 1-64 letters, digits or '-'", s.id),
                    });
                }
                if s.binary != policy.vmm_binary {
                    return Err(PrivOpsError::Refused {
                        op,
                        reason: format!(
                            "{} is not the configured VMM binary {}",
                            s.binary.display(),
                            policy.vmm_binary.display()
                        ),
                    });
                }
                Ok(PrivOp::SpawnVmm(SpawnVmm {
                    binary: s.binary,
                    api_sock: policy.check_path(op, &s.api_sock)?,
                    id: s.id,
                    console_log: policy.check_path(op, &s.console_log)?,
                    stderr_log: policy.check_path(op, &s.stderr_log)?,
                    exit_status_file: policy.check_path(op, &s.exit_status_file)?,
                }))
            }
            PrivOp::SignalVmm {
                pid,
                api_sock,
                signal,
            } => {
                if pid <= 1 || pid > i32::MAX as u32 {
                    return Err(PrivOpsError::Refused {
                        op,
                        reason: format!("invalid pid {pid}"),
                    });
                }
                Ok(PrivOp::SignalVmm {
                    pid,
                    api_sock: policy.check_path(op, &api_sock)?,
                    signal,
                })
            }
        }
    }

    /// Short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            PrivOp::SpawnVmm(_) => "spawn_vmm",
            PrivOp::SignalVmm { .. } => "signal_vmm",
        }
    }
}

/// The typed answer to a [`PrivOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrivReply {
    /// [`PrivOp::SpawnVmm`] succeeded.
    Spawned {
        /// PID of the new VMM.
        pid: u32,
    },
    /// [`PrivOp::SignalVmm`] finished.
    Signalled {
        /// False when the process was already gone.
        delivered: bool,
    },
}
