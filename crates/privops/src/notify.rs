//! Readiness for systemd (`Type=notify` units), through the `sd-notify`
//! crate. Both daemons send `READY=1` once their socket accepts requests,
//! so `systemctl start` (and units ordered after them) return only then,
//! and `STOPPING=1` when they begin to stop. Without `NOTIFY_SOCKET` (not
//! started by systemd, or the dev path) every call does nothing.

use sd_notify::NotifyState;

/// Send `READY=1` and `STATUS=<status>`; returns whether a service manager
/// was told (false without `NOTIFY_SOCKET`, or when sending failed: logged
/// at `warn`, the daemon goes on serving).
pub fn notify_ready(status: &str) -> bool {
    send(&[NotifyState::Ready, NotifyState::Status(status)])
}

/// Send `STATUS=<status>` (what `systemctl status` shows).
pub fn notify_status(status: &str) -> bool {
    send(&[NotifyState::Status(status)])
}

/// Send `STOPPING=1` and `STATUS=<status>`.
pub fn notify_stopping(status: &str) -> bool {
    send(&[NotifyState::Stopping, NotifyState::Status(status)])
}

fn send(states: &[NotifyState<'_>]) -> bool {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return false;
    }
    match sd_notify::notify(states) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
            false
        }
    }
}
