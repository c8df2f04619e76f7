//! Sending signals to a process by PID.
//!
//! A thin layer over `kill(2)` that refuses the PIDs with special meaning (`0` is the caller's
//! process group, and values above `i32::MAX` would turn negative and address a whole group)
//! and reports "no such process" as `Ok(false)` instead of an error, since a VMM that is
//! already gone is the normal outcome of racing its exit.
//!
//! These helpers do not check *which* process owns the PID: check it (pid and start time,
//! `banger_privops::is_same_process`) right before signalling a recorded PID.

use nix::errno::Errno;
pub use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Errors from sending a signal.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// The PID is 0 or does not fit a positive `pid_t`.
    #[error("refusing to signal invalid pid {pid}")]
    InvalidPid {
        /// The rejected PID.
        pid: u32,
    },
    /// `kill(2)` failed for another reason than "no such process" (typically `EPERM`).
    #[error("cannot send {signal} to process {pid}")]
    Send {
        /// The target process.
        pid: u32,
        /// The signal that was not sent.
        signal: Signal,
        /// The underlying error.
        #[source]
        source: Errno,
    },
}

/// Converts a PID to a `nix` [`Pid`], rejecting values with special meaning to `kill(2)`.
pub(crate) fn to_pid(pid: u32) -> Option<Pid> {
    match i32::try_from(pid) {
        Ok(raw) if raw > 0 => Some(Pid::from_raw(raw)),
        _ => None,
    }
}

/// Sends `signal` to `pid`. Returns `Ok(true)` when it was delivered and `Ok(false)` when the
/// process no longer exists (`ESRCH`). A zombie still accepts signals, so `Ok(true)` does not
/// prove the process is running.
pub fn send_signal(pid: u32, signal: Signal) -> Result<bool, SignalError> {
    let target = to_pid(pid).ok_or(SignalError::InvalidPid { pid })?;
    match kill(target, signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(source) => Err(SignalError::Send {
            pid,
            signal,
            source,
        }),
    }
}

/// Sends `SIGKILL` to `pid`; see [`send_signal`] for the result.
pub fn kill_now(pid: u32) -> Result<bool, SignalError> {
    send_signal(pid, Signal::SIGKILL)
}

/// Sends `SIGTERM` to `pid`; see [`send_signal`] for the result. Firecracker does not handle
/// `SIGTERM`: it dies at once (exit status 143) without a guest shutdown, like `SIGKILL` but
/// catchable by a wrapper such as the jailer.
pub fn terminate(pid: u32) -> Result<bool, SignalError> {
    send_signal(pid, Signal::SIGTERM)
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    #[test]
    fn special_pids_are_refused() {
        for pid in [0, u32::MAX, i32::MAX as u32 + 1] {
            assert!(matches!(
                send_signal(pid, Signal::SIGTERM),
                Err(SignalError::InvalidPid { .. })
            ));
        }
    }

    #[test]
    fn signals_a_child_then_reports_it_gone() {
        let mut child = Command::new("sleep").arg("30").spawn().expect("spawn");
        let pid = child.id();
        assert!(terminate(pid).expect("terminate"));
        let status = child.wait().expect("reap");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGTERM)
        );
        // Reaped: the PID is free now. SIGCONT keeps this harmless should it have been reused.
        assert!(!send_signal(pid, Signal::SIGCONT).expect("signal gone"));
    }
}
