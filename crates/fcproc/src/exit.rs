//! Waiting for a process to exit, whether or not it is our child.
//!
//! [`ExitWatcher`] opens a pidfd (`pidfd_open(2)`, Linux 5.3+) for the PID and registers it
//! with tokio: the fd becomes readable when the process exits (turns into a zombie or is
//! reaped). The pidfd pins the process identity, so a watcher opened *before* a PID could be
//! reused keeps watching the right process. Where `pidfd_open` is unavailable (`ENOSYS`, or
//! `EPERM` under some seccomp sandboxes) the watcher falls back to polling
//! [`ProcFs::is_alive`] every 100 ms.
//!
//! Watching does not reap: a child of the caller stays a zombie until the caller waits for it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::process::{ProcError, ProcFs};
use crate::signal::to_pid;

/// How often the fallback checks `/proc` when no pidfd is available.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Errors from watching a process.
#[derive(Debug, thiserror::Error)]
pub enum ExitError {
    /// The PID is 0 or does not fit a positive `pid_t`.
    #[error("cannot watch invalid pid {pid}")]
    InvalidPid {
        /// The rejected PID.
        pid: u32,
    },
    /// `pidfd_open` failed for a reason other than "gone" or "unsupported".
    #[error("cannot open a pidfd for process {pid}")]
    PidFd {
        /// The watched process.
        pid: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Waiting on the pidfd failed.
    #[error("cannot wait for process {pid} to exit")]
    Wait {
        /// The watched process.
        pid: u32,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The polling fallback could not read `/proc`.
    #[error("cannot inspect process {pid}")]
    Inspect {
        /// The watched process.
        pid: u32,
        /// The underlying error.
        #[source]
        source: ProcError,
    },
}

enum Watch {
    PidFd(AsyncFd<OwnedFd>),
    Poll(ProcFs),
    /// `pidfd_open` said `ESRCH`: the process was already fully gone.
    Gone,
}

/// Waits for one process to exit. Create it *before* acting on the process (sending a
/// shutdown request, a signal) so the exit cannot be missed and the PID cannot be recycled
/// under it. Must be created inside a tokio runtime.
pub struct ExitWatcher {
    pid: u32,
    watch: Watch,
}

impl std::fmt::Debug for ExitWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.watch {
            Watch::PidFd(_) => "pidfd",
            Watch::Poll(_) => "poll",
            Watch::Gone => "gone",
        };
        f.debug_struct("ExitWatcher")
            .field("pid", &self.pid)
            .field("mode", &mode)
            .finish()
    }
}

impl ExitWatcher {
    /// Starts watching `pid` with a pidfd, falling back to polling the host `/proc`.
    pub fn new(pid: u32) -> Result<Self, ExitError> {
        let raw = to_pid(pid).ok_or(ExitError::InvalidPid { pid })?.as_raw();
        let watch = match pidfd_open(raw) {
            Ok(fd) => match register(fd) {
                Ok(fd) => Watch::PidFd(fd),
                Err(err) => {
                    tracing::debug!(pid, %err, "cannot register pidfd, polling /proc instead");
                    Watch::Poll(ProcFs::host())
                }
            },
            Err(err) => match err.raw_os_error() {
                Some(libc::ESRCH) => Watch::Gone,
                Some(libc::ENOSYS | libc::EPERM) => {
                    tracing::debug!(pid, %err, "pidfd_open unavailable, polling /proc instead");
                    Watch::Poll(ProcFs::host())
                }
                Some(libc::EINVAL) => return Err(ExitError::InvalidPid { pid }),
                _ => return Err(ExitError::PidFd { pid, source: err }),
            },
        };
        Ok(Self { pid, watch })
    }

    /// Watches `pid` by polling `procfs` every [`POLL_INTERVAL`], without a pidfd. This is
    /// the fallback [`ExitWatcher::new`] uses; it is public for tests with a fake `/proc` and
    /// for hosts that forbid pidfds. It cannot tell a recycled PID from the original.
    pub fn polling(pid: u32, procfs: ProcFs) -> Self {
        Self {
            pid,
            watch: Watch::Poll(procfs),
        }
    }

    /// The watched PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the watcher holds a pidfd (as opposed to polling `/proc`).
    pub fn uses_pidfd(&self) -> bool {
        matches!(self.watch, Watch::PidFd(_))
    }

    /// Checks without waiting whether the process has exited.
    pub fn has_exited(&self) -> Result<bool, ExitError> {
        match &self.watch {
            Watch::PidFd(fd) => poll_readable_now(fd.get_ref()).map_err(|source| ExitError::Wait {
                pid: self.pid,
                source,
            }),
            Watch::Poll(procfs) => self.exited_by_proc(procfs),
            Watch::Gone => Ok(true),
        }
    }

    /// Waits until the process has exited. Returns at once if it already has.
    pub async fn wait(&self) -> Result<(), ExitError> {
        match &self.watch {
            Watch::PidFd(fd) => {
                // Readiness is never cleared, so waiting again returns at once.
                let _ready = fd.readable().await.map_err(|source| ExitError::Wait {
                    pid: self.pid,
                    source,
                })?;
                Ok(())
            }
            Watch::Poll(procfs) => {
                while !self.exited_by_proc(procfs)? {
                    tokio::time::sleep(POLL_INTERVAL).await;
                }
                Ok(())
            }
            Watch::Gone => Ok(()),
        }
    }

    /// Waits at most `timeout` for the process to exit: `Ok(true)` if it did, `Ok(false)` if
    /// it is still running when the time is up.
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<bool, ExitError> {
        match tokio::time::timeout(timeout, self.wait()).await {
            Ok(result) => result.map(|()| true),
            Err(_elapsed) => Ok(false),
        }
    }

    fn exited_by_proc(&self, procfs: &ProcFs) -> Result<bool, ExitError> {
        procfs
            .is_alive(self.pid)
            .map(|alive| !alive)
            .map_err(|source| ExitError::Inspect {
                pid: self.pid,
                source,
            })
    }
}

/// Waits until `pid` has exited (see [`ExitWatcher`]).
pub async fn wait_exit(pid: u32) -> Result<(), ExitError> {
    ExitWatcher::new(pid)?.wait().await
}

/// Waits at most `timeout` for `pid` to exit: `Ok(true)` if it did (see [`ExitWatcher`]).
pub async fn wait_exit_timeout(pid: u32, timeout: Duration) -> Result<bool, ExitError> {
    ExitWatcher::new(pid)?.wait_timeout(timeout).await
}

fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and a flags word and returns a new fd or -1; it touches
    // no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd to us (O_CLOEXEC is implied) and nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` keeps its descriptor open, and `as_raw_fd` returns that same
    // descriptor, for as long as the `AsyncFd` owns it.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(|err| err.into_parts().1)
}

/// A zero-timeout `poll(2)`: tokio's readiness lags behind the kernel until its reactor
/// runs, so a "right now" answer asks the kernel directly.
fn poll_readable_now(fd: &OwnedFd) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid pollfd for the duration of the call and nfds is 1.
    let ret = unsafe { libc::poll(&mut pfd, 1, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret > 0 && pfd.revents & (libc::POLLIN | libc::POLLHUP) != 0)
}

#[cfg(test)]
#[path = "exit_tests.rs"]
mod tests;
