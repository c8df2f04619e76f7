//! The graceful half of stopping a Firecracker VMM.
//!
//! [`graceful_shutdown`] runs these steps and reports where they ended:
//!
//! 1. Open an [`ExitWatcher`] on the PID first, so the exit cannot be missed and the PID is
//!    pinned (pidfd) while we wait. A process that is already gone gives
//!    [`StopOutcome::AlreadyGone`].
//! 2. Send `SendCtrlAltDel` through the API. Firecracker exits when the guest resets the CPU
//!    after a clean shutdown (guest `reboot=k`).
//! 3. Wait for the exit until `timeout` (counted from step 1, the API call included) is up.
//!
//! It never sends a signal. When the outcome is [`StopOutcome::TimedOut`], or the call fails
//! with [`StopError::Request`] (e.g. the VM was never started, so Firecracker refuses the
//! action, or the guest has no i8042 driver and ignores it), **the caller escalates**:
//! re-check the PID's identity (pid and start time), send `SIGKILL`
//! through its privileged path, then wait again (e.g. [`wait_exit_timeout`](crate::wait_exit_timeout))
//! and reap the child if it is one.

use std::time::Duration;

use tokio::time::Instant;

use crate::client::{FcClientError, FirecrackerClient};
use crate::exit::{ExitError, ExitWatcher};

/// How a graceful shutdown attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The process exited after the shutdown request.
    Exited,
    /// The process is still running when the timeout is up: escalate to `SIGKILL`.
    TimedOut,
    /// The process was gone before anything was sent.
    AlreadyGone,
}

impl StopOutcome {
    /// Whether the caller must still kill the process.
    pub fn needs_kill(self) -> bool {
        matches!(self, Self::TimedOut)
    }
}

/// Errors from a graceful shutdown attempt.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The process could not be watched.
    #[error("cannot watch process {pid} for its exit")]
    Watch {
        /// The VMM process.
        pid: u32,
        /// The underlying error.
        #[source]
        source: ExitError,
    },
    /// The shutdown request failed and the process is still running: escalate to `SIGKILL`.
    #[error("cannot ask process {pid} to shut down")]
    Request {
        /// The VMM process.
        pid: u32,
        /// The underlying error.
        #[source]
        source: FcClientError,
    },
}

/// Asks the VMM `pid` behind `client` to shut its guest down and waits up to `timeout` for
/// the process to exit. See the module docs for the sequence and for escalation.
pub async fn graceful_shutdown(
    client: &FirecrackerClient,
    pid: u32,
    timeout: Duration,
) -> Result<StopOutcome, StopError> {
    let watch_error = |source| StopError::Watch { pid, source };
    // Clamped: a caller-given timeout must not overflow the clock.
    let deadline = Instant::now() + timeout.min(crate::MAX_WAIT);
    let watcher = ExitWatcher::new(pid).map_err(watch_error)?;
    if watcher.has_exited().map_err(watch_error)? {
        return Ok(StopOutcome::AlreadyGone);
    }

    match tokio::time::timeout_at(deadline, client.send_ctrl_alt_del()).await {
        Ok(Ok(())) => {}
        Ok(Err(source)) => {
            // The VMM may have exited under the call (socket gone, connection reset).
            if watcher.has_exited().map_err(watch_error)? {
                return Ok(StopOutcome::Exited);
            }
            return Err(StopError::Request { pid, source });
        }
        Err(_elapsed) => return still_running_or_exited(&watcher),
    }

    match tokio::time::timeout_at(deadline, watcher.wait()).await {
        Ok(result) => result.map(|()| StopOutcome::Exited).map_err(watch_error),
        Err(_elapsed) => still_running_or_exited(&watcher),
    }
}

fn still_running_or_exited(watcher: &ExitWatcher) -> Result<StopOutcome, StopError> {
    let pid = watcher.pid();
    match watcher.has_exited() {
        Ok(true) => Ok(StopOutcome::Exited),
        Ok(false) => Ok(StopOutcome::TimedOut),
        Err(source) => Err(StopError::Watch { pid, source }),
    }
}

#[cfg(test)]
#[path = "stop_tests.rs"]
mod tests;
