//! The Firecracker API socket file: waiting for it after spawn, removing a stale one before.
//!
//! Firecracker refuses to start when its `--api-sock` path exists ("Failed to open the API
//! socket"), and leaves the file behind when it exits, so the daemon calls
//! [`remove_stale_socket`] before every spawn. After spawning, [`wait_for_socket`] polls
//! until the socket accepts a connection (real Firecracker binds within a few ms), giving up
//! early if the process dies first.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::exit::{ExitError, ExitWatcher};

/// First pause between connection attempts; it doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(1);
/// Longest pause between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// Errors about the API socket file.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The process exited before its socket accepted a connection.
    #[error("process {pid} exited before {} accepted connections", path.display())]
    ProcessExited {
        /// The socket that was awaited.
        path: PathBuf,
        /// The process that exited.
        pid: u32,
    },
    /// The socket did not accept a connection in time.
    #[error("{} did not accept connections within {timeout:?}", path.display())]
    Timeout {
        /// The socket that was awaited.
        path: PathBuf,
        /// How long was waited.
        timeout: Duration,
        /// The last connection error, if any attempt was made.
        #[source]
        last_error: Option<io::Error>,
    },
    /// The process could not be watched while waiting.
    #[error("cannot watch process {pid} while waiting for {}", path.display())]
    Watch {
        /// The socket that was awaited.
        path: PathBuf,
        /// The process to watch.
        pid: u32,
        /// The underlying error.
        #[source]
        source: ExitError,
    },
    /// Something other than a socket is at the path; it is left alone.
    #[error("{} exists and is not a socket", path.display())]
    NotASocket {
        /// The offending path.
        path: PathBuf,
    },
    /// A live process still accepts connections on the socket; it is left alone.
    #[error("{} is in use by a running process", path.display())]
    InUse {
        /// The socket in use.
        path: PathBuf,
    },
    /// The socket path could not be inspected or removed.
    #[error("cannot remove {}", path.display())]
    Remove {
        /// The socket that was not removed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Waits until the Unix socket at `path` accepts a connection, for at most `timeout`.
///
/// Fails early with [`SocketError::ProcessExited`] if process `pid` (the Firecracker that
/// should create the socket) exits meanwhile; its exit status is for its parent to reap.
/// Attempts start 1 ms apart and back off to 50 ms. The probe connection is closed at once.
pub async fn wait_for_socket(path: &Path, timeout: Duration, pid: u32) -> Result<(), SocketError> {
    let watcher = ExitWatcher::new(pid).map_err(|source| SocketError::Watch {
        path: path.to_owned(),
        pid,
        source,
    })?;
    // Clamped: a caller-given timeout must not overflow the clock.
    let deadline = Instant::now() + timeout.min(crate::MAX_WAIT);
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let last_error = match UnixStream::connect(path).await {
            Ok(_probe) => return Ok(()),
            Err(err) => err,
        };
        let exited = watcher.has_exited().map_err(|source| SocketError::Watch {
            path: path.to_owned(),
            pid,
            source,
        })?;
        if exited {
            return Err(SocketError::ProcessExited {
                path: path.to_owned(),
                pid,
            });
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(SocketError::Timeout {
                path: path.to_owned(),
                timeout,
                last_error: Some(last_error),
            });
        }
        let nap = backoff.min(deadline - now);
        tokio::select! {
            // An exit during the nap is caught by `has_exited` right after the next attempt.
            _ = watcher.wait() => {}
            () = tokio::time::sleep(nap) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Removes a socket file left behind by a Firecracker that is gone.
///
/// Returns `Ok(true)` if a file was removed and `Ok(false)` if there was none. Refuses to
/// remove anything that is not a socket ([`SocketError::NotASocket`]) or a socket that still
/// accepts connections ([`SocketError::InUse`]): that VMM is alive and must be stopped first.
pub async fn remove_stale_socket(path: &Path) -> Result<bool, SocketError> {
    let remove_error = |source| SocketError::Remove {
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(err) => return Err(remove_error(err)),
    };
    if !meta.file_type().is_socket() {
        return Err(SocketError::NotASocket {
            path: path.to_owned(),
        });
    }
    if UnixStream::connect(path).await.is_ok() {
        return Err(SocketError::InUse {
            path: path.to_owned(),
        });
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(remove_error(err)),
    }
}

#[cfg(test)]
#[path = "socket_tests.rs"]
mod tests;
