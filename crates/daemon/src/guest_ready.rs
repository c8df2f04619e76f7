//! Readiness after `InstanceStart`: the VM becomes `running` only once the
//! guest answers. With banger's guest hook (`[guest] guest_hook`) the probe
//! is Firecracker's hybrid vsock: connect to the VM's vsock Unix socket,
//! send `CONNECT <port>\n` in one write, expect `OK <host_port>\n`; without
//! it, an SSH banner on `guest_ip:ssh_port`. Each probe attempt has a short
//! timeout and is retried until `readiness_timeout_secs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::guest_config::Readiness;
use crate::guest_ssh::GuestSshError;
use crate::workspace_service::WorkspaceService;

/// Why a guest did not become ready.
#[derive(Debug, thiserror::Error)]
pub enum ReadinessError {
    /// The image should have the hook but the VMM has no vsock device.
    #[error(
        "readiness is `vsock` but the VM has no vsock socket; set `[guest] readiness = \"ssh\"`"
    )]
    NoVsock,
    /// The vsock handshake never succeeded.
    #[error(
        "no answer from the guest hook on vsock port {port} via {socket} within {secs}s (last: {last})"
    )]
    Vsock {
        /// vsock port.
        port: u32,
        /// The Unix socket.
        socket: PathBuf,
        /// Timeout.
        secs: u64,
        /// Last failure.
        last: String,
    },
    /// No SSH banner.
    #[error(transparent)]
    Ssh(#[from] GuestSshError),
}

/// One hybrid-vsock handshake: `CONNECT <port>\n` → `OK <n>\n`.
pub async fn vsock_connect(
    socket: &Path,
    port: u32,
    attempt_timeout: Duration,
) -> Result<tokio::net::UnixStream, String> {
    let fut = async {
        let mut s = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|e| format!("connect {}: {e}", socket.display()))?;
        // One write: Firecracker's parser is not a line reader.
        s.write_all(format!("CONNECT {port}\n").as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        loop {
            let n = s.read(&mut b).await.map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "closed by the VMM (nothing listens on guest port {port})"
                ));
            }
            if b[0] == b'\n' {
                break;
            }
            line.push(b[0]);
            if line.len() > 64 {
                return Err("overlong reply".into());
            }
        }
        let text = String::from_utf8_lossy(&line);
        if text.starts_with("OK ") {
            Ok(s)
        } else {
            Err(format!("unexpected reply {text:?}"))
        }
    };
    tokio::time::timeout(attempt_timeout, fut)
        .await
        .map_err(|_| "no reply to CONNECT".to_string())?
}

/// Retry [`vsock_connect`] until it succeeds or `timeout` passes.
pub async fn wait_for_vsock(
    socket: &Path,
    port: u32,
    timeout: Duration,
) -> Result<(), ReadinessError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("not tried");
    while tokio::time::Instant::now() < deadline {
        let left = deadline - tokio::time::Instant::now();
        match vsock_connect(socket, port, left.min(Duration::from_secs(2))).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(ReadinessError::Vsock {
        port,
        socket: socket.to_path_buf(),
        secs: timeout.as_secs(),
        last,
    })
}

impl WorkspaceService {
    /// Wait until the guest is reachable as configured; `vsock` is the
    /// VMM's hybrid-vsock socket, if it has one.
    pub async fn wait_ready(
        &self,
        guest_ip: std::net::Ipv4Addr,
        vsock: Option<&Path>,
    ) -> Result<(), ReadinessError> {
        let g = &self.deps.guest;
        let timeout = Duration::from_secs(g.readiness_timeout_secs);
        match g.effective_readiness() {
            Readiness::None | Readiness::Auto => Ok(()),
            Readiness::Ssh => {
                let addr = SocketAddr::new(guest_ip.into(), g.ssh_port);
                Ok((self.deps.wait_for_ssh)(addr, timeout).await?)
            }
            Readiness::Vsock => {
                let sock = vsock.ok_or(ReadinessError::NoVsock)?;
                wait_for_vsock(sock, g.vsock_port, timeout).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake Firecracker vsock socket: `mode` decides how it answers.
    fn fake(dir: &Path, mode: &'static str) -> PathBuf {
        let path = dir.join(format!("v-{mode}.sock"));
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                match mode {
                    "ok" if req == "CONNECT 52\n" => {
                        let _ = s.write_all(b"OK 1073741824\n").await;
                        held.push(s);
                    }
                    "silent" => held.push(s),
                    _ => drop(s),
                }
            }
        });
        path
    }

    #[tokio::test]
    async fn handshake_succeeds_closes_or_stays_silent() {
        let dir = tempfile::tempdir().unwrap();
        let ok = fake(dir.path(), "ok");
        vsock_connect(&ok, 52, Duration::from_secs(2))
            .await
            .unwrap();
        wait_for_vsock(&ok, 52, Duration::from_secs(2))
            .await
            .unwrap();
        // A port nobody listens on: the fake closes, like Firecracker.
        let e = vsock_connect(&ok, 53, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.contains("closed"), "{e}");

        let silent = fake(dir.path(), "silent");
        let e = wait_for_vsock(&silent, 52, Duration::from_millis(700))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no reply to CONNECT"), "{e}");
        let e = wait_for_vsock(&dir.path().join("missing"), 52, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("connect"), "{e}");
    }
}
