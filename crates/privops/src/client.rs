//! The system-path adapter: [`RootHelperClient`] forwards every [`PrivOp`]
//! to `bangerd-root` over its Unix socket and maps the answer back.
//!
//! Each call opens a fresh connection, so a restarted helper is picked up
//! without any reconnect logic and concurrent callers never queue behind
//! one stream. Calls are bounded by a timeout; a request is never retried
//! once it was sent (a spawn must not run twice), only a failed connect is
//! retried briefly while the helper (re)starts.
//!
//! Before anything is sent, the peer's `SO_PEERCRED` uid must be the
//! expected one (root; tests may state another with
//! [`RootHelperClient::expect_peer_uid`]): a process that took the
//! helper's socket path never sees a request.

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::wire::{
    Answer, Call, MAX_RESPONSE, PROTOCOL_VERSION, RemoteError, WireErrorKind, WireRequest,
    WireResponse, read_frame, write_frame,
};
use crate::{PrivOp, PrivOpsError, PrivReply, PrivilegedOps};

/// Talks to `bangerd-root`. See the module docs.
#[derive(Debug, Clone)]
pub struct RootHelperClient {
    socket: PathBuf,
    timeout: Duration,
    connect_grace: Duration,
    peer_uid: u32,
}

impl RootHelperClient {
    /// A client of the helper at `socket`, with a 30 s per-request
    /// timeout, that talks only to a peer running as root.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: Duration::from_secs(30),
            connect_grace: Duration::from_secs(2),
            peer_uid: 0,
        }
    }

    /// Talk only to a helper running as `uid` instead of root (tests that
    /// serve a helper without root).
    pub fn expect_peer_uid(mut self, uid: u32) -> Self {
        self.peer_uid = uid;
        self
    }

    /// Bound each request (connect, send, answer) by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The helper's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Health probe: the helper's version and the uid it sees for us.
    pub fn ping(&self) -> Result<(String, u32), PrivOpsError> {
        match self.call("ping", Call::Ping)? {
            Answer::Pong {
                helper_version,
                peer_uid,
            } => Ok((helper_version, peer_uid)),
            Answer::Reply(r) => Err(PrivOpsError::Helper {
                op: "ping",
                message: format!("unexpected answer {r:?}"),
            }),
        }
    }

    fn connect(&self) -> Result<UnixStream, PrivOpsError> {
        let deadline = Instant::now() + self.connect_grace.min(self.timeout);
        loop {
            match UnixStream::connect(&self.socket) {
                Ok(s) => return self.checked_peer(s),
                Err(e)
                    if Instant::now() < deadline
                        && matches!(
                            e.kind(),
                            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                        ) =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(source) => {
                    return Err(PrivOpsError::HelperUnavailable {
                        socket: self.socket.clone(),
                        source,
                    });
                }
            }
        }
    }

    /// `stream` if its peer runs as the expected uid.
    fn checked_peer(&self, stream: UnixStream) -> Result<UnixStream, PrivOpsError> {
        let cred =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .map_err(|e| PrivOpsError::HelperUnavailable {
                    socket: self.socket.clone(),
                    source: e.into(),
                })?;
        if cred.uid() == self.peer_uid {
            return Ok(stream);
        }
        Err(PrivOpsError::Helper {
            op: "connect",
            message: format!(
                "the process serving {} (pid {}) runs as uid {}, not {}: it is not bangerd-root and was sent nothing; find out who created that socket, then restart the helper (sudo systemctl restart bangerd-root)",
                self.socket.display(),
                cred.pid(),
                cred.uid(),
                if self.peer_uid == 0 {
                    "root".to_string()
                } else {
                    format!("uid {}", self.peer_uid)
                }
            ),
        })
    }

    fn call(&self, op: &'static str, call: Call) -> Result<Answer, PrivOpsError> {
        let mut stream = self.connect()?;
        let io = |source: std::io::Error| PrivOpsError::HelperUnavailable {
            socket: self.socket.clone(),
            source,
        };
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let req = WireRequest {
            version: PROTOCOL_VERSION,
            call,
        };
        let frame_err = |e: crate::wire::FrameError| PrivOpsError::Helper {
            op,
            message: format!(
                "talking to bangerd-root at {} failed: {e}{}",
                self.socket.display(),
                match &e {
                    crate::wire::FrameError::Io(s) => format!(" ({s})"),
                    _ => String::new(),
                }
            ),
        };
        // A helper that refuses the connection answers at once and closes
        // without reading: when the write fails, its answer may still be
        // there to read.
        let sent = write_frame(&mut stream, &req);
        let body = match (sent, read_frame(&mut stream, MAX_RESPONSE)) {
            (_, Ok(body)) => body,
            (Err(e), Err(_)) | (Ok(()), Err(e)) => return Err(frame_err(e)),
        };
        let resp: WireResponse =
            serde_json::from_slice(&body).map_err(|e| PrivOpsError::Helper {
                op,
                message: format!("malformed answer from bangerd-root: {e}"),
            })?;
        resp.result.map_err(|e| remote(op, e))
    }
}

fn remote(op: &'static str, e: RemoteError) -> PrivOpsError {
    match e.kind {
        WireErrorKind::Refused => PrivOpsError::Refused {
            op,
            reason: e.message,
        },
        _ => PrivOpsError::Helper {
            op,
            message: format!("bangerd-root: {}", e.message),
        },
    }
}

impl PrivilegedOps for RootHelperClient {
    fn execute(&self, op: PrivOp) -> Result<PrivReply, PrivOpsError> {
        let name = op.name();
        match self.call(name, Call::Op(op))? {
            Answer::Reply(r) => Ok(r),
            Answer::Pong { .. } => Err(PrivOpsError::Helper {
                op: name,
                message: "bangerd-root answered a ping to an operation".into(),
            }),
        }
    }
}
