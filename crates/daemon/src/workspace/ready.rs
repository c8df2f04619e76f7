//! Readiness after `InstanceStart`: the VM becomes `running` only once the
//! guest answers. The vsock probe is Firecracker's hybrid vsock: connect to
//! the VM's vsock Unix socket, send `CONNECT <port>\n` in one write, expect
//! `OK <host_port>\n`, then the guest agent's `PING` → `PONG <version>`
//! (`banger_guest::proto`). The SSH probe is a banner on
//! `guest_ip:ssh_port`. `auto` races both when the VM has a vsock socket
//! and takes the first success (a VMM without a vsock device, like the
//! QEMU front, closes vsock connections, so SSH wins there). Each probe
//! attempt has a short timeout and is retried until
//! `readiness_timeout_secs`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_guest::proto;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::workspace::guest_config::Readiness;
use crate::workspace::service::WorkspaceService;
use crate::workspace::ssh::GuestSshError;

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
        "no answer from the guest agent on vsock port {port} via {socket} within {secs}s (last: {last})"
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
    /// SSH readiness for a VM without a network card whose address is not
    /// on a link of this namespace: never dialed through the default route.
    #[error(
        "readiness needs SSH but the VM has no network card ({guest_ip} is not on a link of this host); \
         enable the guest network (network.enabled = true) or set `[guest] readiness = \"none\"`"
    )]
    NoNic {
        /// The stored guest address.
        guest_ip: std::net::Ipv4Addr,
    },
    /// `auto`: neither probe succeeded.
    #[error("neither the guest agent nor SSH answered: {vsock}; {ssh}")]
    Neither {
        /// The vsock probe's failure.
        vsock: Box<ReadinessError>,
        /// The SSH probe's failure.
        ssh: Box<ReadinessError>,
    },
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

/// One request line to the guest agent over an open vsock stream and its
/// reply line (without the newline), within `timeout`.
pub async fn agent_round_trip(
    s: &mut tokio::net::UnixStream,
    request: &str,
    timeout: Duration,
) -> Result<String, String> {
    let fut = async {
        s.write_all(format!("{request}\n").as_bytes())
            .await
            .map_err(|e| format!("write {request}: {e}"))?;
        let mut reader = tokio::io::BufReader::new(&mut *s).take(proto::MAX_REPLY as u64 + 1);
        let mut line = Vec::new();
        reader
            .read_until(b'\n', &mut line)
            .await
            .map_err(|e| format!("read the reply to {request}: {e}"))?;
        if line.pop() != Some(b'\n') {
            return Err(format!(
                "the guest agent closed the connection before answering {request}"
            ));
        }
        String::from_utf8(line).map_err(|_| format!("the reply to {request} is not UTF-8"))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| format!("no reply to {request} within {}s", timeout.as_secs_f32()))?
}

/// One agent request through the VM's hybrid-vsock socket: `CONNECT`
/// (within `connect_timeout`), then `request` (within `reply_timeout`).
pub async fn agent_request(
    socket: &Path,
    port: u32,
    request: &str,
    connect_timeout: Duration,
    reply_timeout: Duration,
) -> Result<String, String> {
    let mut s = vsock_connect(socket, port, connect_timeout).await?;
    agent_round_trip(&mut s, request, reply_timeout).await
}

/// One readiness attempt: `CONNECT`, then `PING` answered by `PONG`.
/// Returns the agent's version.
pub async fn vsock_ping(socket: &Path, port: u32, timeout: Duration) -> Result<String, String> {
    let line = agent_request(socket, port, proto::PING, timeout, timeout).await?;
    proto::parse_pong(&line).map_err(|e| e.to_string())
}

/// Retry [`vsock_ping`] until it succeeds or `timeout` passes.
pub async fn wait_for_vsock(
    socket: &Path,
    port: u32,
    timeout: Duration,
) -> Result<(), ReadinessError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::from("not tried");
    while tokio::time::Instant::now() < deadline {
        let left = deadline - tokio::time::Instant::now();
        match vsock_ping(socket, port, left.min(Duration::from_secs(2))).await {
            Ok(version) => {
                tracing::debug!(socket = %socket.display(), %version, "guest agent answered");
                return Ok(());
            }
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
    /// VMM's hybrid-vsock socket, if it has one; `has_nic` whether the VMM
    /// has a network card (without one, SSH is probed only when the address
    /// is on a link of this namespace, see [`crate::common::route`]).
    pub async fn wait_ready(
        &self,
        guest_ip: std::net::Ipv4Addr,
        vsock: Option<&Path>,
        has_nic: bool,
    ) -> Result<(), ReadinessError> {
        let g = &self.deps.guest;
        let timeout = Duration::from_secs(g.readiness_timeout_secs);
        let addr = SocketAddr::new(guest_ip.into(), g.ssh_port);
        let ssh_allowed = has_nic
            || matches!(
                crate::common::route::reach(guest_ip),
                crate::common::route::Reach::Direct { .. }
            );
        let readiness = match g.effective_readiness() {
            Readiness::Auto if !ssh_allowed => Readiness::Vsock,
            Readiness::Ssh if !ssh_allowed => return Err(ReadinessError::NoNic { guest_ip }),
            r => r,
        };
        match readiness {
            Readiness::None => Ok(()),
            Readiness::Ssh => Ok((self.deps.wait_for_ssh)(addr, timeout).await?),
            Readiness::Vsock => {
                let sock = vsock.ok_or(if ssh_allowed {
                    ReadinessError::NoVsock
                } else {
                    ReadinessError::NoNic { guest_ip }
                })?;
                wait_for_vsock(sock, g.vsock_port, timeout).await
            }
            Readiness::Auto => match vsock.filter(|p| p.exists()) {
                None => Ok((self.deps.wait_for_ssh)(addr, timeout).await?),
                Some(sock) => {
                    let ssh = async {
                        Ok::<(), ReadinessError>((self.deps.wait_for_ssh)(addr, timeout).await?)
                    };
                    first_success(wait_for_vsock(sock, g.vsock_port, timeout), ssh).await
                }
            },
        }
    }
}

/// Race the vsock probe and the SSH probe: the first success wins; fail
/// only when both have failed.
pub async fn first_success(
    vsock: impl std::future::Future<Output = Result<(), ReadinessError>>,
    ssh: impl std::future::Future<Output = Result<(), ReadinessError>>,
) -> Result<(), ReadinessError> {
    tokio::pin!(vsock, ssh);
    let (mut v_err, mut s_err) = (None, None);
    loop {
        tokio::select! {
            r = &mut vsock, if v_err.is_none() => match r {
                Ok(()) => return Ok(()),
                Err(e) => v_err = Some(e),
            },
            r = &mut ssh, if s_err.is_none() => match r {
                Ok(()) => return Ok(()),
                Err(e) => s_err = Some(e),
            },
        }
        if let (Some(v), Some(s)) = (&mut v_err, &mut s_err) {
            let dummy = || ReadinessError::NoVsock;
            return Err(ReadinessError::Neither {
                vsock: Box::new(std::mem::replace(v, dummy())),
                ssh: Box::new(std::mem::replace(s, dummy())),
            });
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::workspace::ssh::banner_waiter;

    /// How a fake Firecracker vsock socket behaves.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub(crate) enum Fake {
        /// `CONNECT 52` → `OK`, then banger's real agent protocol handler
        /// (`banger_guest::proto::handle`) over the host's `/proc`.
        Agent,
        /// `CONNECT 52` → `OK`, then nothing (a listener that is not the agent).
        ConnectOnly,
        /// Accept and never answer (guest vsock driver not up yet).
        Silent,
        /// Accept and close (a VMM without a vsock device, or nobody on the port).
        Close,
    }

    /// A fake hybrid-vsock Unix socket at `dir/v-<mode>.sock`.
    pub(crate) fn fake(dir: &Path, mode: Fake) -> PathBuf {
        let path = dir.join(format!("v-{mode:?}.sock"));
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                let mut s = s.into_std().unwrap();
                s.set_nonblocking(false).unwrap();
                match mode {
                    Fake::Silent => held.push(s),
                    Fake::Close => drop(s),
                    Fake::Agent | Fake::ConnectOnly => {
                        std::thread::spawn(move || {
                            use std::io::Write;
                            let Ok(Some(line)) = proto::read_line(&mut s, 64) else {
                                return;
                            };
                            if line != "CONNECT 52" {
                                return;
                            }
                            s.write_all(b"OK 1073741824\n").unwrap();
                            if mode == Fake::Agent {
                                let _ = proto::handle(s, Path::new("/proc"));
                            } else {
                                std::thread::sleep(Duration::from_secs(30));
                            }
                        });
                    }
                }
            }
        });
        path
    }

    #[tokio::test]
    async fn handshake_reaches_the_agent_or_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let agent = fake(dir.path(), Fake::Agent);
        vsock_connect(&agent, 52, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(
            vsock_ping(&agent, 52, Duration::from_secs(2))
                .await
                .unwrap(),
            proto::AGENT_VERSION
        );
        wait_for_vsock(&agent, 52, Duration::from_secs(2))
            .await
            .unwrap();
        // A port nobody listens on: the fake closes, like Firecracker.
        let e = vsock_connect(&agent, 53, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.contains("closed"), "{e}");

        let silent = fake(dir.path(), Fake::Silent);
        let e = wait_for_vsock(&silent, 52, Duration::from_millis(700))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no reply to CONNECT"), "{e}");
        // Something answers CONNECT but is not the agent: no PONG, not ready.
        let other = fake(dir.path(), Fake::ConnectOnly);
        let e = wait_for_vsock(&other, 52, Duration::from_millis(900))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("no reply to PING"), "{e}");
        let e = wait_for_vsock(&dir.path().join("missing"), 52, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("connect"), "{e}");
    }

    /// A TCP server that sends an SSH banner to every connection.
    async fn banner_server() -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2 fake\r\n").await;
                held.push(s);
            }
        });
        addr
    }

    #[tokio::test]
    async fn auto_race_takes_the_first_success() {
        let dir = tempfile::tempdir().unwrap();
        let t = Duration::from_secs(3);
        let ssh = banner_server().await;
        let no_ssh: SocketAddr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let wait_ssh = banner_waiter();
        let ssh_probe = |a: SocketAddr, t: Duration| {
            let w = wait_ssh.clone();
            async move { Ok::<(), ReadinessError>(w(a, t).await?) }
        };

        // A VMM that closes vsock connections (the QEMU front): SSH wins.
        let closing = fake(dir.path(), Fake::Close);
        let started = std::time::Instant::now();
        first_success(wait_for_vsock(&closing, 52, t), ssh_probe(ssh, t))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "did not wait for vsock"
        );

        // The agent answers and there is no SSH at all: vsock wins.
        let agent = fake(dir.path(), Fake::Agent);
        let started = std::time::Instant::now();
        first_success(wait_for_vsock(&agent, 52, t), ssh_probe(no_ssh, t))
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "did not wait for SSH"
        );

        // Neither: one error naming both.
        let short = Duration::from_millis(600);
        let e = first_success(
            wait_for_vsock(&closing, 52, short),
            ssh_probe(no_ssh, short),
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("neither the guest agent nor SSH answered"),
            "{text}"
        );
        assert!(
            text.contains("vsock port 52") && text.contains("v-Close.sock"),
            "{text}"
        );
        assert!(text.contains(&no_ssh.to_string()), "{text}");
    }
}
