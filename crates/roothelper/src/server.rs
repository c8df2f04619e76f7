//! The helper's socket server.
//!
//! - [`bind`] takes an exclusive `flock` on `<socket>.lock` first (a second
//!   `bangerd-root` on the same socket refuses to start and names the pid
//!   that serves it), then binds the socket in a directory only the helper
//!   may write (`/run/banger-root`, root-owned, not writable by group or
//!   others), owned by the owner uid, mode 0600: only the owner and root
//!   can connect.
//! - [`serve`] checks each peer's `SO_PEERCRED` right after `accept`: a uid
//!   that is neither the owner nor root gets one `Unauthorized` frame
//!   (written without blocking, without reading its request) and is closed
//!   at once; it never holds a slot. Served uids get at most
//!   [`ServeOptions::max_per_uid`] connections each, so the owner cannot
//!   starve root and root cannot starve the owner.
//! - A request has one deadline from its first byte to its last
//!   ([`ServeOptions::request_timeout`]), a connection waits at most
//!   [`ServeOptions::idle_timeout`] for the next request, and each answer
//!   is written within the request timeout.
//! - `accept` errors (out of descriptors) back off exponentially up to
//!   1 s and are logged at most once a second with a count of the ones
//!   not logged; refused connections are logged the same way.
//!
//! Each request is validated against the policy before it is performed
//! through [`LocalPrivOps`]; every operation is logged with its caller.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banger_privops::wire::{
    Answer, Call, FrameError, MAX_REQUEST, PROTOCOL_VERSION, RemoteError, WireErrorKind,
    WireResponse, decode_request, read_frame_within, write_frame_within,
};
use banger_privops::{LocalPrivOps, Policy, PrivOpsError, PrivilegedOps};

/// Connections served at once per uid (the owner and root each get this
/// many); more are answered with an error and closed.
pub const MAX_PER_UID: usize = 32;

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Something exists at the socket path and is not a socket.
    #[error("{path} exists and is not a socket; remove it or configure another helper_socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another helper holds the lock of this socket.
    #[error(
        "bangerd-root already runs ({}) on {}; stop it first: systemctl stop bangerd-root",
        pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}")),
        socket.display()
    )]
    AlreadyRunning {
        /// The socket it serves.
        socket: PathBuf,
        /// Its pid, as written in the lock file.
        pid: Option<i32>,
    },
    /// The socket's directory could be changed by someone else.
    #[error(
        "{path} is {problem}: the helper's socket must be in a directory only the helper's user can change (the default /run/banger-root is root:root 0755); fix its owner and mode or choose another --socket"
    )]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
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

/// Who may connect and how long requests may take.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The only non-root uid served.
    pub owner_uid: u32,
    /// Deadline of one request frame, from its first byte to its last; also
    /// bounds writing each answer.
    pub request_timeout: Duration,
    /// How long a connection may wait before its next request starts.
    pub idle_timeout: Duration,
    /// Connections served at once for each uid.
    pub max_per_uid: usize,
}

impl ServeOptions {
    /// The defaults for `owner_uid`: 30 s per request, 10 s idle,
    /// [`MAX_PER_UID`] connections per uid.
    pub fn new(owner_uid: u32) -> ServeOptions {
        ServeOptions {
            owner_uid,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
            max_per_uid: MAX_PER_UID,
        }
    }
}

/// A bound helper socket and the instance lock that guards it (held for
/// as long as this value lives).
#[derive(Debug)]
pub struct Bound {
    listener: UnixListener,
    _lock: std::fs::File,
    socket: PathBuf,
}

impl Bound {
    /// The socket's path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// The lock file of the helper serving `socket`: `<socket>.lock`
/// (`/run/banger-root/root.lock` for the default socket).
pub fn lock_path(socket: &Path) -> PathBuf {
    socket.with_extension("lock")
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ServerError {
    let path = path.to_path_buf();
    move |source| ServerError::Io {
        action,
        path,
        source,
    }
}

/// Create `dir` (0755) if missing; refuse it unless this process's user
/// owns it and neither group nor others may write it.
fn check_dir(dir: &Path) -> Result<(), ServerError> {
    if !dir.exists() {
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        let made = std::fs::create_dir_all(dir);
        nix::sys::stat::umask(old);
        made.map_err(io_err("create", dir))?;
    }
    let m = std::fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?;
    let me = nix::unistd::geteuid().as_raw();
    let problem = if !m.is_dir() {
        Some("not a directory".to_string())
    } else if m.uid() != me {
        Some(format!("owned by uid {} (not uid {me})", m.uid()))
    } else if m.mode() & 0o022 != 0 {
        Some(format!(
            "writable by group or others (mode {:o})",
            m.mode() & 0o7777
        ))
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ServerError::UnsafeDir {
            path: dir.to_path_buf(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Take the instance lock of `socket` (see [`lock_path`]): an exclusive
/// `flock`, held by the returned file, with this process's pid written in.
fn take_lock(socket: &Path) -> Result<std::fs::File, ServerError> {
    let path = lock_path(socket);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err("open the lock file", &path))?;
    if file.try_lock().is_err() {
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        return Err(ServerError::AlreadyRunning {
            socket: socket.to_path_buf(),
            pid: text.trim().parse().ok(),
        });
    }
    file.set_len(0).map_err(io_err("truncate", &path))?;
    write!(file, "{}", std::process::id()).map_err(io_err("write", &path))?;
    Ok(file)
}

/// Bind `socket` for the helper serving `owner_uid`: the parent directory
/// is created (0755) if missing and must be owned by this process's user
/// and not writable by group or others; the instance lock is taken before
/// anything else is touched ([`ServerError::AlreadyRunning`] when another
/// helper holds it); then a stale socket is replaced and the new one is
/// created with no group/other bits, owned by `owner_uid`, mode 0600.
/// No other directory is ever changed.
pub fn bind(socket: &Path, owner_uid: u32) -> Result<Bound, ServerError> {
    let parent = socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    check_dir(parent)?;
    let lock = take_lock(socket)?;
    match socket.symlink_metadata() {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(socket).map_err(io_err("remove stale socket", socket))?
        }
        Ok(_) => {
            return Err(ServerError::NotASocket {
                path: socket.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(socket);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(io_err("bind", socket))?;
    if owner_uid != nix::unistd::geteuid().as_raw() {
        std::os::unix::fs::chown(socket, Some(owner_uid), None).map_err(io_err("chown", socket))?;
    }
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod", socket))?;
    Ok(Bound {
        listener,
        _lock: lock,
        socket: socket.to_path_buf(),
    })
}

/// At most one log line per interval; counts the ones it held back.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// One line per `interval`.
    pub fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged at `now` (`n` lines were held
    /// back since the last one), `None` when this one is held back.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Exponential pause after failed `accept`s: 5 ms doubling up to
/// [`AcceptBackoff::MAX`], back to the start after a success.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff { next: Self::FIRST }
    }
}

impl AcceptBackoff {
    /// The first pause.
    pub const FIRST: Duration = Duration::from_millis(5);
    /// The longest pause.
    pub const MAX: Duration = Duration::from_secs(1);

    /// An accept failed: how long to pause before the next one.
    pub fn failed(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        pause
    }

    /// An accept succeeded.
    pub fn succeeded(&mut self) {
        self.next = Self::FIRST;
    }
}

/// Connections held per uid.
#[derive(Debug, Default)]
struct Slots {
    held: Mutex<HashMap<u32, usize>>,
}

/// One held slot; released on drop.
struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    fn take(self: &Arc<Self>, uid: u32, max: usize) -> Option<Slot> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(uid).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            slots: Arc::clone(self),
            uid,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.uid);
            }
        }
    }
}

/// Answer `stream` with `result` in one non-blocking write and close it:
/// a refused or surplus peer never makes the server wait.
fn answer_and_close(stream: UnixStream, result: Result<Answer, RemoteError>) {
    let resp = WireResponse {
        version: PROTOCOL_VERSION,
        result,
    };
    let mut frame = Vec::new();
    if banger_privops::wire::write_frame(&mut frame, &resp).is_ok()
        && stream.set_nonblocking(true).is_ok()
    {
        let _ = (&stream).write(&frame);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Serve `bound` forever, one thread per admitted connection. Keeps the
/// instance lock for as long as it runs.
pub fn serve(bound: Bound, ops: LocalPrivOps, opts: ServeOptions) {
    let ops = Arc::new(ops);
    let slots = Arc::new(Slots::default());
    let mut backoff = AcceptBackoff::default();
    let mut accept_log = LogLimiter::new(Duration::from_secs(1));
    let mut refusal_log = LogLimiter::new(Duration::from_secs(1));
    loop {
        let stream = match bound.listener.accept() {
            Ok((s, _)) => {
                backoff.succeeded();
                s
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let pause = backoff.failed();
                if let Some(suppressed) = accept_log.allow(Instant::now()) {
                    tracing::warn!(
                        error = %e,
                        suppressed,
                        pause_ms = pause.as_millis() as u64,
                        "accept failed; backing off"
                    );
                }
                std::thread::sleep(pause);
                continue;
            }
        };
        admit(stream, &ops, &opts, &slots, &mut refusal_log);
    }
}

/// Check the peer of a fresh connection and either close it at once or
/// hand it, with a slot of its uid, to a connection thread.
fn admit(
    stream: UnixStream,
    ops: &Arc<LocalPrivOps>,
    opts: &ServeOptions,
    slots: &Arc<Slots>,
    refusal_log: &mut LogLimiter,
) {
    let cred = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials);
    let (uid, pid) = match cred {
        Ok(c) => (c.uid(), c.pid()),
        Err(e) => {
            if let Some(suppressed) = refusal_log.allow(Instant::now()) {
                tracing::warn!(error = %e, suppressed, "cannot read peer credentials; closed");
            }
            return;
        }
    };
    if uid != opts.owner_uid && uid != 0 {
        if let Some(suppressed) = refusal_log.allow(Instant::now()) {
            tracing::warn!(
                caller_uid = uid,
                caller_pid = pid,
                suppressed,
                "refused connection from a uid that is neither the owner nor root"
            );
        }
        answer_and_close(
            stream,
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
    let Some(slot) = slots.take(uid, opts.max_per_uid) else {
        if let Some(suppressed) = refusal_log.allow(Instant::now()) {
            tracing::warn!(
                caller_uid = uid,
                caller_pid = pid,
                suppressed,
                limit = opts.max_per_uid,
                "too many connections from this uid; refused one"
            );
        }
        answer_and_close(
            stream,
            err(
                WireErrorKind::Failed,
                format!(
                    "uid {uid} already has {} connections to bangerd-root (the limit per uid); retry when one ends",
                    opts.max_per_uid
                ),
            ),
        );
        return;
    };
    let (ops, opts) = (Arc::clone(ops), opts.clone());
    let spawned = std::thread::Builder::new()
        .name("conn".into())
        .spawn(move || {
            let _slot = slot;
            handle(stream, &ops, &opts, uid, pid);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a connection thread");
    }
}

fn reply(stream: &UnixStream, result: Result<Answer, RemoteError>, within: Duration) -> bool {
    let resp = WireResponse {
        version: PROTOCOL_VERSION,
        result,
    };
    write_frame_within(stream, &resp, within).is_ok()
}

fn err(kind: WireErrorKind, message: impl Into<String>) -> Result<Answer, RemoteError> {
    Err(RemoteError {
        kind,
        message: message.into(),
    })
}

/// Serve one admitted connection of `uid`: requests until the peer
/// closes, errs, idles past [`ServeOptions::idle_timeout`] or lets a
/// request run past [`ServeOptions::request_timeout`].
pub fn handle(stream: UnixStream, ops: &LocalPrivOps, opts: &ServeOptions, uid: u32, pid: i32) {
    loop {
        let body = match read_frame_within(
            &stream,
            MAX_REQUEST,
            opts.idle_timeout,
            opts.request_timeout,
        ) {
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
                    &stream,
                    err(
                        WireErrorKind::TooLarge,
                        format!("request of {len} bytes exceeds the limit of {max} bytes"),
                    ),
                    opts.request_timeout,
                );
                return;
            }
            Err(e @ FrameError::Deadline(_)) => {
                tracing::warn!(caller_uid = uid, caller_pid = pid, error = %e, "request cut at its deadline");
                return;
            }
            Err(e) => {
                tracing::debug!(caller_uid = uid, error = %e, "connection ended");
                return;
            }
        };
        let result = answer(&body, ops, uid, pid);
        if !reply(&stream, result, opts.request_timeout) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_to_a_second_and_resets() {
        let mut b = AcceptBackoff::default();
        let pauses: Vec<_> = (0..10).map(|_| b.failed()).collect();
        assert_eq!(pauses[0], AcceptBackoff::FIRST);
        assert_eq!(pauses[1], AcceptBackoff::FIRST * 2);
        assert!(pauses.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*pauses.last().unwrap(), AcceptBackoff::MAX);
        assert_eq!(b.failed(), AcceptBackoff::MAX);
        b.succeeded();
        assert_eq!(b.failed(), AcceptBackoff::FIRST);
    }

    #[test]
    fn log_limiter_allows_one_line_per_interval_and_counts_the_rest() {
        let mut l = LogLimiter::new(Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        for i in 1..=500 {
            assert_eq!(l.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(l.allow(t0 + Duration::from_millis(1000)), Some(500));
        assert_eq!(l.allow(t0 + Duration::from_millis(1001)), None);
        assert_eq!(l.allow(t0 + Duration::from_millis(2500)), Some(1));
    }

    #[test]
    fn slots_are_capped_per_uid_and_released_on_drop() {
        let slots = Arc::new(Slots::default());
        let owner: Vec<_> = (0..3).map(|_| slots.take(1000, 3).unwrap()).collect();
        assert!(slots.take(1000, 3).is_none(), "the owner's fourth");
        let root = slots.take(0, 3);
        assert!(root.is_some(), "root still gets a slot");
        drop(owner);
        assert!(slots.take(1000, 3).is_some());
        drop(root);
        assert!(slots.held.lock().unwrap().get(&0).is_none());
    }

    #[test]
    fn a_second_bind_is_refused_while_the_first_holds_the_lock() {
        let t = tempfile::tempdir().unwrap();
        let socket = t.path().join("root.sock");
        let me = nix::unistd::geteuid().as_raw();
        let first = bind(&socket, me).unwrap();
        let second = bind(&socket, me).unwrap_err();
        let msg = second.to_string();
        assert!(
            msg.contains(&format!("already runs (pid {})", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("systemctl stop bangerd-root"), "{msg}");
        // The first one's socket was not touched: it still accepts.
        UnixStream::connect(&socket).unwrap();
        assert!(first.listener.accept().is_ok());
        drop(first);
        let third = bind(&socket, me);
        assert!(third.is_ok(), "{third:?}");
    }

    #[test]
    fn bind_refuses_a_directory_others_may_change() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let me = nix::unistd::geteuid().as_raw();
        let e = bind(&open.join("root.sock"), me).unwrap_err();
        assert!(matches!(e, ServerError::UnsafeDir { .. }), "{e:?}");
        assert!(!open.join("root.lock").exists());
        // A missing directory is created 0755 and the socket is 0600.
        let fresh = t.path().join("new/dir");
        let b = bind(&fresh.join("root.sock"), me).unwrap();
        let m = std::fs::metadata(&fresh).unwrap();
        assert_eq!(m.mode() & 0o777, 0o755);
        let m = std::fs::metadata(b.socket()).unwrap();
        assert_eq!(m.mode() & 0o777, 0o600);
    }
}
