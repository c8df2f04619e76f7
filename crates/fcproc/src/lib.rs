//! Firecracker process primitives and the Firecracker API client.
//!
//! This leaf crate gives the daemon what it needs to drive one `firecracker` process:
//!
//! - [`FirecrackerClient`]: HTTP/1.1 over the API Unix socket, generic `put`/`patch`/`get`
//!   plus typed helpers per resource (`put_machine_config`, `instance_start`, ...).
//! - [`wait_for_socket`] and [`remove_stale_socket`]: the socket file around spawn.
//! - [`ProcFs`]: liveness (zombies count as dead) and resource usage, read from an
//!   injectable `/proc` root.
//! - [`ExitWatcher`]: wait for any process to exit through a pidfd.
//! - [`send_signal`]: `kill(2)` with "already gone" as `Ok(false)`.
//! - [`graceful_shutdown`]: Ctrl-Alt-Del, then wait; the caller escalates to `SIGKILL`.
//!
//! Spawning the process and sending privileged signals belong to the daemon; this crate
//! only inspects, waits and talks to the API.

#![warn(missing_docs)]

mod client;
mod exit;
mod process;
mod resources;
mod signal;
mod socket;
mod stop;
#[cfg(test)]
mod test_support;

pub use client::{DEFAULT_TIMEOUT, FcClientError, FirecrackerClient};
pub use exit::{ExitError, ExitWatcher, POLL_INTERVAL, wait_exit, wait_exit_timeout};
/// The HTTP method named in [`FcClientError`] variants.
pub use hyper::Method;
pub use process::{ProcError, ProcFs, ProcTree, ProcessStats, clock_ticks_per_sec, page_size};
pub use signal::{Signal, SignalError, kill_now, send_signal, terminate};
pub use socket::{INITIAL_BACKOFF, MAX_BACKOFF, SocketError, remove_stale_socket, wait_for_socket};
pub use stop::{StopError, StopOutcome, graceful_shutdown};

/// Longest wait any function here honours (one day): a longer `timeout`
/// is clamped to it, so `now + timeout` cannot overflow the clock.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(86_400);
