//! A synchronous client for `bangerd`'s RPC socket, or for a remote
//! `bangerd` over SSH ([`Client::connect_ssh`]: `ssh … banger system
//! dial-stdio` on that host, the same protocol over the session).
//!
//! The protocol is documented in [`banger_api::rpc`]: newline-delimited JSON
//! over a Unix socket, a `daemon.hello` handshake first, then one request at a
//! time, each answered by zero or more `event` lines and one final `result` or
//! `error` line.
//!
//! Right after connecting, before anything is sent, the client checks who
//! serves the socket (`SO_PEERCRED`): only this process's uid, the
//! installed owner ([`TrustedPeers::for_cli`]) or root. A socket taken
//! over by someone else fails with [`ClientError::UntrustedPeer`].
//!
//! A [`Client`] owns one connection and is used by one thread at a time (it is
//! `Send`); to talk to the daemon from many threads, open one client per
//! thread. It is used by the CLI, by the integration tests and by the
//! benchmark:
//!
//! ```no_run
//! use banger_api::{Request, Vm};
//! use banger_cli::client::Client;
//!
//! let mut client = Client::connect("/run/user/1000/banger/bangerd.sock".as_ref())?;
//! let vms: Vec<Vm> = client.call(Request::VmList)?;
//! # Ok::<(), banger_cli::client::ClientError>(())
//! ```

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use banger_api::rpc::{HelloParams, OpRef, RequestEnvelope, ResponseBody, ResponseEnvelope};
use banger_api::{ErrorKind, Hello, Operation, PROTOCOL_VERSION, Request, RpcError};
use nix::errno::Errno;
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr};
use serde::de::DeserializeOwned;

/// How long [`Client::connect`] waits for the daemon to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a call waits for its answer by default. Generous because some
/// calls (starting a VM, deleting its disks) do real work before answering;
/// [`Client::watch`] never times out.
pub const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the handshake may take: the daemon answers it without any work.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// The same over SSH, which logs in first.
const SSH_HELLO_TIMEOUT: Duration = Duration::from_secs(60);
/// How long writing a request may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response line the client accepts (a list of many VMs or 10000 log
/// lines fits comfortably).
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be connected to.
    #[error("{}", connect_message(socket, source))]
    Connect {
        /// The socket that was tried.
        socket: PathBuf,
        /// Why the connection failed.
        #[source]
        source: io::Error,
    },
    /// The socket is served by a uid the client does not trust; nothing
    /// was sent.
    #[error(
        "bangerd's socket {} is served by uid {uid} (pid {pid}), which is not {trusted}; banger sent it nothing. Someone else may have replaced the socket: find that process, stop it and remove the socket, then restart bangerd (`sudo systemctl restart bangerd` on the system path, `bangerd` on the dev path)",
        socket.display()
    )]
    UntrustedPeer {
        /// The socket.
        socket: PathBuf,
        /// The uid serving it.
        uid: u32,
        /// The pid serving it.
        pid: i32,
        /// Who would have been trusted, in words.
        trusted: String,
    },
    /// The SSH connection to a remote daemon failed, or the remote side
    /// could not reach its daemon (`banger system dial-stdio`).
    #[error("cannot reach bangerd at {target} over SSH: {detail}")]
    Ssh {
        /// `ssh://[user@]host[:port]`.
        target: String,
        /// ssh's exit status and what it (or the remote banger) said, with a hint.
        detail: String,
    },
    /// The daemon speaks another protocol version.
    #[error(
        "bangerd at {endpoint} speaks {}, this banger speaks protocol {client}: restart bangerd after an upgrade (stop it and start it again) so both run the same version",
        daemon.map_or_else(|| "another protocol version".to_string(), |v| format!("protocol {v}"))
    )]
    VersionMismatch {
        /// The daemon's socket or `ssh://` address.
        endpoint: String,
        /// This client's [`PROTOCOL_VERSION`].
        client: u32,
        /// The daemon's version, when it said.
        daemon: Option<u32>,
    },
    /// The daemon refused the request.
    #[error("{0}")]
    Rpc(RpcError),
    /// The daemon answered something this client does not understand.
    #[error(
        "unexpected answer from bangerd to {method}: {message}; make sure banger and bangerd are the same version"
    )]
    Protocol {
        /// The request's method.
        method: String,
        /// What was wrong with the answer.
        message: String,
    },
    /// The daemon did not answer in time.
    #[error(
        "bangerd did not answer {method} within {}s; check that it is not stuck (its log: `journalctl -u bangerd`, or bangerd.log in the state dir)",
        after.as_secs()
    )]
    Timeout {
        /// The request's method.
        method: String,
        /// How long the client waited.
        after: Duration,
    },
    /// Reading or writing the connection failed (for example, the daemon exited).
    #[error("lost the connection to bangerd during {method}; check that bangerd is still running")]
    Io {
        /// The request's method.
        method: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

impl ClientError {
    /// The CLI's exit code for this error: the [`ErrorKind`]'s code for
    /// daemon errors, 6 when the daemon is unreachable, 5 on a version
    /// mismatch, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ClientError::Connect { .. } | ClientError::Ssh { .. } => 6,
            ClientError::UntrustedPeer { .. } => ErrorKind::PermissionDenied.exit_code(),
            ClientError::VersionMismatch { .. } => ErrorKind::VersionMismatch.exit_code(),
            ClientError::Rpc(e) => e.kind.exit_code(),
            ClientError::Protocol { .. } | ClientError::Timeout { .. } | ClientError::Io { .. } => {
                1
            }
        }
    }

    /// The daemon's error, when it refused the request.
    pub fn rpc(&self) -> Option<&RpcError> {
        match self {
            ClientError::Rpc(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RpcError> for ClientError {
    fn from(e: RpcError) -> Self {
        ClientError::Rpc(e)
    }
}

fn connect_message(socket: &Path, source: &io::Error) -> String {
    let socket = socket.display();
    match source.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "bangerd's socket {socket} is not accessible to this user: run banger as the user bangerd runs as, or start your own `bangerd` and pass its --socket"
        ),
        _ => format!(
            "bangerd is not reachable at {socket}: start it with `bangerd` (with the same --state-dir/--config as banger), or point banger at another socket with --socket"
        ),
    }
}

/// The uids whose daemon the client talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPeers {
    me: u32,
    owner: Option<u32>,
}

impl TrustedPeers {
    /// This process's uid, root, and the installed owner when the install
    /// metadata (`$BANGER_INSTALL_META`, else `/etc/banger/install.toml`)
    /// can be read.
    pub fn for_cli() -> TrustedPeers {
        let meta = std::env::var_os("BANGER_INSTALL_META")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(banger_config::install_meta::INSTALL_META));
        TrustedPeers::from_install_meta(&meta)
    }

    /// This process's uid, root, and the owner named in the install
    /// metadata at `path` when it can be read.
    pub fn from_install_meta(path: &Path) -> TrustedPeers {
        let owner = banger_config::install_meta::InstallMeta::load(path)
            .ok()
            .map(|m| m.owner_uid);
        TrustedPeers::with_owner(owner)
    }

    /// This process's uid, root, and `owner` when given.
    pub fn with_owner(owner: Option<u32>) -> TrustedPeers {
        TrustedPeers {
            me: nix::unistd::getuid().as_raw(),
            owner,
        }
    }

    /// Whether a daemon running as `uid` is trusted.
    pub fn allows(&self, uid: u32) -> bool {
        uid == 0 || uid == self.me || self.owner == Some(uid)
    }

    fn describe(&self) -> String {
        match self.owner {
            Some(o) if o != self.me && o != 0 => format!(
                "you (uid {}), the installed owner (uid {o}) or root",
                self.me
            ),
            _ => format!("you (uid {}) or root", self.me),
        }
    }
}

/// One connection to `bangerd`: its Unix socket, or an SSH session to
/// another host whose `banger system dial-stdio` bridges to the daemon
/// there (the session ends when the client is dropped).
#[derive(Debug)]
pub struct Client {
    endpoint: String,
    reader: BufReader<UnixStream>,
    writer: BufWriter<UnixStream>,
    next_id: u64,
    timeout: Option<Duration>,
    hello: Hello,
    // Declared last: dropped after the streams are closed.
    tunnel: Option<crate::tunnel::Tunnel>,
}

impl Client {
    /// Connect to the daemon at `socket` and perform the handshake, trusting
    /// [`TrustedPeers::for_cli`].
    ///
    /// Fails with [`ClientError::Connect`] when nothing listens there, with
    /// [`ClientError::UntrustedPeer`] when another user serves it and with
    /// [`ClientError::VersionMismatch`] when the daemon speaks another
    /// protocol version.
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        Client::connect_with(socket, &TrustedPeers::for_cli())
    }

    /// [`Client::connect`], trusting `peers`.
    pub fn connect_with(socket: &Path, peers: &TrustedPeers) -> Result<Client, ClientError> {
        let stream = connect_trusted(socket, peers)?;
        Client::handshake(socket.display().to_string(), stream, None, HELLO_TIMEOUT)
    }

    /// Connect to the daemon on another host: run `ssh … banger system
    /// dial-stdio` there (OpenSSH by argv; `ssh_config` is passed as `-F`)
    /// and speak the protocol over the session. The remote side checks who
    /// serves its daemon's socket, as [`Client::connect`] does here.
    pub fn connect_ssh(
        target: &crate::remote::SshTarget,
        ssh_config: Option<&PathBuf>,
    ) -> Result<Client, ClientError> {
        let endpoint = target.to_string();
        let (tunnel, stream) =
            crate::tunnel::Tunnel::spawn(target, ssh_config).map_err(|e| ClientError::Ssh {
                target: endpoint.clone(),
                detail: format!(
                    "cannot run {}: {e}; install the OpenSSH client",
                    crate::remote::SSH
                ),
            })?;
        // Logging in (and perhaps asking for a passphrase) takes longer
        // than a local handshake.
        match Client::handshake(endpoint.clone(), stream, Some(tunnel), SSH_HELLO_TIMEOUT) {
            Err(ClientError::Io { source, .. }) => Err(ClientError::Ssh {
                target: endpoint,
                detail: source.to_string(),
            }),
            other => other,
        }
    }

    /// Perform the handshake on a connected stream.
    fn handshake(
        endpoint: String,
        stream: UnixStream,
        tunnel: Option<crate::tunnel::Tunnel>,
        hello_timeout: Duration,
    ) -> Result<Client, ClientError> {
        let io_err = |source| ClientError::Io {
            method: "daemon.hello".into(),
            source,
        };
        stream
            .set_write_timeout(Some(WRITE_TIMEOUT))
            .map_err(io_err)?;
        let reader = BufReader::new(stream.try_clone().map_err(io_err)?);
        let mut client = Client {
            endpoint,
            reader,
            writer: BufWriter::new(stream),
            next_id: 1,
            timeout: Some(hello_timeout),
            hello: Hello {
                protocol: PROTOCOL_VERSION,
                version: String::new(),
            },
            tunnel,
        };
        let request = Request::Hello(HelloParams {
            protocol: PROTOCOL_VERSION,
            client: format!("banger-cli {}", banger_api::BANGER_VERSION),
        });
        let hello: Hello = match client.call(request) {
            Ok(h) => h,
            Err(ClientError::Rpc(e)) if e.kind == ErrorKind::VersionMismatch => {
                return Err(client.mismatch(None));
            }
            Err(e) => return Err(client.explain(e)),
        };
        if hello.protocol != PROTOCOL_VERSION {
            return Err(client.mismatch(Some(hello.protocol)));
        }
        client.hello = hello;
        client.timeout = Some(READ_TIMEOUT);
        Ok(client)
    }

    fn mismatch(&self, daemon: Option<u32>) -> ClientError {
        ClientError::VersionMismatch {
            endpoint: self.endpoint.clone(),
            client: PROTOCOL_VERSION,
            daemon,
        }
    }

    /// A failed handshake over SSH: what ssh and the remote side said.
    fn explain(&mut self, e: ClientError) -> ClientError {
        match (&mut self.tunnel, e) {
            (Some(t), ClientError::Io { .. } | ClientError::Timeout { .. }) => ClientError::Ssh {
                target: self.endpoint.clone(),
                detail: t.failure(),
            },
            (_, e) => e,
        }
    }

    /// Where the daemon is: its socket path, or `ssh://[user@]host[:port]`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The daemon's answer to the handshake (its protocol and version).
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Change how long later calls wait for their answer; `None` waits forever.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Send `request` and decode its result as `T`.
    ///
    /// Progress events the daemon sends before the result are skipped; use
    /// [`Client::watch`] to see them.
    pub fn call<T: DeserializeOwned>(&mut self, request: Request) -> Result<T, ClientError> {
        let timeout = self.timeout;
        self.call_streaming(request, timeout, |_| Ok(()))
    }

    /// Follow operation `op_id` until it finishes: `on_event` sees every
    /// change as the daemon reports it; the final state is returned (a failed
    /// operation is returned too, with its `error` set). Never times out.
    pub fn watch(
        &mut self,
        op_id: &str,
        mut on_event: impl FnMut(&Operation),
    ) -> Result<Operation, ClientError> {
        let request = Request::OperationWatch(OpRef {
            id: op_id.to_string(),
        });
        self.call_streaming(request, None, |value| {
            let op: Operation = serde_json::from_value(value).map_err(|e| e.to_string())?;
            on_event(&op);
            Ok(())
        })
    }

    /// Send `request`, pass each event to `on_event`, return the decoded result.
    fn call_streaming<T: DeserializeOwned>(
        &mut self,
        request: Request,
        timeout: Option<Duration>,
        mut on_event: impl FnMut(serde_json::Value) -> Result<(), String>,
    ) -> Result<T, ClientError> {
        let method = request.method().to_string();
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::to_string(&RequestEnvelope { id, request }).map_err(|e| {
            ClientError::Protocol {
                method: method.clone(),
                message: format!("cannot encode the request: {e}"),
            }
        })?;
        let io_err = |method: &str, source| ClientError::Io {
            method: method.to_string(),
            source,
        };
        self.writer
            .write_all(line.as_bytes())
            .and_then(|()| self.writer.write_all(b"\n"))
            .and_then(|()| self.writer.flush())
            .map_err(|e| io_err(&method, e))?;
        self.reader
            .get_ref()
            .set_read_timeout(timeout)
            .map_err(|e| io_err(&method, e))?;
        let protocol = |message: String| ClientError::Protocol {
            method: method.clone(),
            message,
        };
        loop {
            let line = self.read_line().map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ClientError::Timeout {
                    method: method.clone(),
                    after: timeout.unwrap_or_default(),
                },
                _ => io_err(&method, e),
            })?;
            let envelope: ResponseEnvelope = serde_json::from_slice(&line)
                .map_err(|e| protocol(format!("invalid response line: {e}")))?;
            if envelope.id < id {
                // The answer to an earlier call that timed out; skip it.
                continue;
            }
            if envelope.id != id {
                return Err(protocol(format!(
                    "response id {} for request id {id}",
                    envelope.id
                )));
            }
            match envelope.body {
                ResponseBody::Event(value) => {
                    on_event(value).map_err(|e| protocol(format!("invalid event: {e}")))?
                }
                ResponseBody::Error(e) => return Err(ClientError::Rpc(e)),
                ResponseBody::Result(value) => {
                    return serde_json::from_value(value)
                        .map_err(|e| protocol(format!("invalid result: {e}")));
                }
            }
        }
    }

    /// Read one line (without its newline), refusing lines longer than
    /// [`MAX_RESPONSE_BYTES`] and a connection closed mid-answer.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        (&mut self.reader)
            .take(MAX_RESPONSE_BYTES + 1)
            .read_until(b'\n', &mut buf)?;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            return Ok(buf);
        }
        if buf.len() as u64 > MAX_RESPONSE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response line longer than {MAX_RESPONSE_BYTES} bytes"),
            ));
        }
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "bangerd closed the connection before answering",
        ))
    }
}

/// Connect to the daemon's socket and check who serves it (`SO_PEERCRED`
/// must name one of `peers`); nothing is sent. `banger system dial-stdio`
/// bridges such a stream to an SSH session.
pub fn connect_trusted(socket: &Path, peers: &TrustedPeers) -> Result<UnixStream, ClientError> {
    let connect_err = |source| ClientError::Connect {
        socket: socket.to_path_buf(),
        source,
    };
    let stream = connect_stream(socket, CONNECT_TIMEOUT).map_err(connect_err)?;
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| connect_err(e.into()))?;
    if !peers.allows(cred.uid()) {
        return Err(ClientError::UntrustedPeer {
            socket: socket.to_path_buf(),
            uid: cred.uid(),
            pid: cred.pid(),
            trusted: peers.describe(),
        });
    }
    Ok(stream)
}

/// Connect a Unix stream socket, giving up after `timeout` (a blocking
/// `connect` to a daemon whose accept backlog is full would wait forever).
fn connect_stream(path: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let addr = UnixAddr::new(path).map_err(io::Error::from)?;
    let fd = nix::sys::socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(io::Error::from)?;
    let deadline = Instant::now() + timeout;
    loop {
        match nix::sys::socket::connect(fd.as_raw_fd(), &addr) {
            Ok(()) | Err(Errno::EISCONN) => break,
            Err(Errno::EAGAIN | Errno::EINPROGRESS | Errno::EALREADY | Errno::EINTR) => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the daemon did not accept the connection within {}s",
                            timeout.as_secs()
                        ),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let stream = UnixStream::from(fd);
    stream.set_nonblocking(false)?;
    Ok(stream)
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
