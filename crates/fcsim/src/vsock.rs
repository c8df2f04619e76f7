//! The vsock device's host side: a Unix socket bound at `PUT /vsock`.
//!
//! As in Firecracker: the socket is bound and listening when the call
//! returns; an existing path fails with "Address already in use"; a new `PUT`
//! first closes the previous device and deletes its socket file (even if the
//! new bind then fails); the file is left behind when the process exits.
//!
//! There is no guest, so connections are accepted and held open without an
//! answer to `CONNECT <port>` — what Firecracker does before the guest's
//! vsock driver is up (NOTES.md). The QEMU front chooses another
//! [`VsockMode`]: bridge to the guest through vhost-vsock, or close each
//! connection unanswered when the host has no usable `/dev/vhost-vsock`.

use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;

use banger_fcapi::Vsock;
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

use crate::fault::Fault;

/// What the host side does with a client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VsockMode {
    /// Accept and hold it open without an answer (the simulated guest).
    Hold,
    /// Accept and close it without an answer (no guest vsock: nothing listens).
    Close,
    /// Bridge Firecracker's hybrid protocol to the guest's vsock (QEMU with vhost-vsock).
    Bridge,
    /// Answer as banger's guest agent (`--sim-guest-agent`).
    Agent,
}

/// A bound vsock device.
#[derive(Debug)]
pub struct VsockDevice {
    /// The configuration as given.
    pub config: Vsock,
    /// How connections are served.
    pub mode: VsockMode,
    task: JoinHandle<()>,
}

impl VsockDevice {
    /// Binds `config.uds_path` and serves connections as `mode` says.
    pub fn bind_with(config: Vsock, mode: VsockMode) -> Result<Self, Fault> {
        let bind_error = |e: std::io::Error| {
            Fault::bad_request(format!(
                "Vsock config error: Cannot create backend for vsock device: Error binding to the host-side Unix socket: {e}"
            ))
        };
        let std_listener = StdUnixListener::bind(&config.uds_path).map_err(bind_error)?;
        std_listener.set_nonblocking(true).map_err(bind_error)?;
        let listener = UnixListener::from_std(std_listener).map_err(bind_error)?;
        let task = match mode {
            VsockMode::Hold => tokio::spawn(hold_connections(listener)),
            VsockMode::Close => tokio::spawn(close_connections(listener)),
            VsockMode::Bridge => tokio::spawn(bridge_connections(listener, config.guest_cid)),
            VsockMode::Agent => tokio::spawn(agent_connections(listener)),
        };
        Ok(Self { config, mode, task })
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

/// The simulated guest agent: `CONNECT <port>` → `OK <n>`, then one reply
/// line per request line: `PING` → `PONG fcsim`, `PORTS` → `PORTS []`,
/// `IDENTITY …` → printed on the console (without its `seed=`), `IDENTITY OK`.
async fn agent_connections(listener: UnixListener) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).take(64 * 1024).lines();
            let Ok(Some(connect)) = lines.next_line().await else {
                return;
            };
            if !connect.starts_with("CONNECT ")
                || write.write_all(b"OK 1073741824\n").await.is_err()
            {
                return;
            }
            while let Ok(Some(line)) = lines.next_line().await {
                let reply = match line.trim() {
                    "PING" => "PONG fcsim\n".to_string(),
                    "PORTS" => "PORTS []\n".to_string(),
                    other if other.starts_with("IDENTITY ") => {
                        let shown: Vec<&str> = other
                            .split_whitespace()
                            .filter(|w| !w.starts_with("seed="))
                            .collect();
                        let _ = crate::log::write_stdout(
                            format!("fcsim agent: {}\n", shown.join(" ")).as_bytes(),
                        );
                        "IDENTITY OK\n".to_string()
                    }
                    other => format!("ERR unknown request {other:?}\n"),
                };
                if write.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn close_connections(listener: UnixListener) {
    while let Ok((stream, _)) = listener.accept().await {
        drop(stream);
    }
}

async fn bridge_connections(listener: UnixListener, guest_cid: u32) {
    while let Ok((stream, _)) = listener.accept().await {
        // The bridge is blocking I/O on threads of its own.
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        std::thread::spawn(move || crate::qemu::vsock::bridge(stream, guest_cid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bind_refuses_existing_path_and_close_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let device =
            VsockDevice::bind_with(Vsock::new(3, path.to_str().unwrap()), VsockMode::Hold).unwrap();
        assert!(path.exists());
        let err = VsockDevice::bind_with(Vsock::new(3, path.to_str().unwrap()), VsockMode::Hold)
            .unwrap_err();
        assert!(
            err.message
                .ends_with("Address already in use (os error 98)"),
            "{}",
            err.message
        );
        device.close();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn close_mode_answers_nothing_and_closes() {
        use tokio::io::AsyncWriteExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let _device =
            VsockDevice::bind_with(Vsock::new(3, path.to_str().unwrap()), VsockMode::Close)
                .unwrap();
        let mut stream = tokio::net::UnixStream::connect(&path).await.unwrap();
        let _ = stream.write_all(b"CONNECT 52\n").await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read_to_end(&mut answer),
        )
        .await
        .expect("the connection is closed");
        assert!(read.is_err() || answer.is_empty(), "{answer:?}");
    }
}
