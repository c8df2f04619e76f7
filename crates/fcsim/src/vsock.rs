//! The vsock device's host side: a Unix socket bound at `PUT /vsock`.
//!
//! As in Firecracker: the socket is bound and listening when the call
//! returns; an existing path fails with "Address already in use"; a new `PUT`
//! first closes the previous device and deletes its socket file (even if the
//! new bind then fails); the file is left behind when the process exits.
//!
//! There is no guest, so connections are accepted and held open without an
//! answer to `CONNECT <port>` — what Firecracker does before the guest's
//! vsock driver is up (NOTES.md).

use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;

use banger_fcapi::Vsock;
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::fault::Fault;

/// A bound vsock device.
#[derive(Debug)]
pub struct VsockDevice {
    /// The configuration as given.
    pub config: Vsock,
    task: JoinHandle<()>,
}

impl VsockDevice {
    /// Binds `config.uds_path` and starts accepting (must run inside a tokio runtime).
    pub fn bind(config: Vsock) -> Result<Self, Fault> {
        let bind_error = |e: std::io::Error| {
            Fault::bad_request(format!(
                "Vsock config error: Cannot create backend for vsock device: Error binding to the host-side Unix socket: {e}"
            ))
        };
        let std_listener = StdUnixListener::bind(&config.uds_path).map_err(bind_error)?;
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        let listener = UnixListener::from_std(std_listener).map_err(bind_error)?;
        let task = tokio::spawn(hold_connections(listener));
        Ok(Self { config, task })
    }

    /// Stops accepting and deletes the socket file (device replaced).
    pub fn close(self) {
        self.task.abort();
        let _ = std::fs::remove_file(PathBuf::from(&self.config.uds_path));
    }
}

async fn hold_connections(listener: UnixListener) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut sink = [0u8; 256];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_refuses_existing_path_and_close_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let device = VsockDevice::bind(Vsock::new(3, path.to_str().unwrap())).unwrap();
        assert!(path.exists());
        let err = VsockDevice::bind(Vsock::new(3, path.to_str().unwrap())).unwrap_err();
        assert!(
            err.message
                .ends_with("Address already in use (os error 98)"),
            "{}",
            err.message
        );
        device.close();
        assert!(!path.exists());
    }
}
