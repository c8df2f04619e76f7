//! The helper's socket server: binds the socket (root-owned, group of the
//! owner, mode 0660), accepts a connection only from the owner uid or root
//! (`SO_PEERCRED`), reads size- and time-limited frames, validates each
//! operation against the policy before acting and performs it through
//! [`LocalPrivOps`]. Every operation is logged with its caller.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use banger_privops::wire::{
    Answer, Call, FrameError, MAX_REQUEST, PROTOCOL_VERSION, RemoteError, WireErrorKind,
    WireResponse, decode_request, read_frame, write_frame,
};
use banger_privops::{LocalPrivOps, Policy, PrivOpsError, PrivilegedOps};

/// Most connections served at once; more are answered with an error.
const MAX_CONNECTIONS: usize = 64;

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Something exists at the socket path and is not a socket.
    #[error("{path} exists and is not a socket; remove it or configure another helper_socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// A filesystem step failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Who may connect and how long a request may take.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The only non-root uid served.
    pub owner_uid: u32,
    /// Group of the socket.
    pub owner_gid: u32,
    /// Read/write timeout of each request and idle connection.
    pub request_timeout: Duration,
}

/// Bind `socket`: parent created if missing, a stale socket replaced,
/// mode 0660 from the start, group `owner_gid`. When the parent is
/// `runtime_dir` and root-owned (systemd's `RuntimeDirectory=`), it is
/// given to the owner's group (0770) so the owner daemon can create its
/// own sockets there; no other directory is ever changed.
pub fn bind(
    socket: &Path,
    runtime_dir: &Path,
    owner_gid: u32,
) -> Result<UnixListener, ServerError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| ServerError::Io {
            action,
            path,
            source,
        }
    };
    if let Some(parent) = socket.parent()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(io("create", parent))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o770))
            .map_err(io("chmod", parent))?;
        std::os::unix::fs::chown(parent, Some(0), Some(owner_gid)).map_err(io("chown", parent))?;
    } else if let Some(parent) = socket.parent()
        && parent == runtime_dir
        && std::fs::metadata(parent).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0 && m.gid() != owner_gid
        })
    {
        std::os::unix::fs::chown(parent, Some(0), Some(owner_gid)).map_err(io("chown", parent))?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o770))
            .map_err(io("chmod", parent))?;
    }
    match socket.symlink_metadata() {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(socket).map_err(io("remove stale socket", socket))?
        }
        Ok(_) => {
            return Err(ServerError::NotASocket {
                path: socket.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o117));
    let bound = UnixListener::bind(socket);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(io("bind", socket))?;
    std::os::unix::fs::chown(socket, None, Some(owner_gid)).map_err(io("chown", socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(io("chmod", socket))?;
    Ok(listener)
}

/// Serve `listener` forever, one thread per connection.
pub fn serve(listener: UnixListener, ops: LocalPrivOps, opts: ServeOptions) {
    let ops = Arc::new(ops);
    let active = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!("too many connections; refusing one");
            continue;
        }
        let (ops, opts, active) = (Arc::clone(&ops), opts.clone(), Arc::clone(&active));
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .spawn(move || {
                handle(stream, &ops, &opts);
                active.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a connection thread");
        }
    }
}

fn reply(stream: &mut UnixStream, result: Result<Answer, RemoteError>) -> bool {
    let resp = WireResponse {
        version: PROTOCOL_VERSION,
        result,
    };
    write_frame(stream, &resp).is_ok()
}

fn err(kind: WireErrorKind, message: impl Into<String>) -> Result<Answer, RemoteError> {
    Err(RemoteError {
        kind,
        message: message.into(),
    })
}

/// Serve one connection: requests until the peer closes, errs or idles.
pub fn handle(mut stream: UnixStream, ops: &LocalPrivOps, opts: &ServeOptions) {
    let _ = stream.set_read_timeout(Some(opts.request_timeout));
    let _ = stream.set_write_timeout(Some(opts.request_timeout));
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
    let (uid, pid) = match cred {
        Ok(c) => (c.uid(), c.pid()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read peer credentials; closing");
            return;
        }
    };
    if uid != opts.owner_uid && uid != 0 {
        tracing::warn!(
            caller_uid = uid,
            caller_pid = pid,
            "refused connection from a uid that is neither the owner nor root"
        );
        // Read (and drop) the first request so the peer sees the answer.
        let _ = read_frame(&mut stream, MAX_REQUEST);
        reply(
            &mut stream,
            err(
                WireErrorKind::Unauthorized,
                format!(
                    "uid {uid} may not use bangerd-root (only uid {} and root); run banger as the installed owner",
                    opts.owner_uid
                ),
            ),
        );
        return;
    }
    loop {
        let body = match read_frame(&mut stream, MAX_REQUEST) {
            Ok(b) => b,
            Err(FrameError::Closed) => return,
            Err(FrameError::TooLarge { len, max }) => {
                tracing::warn!(
                    caller_uid = uid,
                    caller_pid = pid,
                    len,
                    "refused oversized request"
                );
                reply(
                    &mut stream,
                    err(
                        WireErrorKind::TooLarge,
                        format!("request of {len} bytes exceeds the limit of {max} bytes"),
                    ),
                );
                return;
            }
            Err(e) => {
                tracing::debug!(caller_uid = uid, error = %e, "connection ended");
                return;
            }
        };
        let result = answer(&body, ops, uid, pid);
        if !reply(&mut stream, result) {
            return;
        }
    }
}

/// Decode, validate and perform one request body from `uid`.
pub fn answer(body: &[u8], ops: &LocalPrivOps, uid: u32, pid: i32) -> Result<Answer, RemoteError> {
    let req = match decode_request(body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(caller_uid = uid, caller_pid = pid, error = %e.message, "bad request");
            return Err(e);
        }
    };
    let op = match req.call {
        Call::Ping => {
            return Ok(Answer::Pong {
                helper_version: env!("CARGO_PKG_VERSION").into(),
                peer_uid: uid,
            });
        }
        Call::Op(op) => op,
    };
    let name = op.name();
    let op = match op.validate(ops.policy()) {
        Ok(op) => op,
        Err(e) => {
            tracing::warn!(caller_uid = uid, caller_pid = pid, op = name, error = %e, "refused");
            return err(WireErrorKind::Refused, refusal(e));
        }
    };
    tracing::info!(caller_uid = uid, caller_pid = pid, op = name, request = ?op, "performing");
    match ops.execute(op) {
        Ok(r) => {
            tracing::info!(caller_uid = uid, op = name, reply = ?r, "done");
            Ok(Answer::Reply(r))
        }
        Err(e @ PrivOpsError::Refused { .. }) => {
            tracing::warn!(caller_uid = uid, op = name, error = %e, "refused");
            err(WireErrorKind::Refused, refusal(e))
        }
        Err(e) => {
            let msg = chain(&e);
            tracing::warn!(caller_uid = uid, op = name, error = %msg, "failed");
            err(WireErrorKind::Failed, msg)
        }
    }
}

fn refusal(e: PrivOpsError) -> String {
    match e {
        PrivOpsError::Refused { reason, .. } => reason,
        other => chain(&other),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The policy a helper built from `policy` enforces (for logs).
pub fn describe(policy: &Policy) -> String {
    format!(
        "prefix {:?}, dirs {} and {}, subnet {}/{}, VMM {}",
        policy.device_prefix,
        policy.state_dir.display(),
        policy.runtime_dir.display(),
        policy.subnet.0,
        policy.subnet.1,
        policy.vmm_binary.display()
    )
}
