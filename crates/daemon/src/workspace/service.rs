//! `WorkspaceService`: the guest-side work of `workspace.prepare` /
//! `workspace.export`, file sync, guest ports and the readiness wait.
//! The operations live in `workspace_prepare.rs`, `workspace_export.rs`,
//! `guest_files.rs`, `guest_ports.rs` and `workspace/ready.rs`; this file holds
//! the service's state, its seams and the two-phase snapshot.
//!
//! It holds no pointer to `VMService`: what it needs from VMs comes through
//! the [`VmLookup`] trait, declared here and implemented by `StoreVmLookup`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use banger_api::Vm;

use crate::common::error::DaemonError;
use crate::common::lockset::VmLockSet;
use crate::workspace::guest_config::GuestConfig;
use crate::workspace::ssh::{
    GuestDial, GuestSshError, GuestTarget, SshClient, WaitForSsh, ensure_client_files,
};

/// What the workspace service needs to know about VMs.
pub trait VmLookup: Send + Sync {
    /// Resolve a VM by name or id.
    fn resolve_vm(&self, name_or_id: &str) -> Result<Vm, DaemonError>;
    /// Whether the VM's VMM is alive right now.
    fn is_alive(&self, vm_id: &str) -> bool;
    /// `VMService.vm_locks`, taken only to validate and snapshot.
    fn vm_locks(&self) -> &VmLockSet;
    /// Every VM (for the ssh_config include).
    fn list_vms(&self) -> Result<Vec<Vm>, DaemonError>;
    /// The running VM's hybrid-vsock socket, if its VMM has one (the guest
    /// agent is asked there first).
    fn vsock_socket(&self, _vm_id: &str) -> Option<PathBuf> {
        None
    }
    /// Whether the running VM's VMM has a network card (a TAP).
    fn has_nic(&self, _vm_id: &str) -> bool {
        true
    }
}

/// The seams and settings the service is built over.
#[derive(Clone)]
pub struct WorkspaceDeps {
    /// `Daemon::guest_dial`.
    pub dial: Arc<dyn GuestDial>,
    /// `Daemon::guest_wait_for_ssh`.
    pub wait_for_ssh: WaitForSsh,
    /// The OpenSSH client settings (argv for `vm ssh`, the include).
    pub ssh: SshClient,
    /// `[guest]`.
    pub guest: GuestConfig,
    /// `<state_dir>/vms`: workspace manifests live in
    /// `<vms_dir>/<id>/workspaces/`, so they go with the VM.
    pub vms_dir: PathBuf,
    /// The owner's home (file sync, git identity).
    pub home: PathBuf,
}

/// Errors of workspace operations.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceOpError {
    /// Git inspection failed.
    #[error(transparent)]
    Git(#[from] banger_workspace::GitError),
    /// The manifest could not be built or read.
    #[error(transparent)]
    Manifest(#[from] banger_workspace::ManifestError),
    /// SSH failed.
    #[error(transparent)]
    Ssh(#[from] GuestSshError),
    /// Export could not land.
    #[error(transparent)]
    Export(#[from] banger_workspace::export::ExportError),
    /// A file-sync path was refused.
    #[error(transparent)]
    HomePath(#[from] banger_workspace::homepath::HomePathError),
    /// The guest-side script failed.
    #[error("on VM {vm}, {what} failed (exit {code}): {stderr}")]
    Guest {
        /// VM name.
        vm: String,
        /// What was being done.
        what: &'static str,
        /// Exit code.
        code: i32,
        /// Its stderr.
        stderr: String,
    },
    /// Bad input (a path, a sync list entry); nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// The VM is not running, or the export has no recorded base; nothing
    /// changed.
    #[error("{0}")]
    Conflict(String),
    /// A worker thread failed (the conversion into `DaemonError` says
    /// "internal error", as for every internal kind).
    #[error("{0}")]
    Internal(String),
    /// The VM lookup (`VmLookup`, the VM service's) failed.
    #[error(transparent)]
    Lookup(#[from] DaemonError),
    /// Local I/O.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl WorkspaceOpError {
    /// The RPC kind this error answers with.
    pub fn kind(&self) -> banger_api::ErrorKind {
        use banger_api::ErrorKind;
        use banger_workspace::GitError;
        use banger_workspace::export::ExportError as X;
        match self {
            WorkspaceOpError::Git(GitError::NotARepo(_) | GitError::GitFile(_))
            | WorkspaceOpError::HomePath(_)
            | WorkspaceOpError::Export(X::BadBranch(_))
            | WorkspaceOpError::Invalid(_) => ErrorKind::InvalidArgument,
            WorkspaceOpError::Ssh(GuestSshError::HostKeyChanged { .. })
            | WorkspaceOpError::Export(
                X::CheckedOut(..) | X::BaseMissing { .. } | X::NotFastForward { .. },
            )
            | WorkspaceOpError::Conflict(_) => ErrorKind::Conflict,
            WorkspaceOpError::Lookup(e) => e.kind(),
            // The guest did not answer (no banner, ssh could not connect):
            // not a failure of banger's.
            WorkspaceOpError::Ssh(
                GuestSshError::NoBanner { .. } | GuestSshError::Failed { .. },
            ) => ErrorKind::Unreachable,
            _ => ErrorKind::Internal,
        }
    }
}

/// The workspace service's public boundary: its request methods answer
/// with `DaemonError`. A lookup failure passes through as it was; any other
/// error becomes the common error of its kind with its message.
impl From<WorkspaceOpError> for DaemonError {
    fn from(e: WorkspaceOpError) -> Self {
        match e {
            WorkspaceOpError::Lookup(d) => d,
            e => DaemonError::of_kind(e.kind(), &e),
        }
    }
}

/// Writes a guest command's stdin; [`GuestHello`] gives what the command
/// printed so far, for a feed that must hear from the guest first.
pub(crate) type Feed<'a> =
    dyn FnMut(&mut dyn Write, &mut GuestHello) -> std::io::Result<()> + Send + 'a;

/// A guest command's stdout as it arrives, for the feed (the whole output
/// still goes to the caller's writer as well).
pub(crate) struct GuestHello {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    /// Received and not yet taken.
    buf: Vec<u8>,
}

impl GuestHello {
    /// Receive until `done(buf)` gives the length to take, or `timeout`.
    /// Between two calls of `done` the buffer only grows, so `done` may
    /// resume where it stopped.
    fn take_until(
        &mut self,
        timeout: std::time::Duration,
        mut done: impl FnMut(&[u8]) -> Option<usize>,
    ) -> std::io::Result<Vec<u8>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(n) = done(&self.buf) {
                let rest = self.buf.split_off(n);
                return Ok(std::mem::replace(&mut self.buf, rest));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.buf.extend_from_slice(&chunk),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    return Err(std::io::Error::other(
                        "the guest command printed nothing in time",
                    ));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(std::io::Error::other(
                        "the guest command ended before printing what was expected",
                    ));
                }
            }
        }
    }

    /// Wait up to `timeout` for the first line (without its newline).
    pub(crate) fn first_line(&mut self, timeout: std::time::Duration) -> std::io::Result<String> {
        let line = self.take_until(timeout, |b| {
            b.iter().position(|c| *c == b'\n').map(|i| i + 1)
        })?;
        Ok(String::from_utf8_lossy(&line[..line.len() - 1]).into_owned())
    }

    /// Wait up to `timeout` for a NUL-separated listing ended by an empty
    /// record, and take it (terminator included).
    pub(crate) fn listing(&mut self, timeout: std::time::Duration) -> std::io::Result<Vec<u8>> {
        // Where the current record starts, and how far was looked at.
        let (mut start, mut pos) = (0, 0);
        self.take_until(timeout, move |b| {
            while pos < b.len() {
                if b[pos] == 0 {
                    if pos == start {
                        return Some(pos + 1);
                    }
                    start = pos + 1;
                }
                pos += 1;
            }
            None
        })
    }
}

/// Passes everything through to `out` and the feed, until the feed is done.
struct Tee<'a> {
    out: &'a mut (dyn Write + Send),
    tx: Option<std::sync::mpsc::Sender<Vec<u8>>>,
}

impl Write for Tee<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(tx) = &self.tx
            && tx.send(buf[..n].to_vec()).is_err()
        {
            // The feed is done listening.
            self.tx = None;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// What a guest command returned.
pub(crate) struct GuestRun {
    pub code: i32,
    pub stderr: String,
}

/// The workspace service.
pub struct WorkspaceService {
    /// Per-VM locks scoped to workspace operations. Lock order: a caller
    /// takes `VMService.vm_locks[id]` only to validate and snapshot, releases
    /// it, then takes this one for the guest I/O; the two are never held
    /// together, so `vm stop` never waits behind a long import.
    pub workspace_locks: VmLockSet,
    pub(crate) vms: Arc<dyn VmLookup>,
    pub(crate) deps: WorkspaceDeps,
    /// VMMs whose vsock had no agent for `vm ports` (probed once per run).
    pub(crate) no_agent: crate::workspace::ports::NoAgentMemo,
    /// Guest accounts and git identity already computed (authsync.rs).
    pub(crate) identity: crate::workspace::authsync::IdentityCache,
}

impl WorkspaceService {
    /// Build the service over its VM seam and its guest seams.
    pub fn new(vms: Arc<dyn VmLookup>, deps: WorkspaceDeps) -> Self {
        Self {
            workspace_locks: VmLockSet::default(),
            vms,
            deps,
            no_agent: Default::default(),
            identity: Default::default(),
        }
    }

    /// The VM a workspace operation targets, refused unless it runs.
    pub fn running_vm(&self, name_or_id: &str) -> Result<Vm, WorkspaceOpError> {
        let vm = self.vms.resolve_vm(name_or_id)?;
        if !self.vms.is_alive(&vm.id) {
            return Err(WorkspaceOpError::Conflict(format!(
                "VM {} is not running; start it with `banger vm start {}`",
                vm.name, vm.name
            )));
        }
        self.check_reachable(&vm)?;
        Ok(vm)
    }

    /// Refuse guest access to a VM without a network card unless its
    /// address is on a directly connected link of the daemon's namespace:
    /// banger never dials a guest address through the host's default
    /// route (see [`crate::common::route`]).
    pub fn check_reachable(&self, vm: &Vm) -> Result<(), WorkspaceOpError> {
        use crate::common::route::{Reach, reach};
        if self.vms.has_nic(&vm.id) {
            return Ok(());
        }
        let why = match reach(vm.guest_ip) {
            Reach::Direct { .. } => return Ok(()),
            Reach::Gateway { dev, gateway } => {
                format!("{} would leave through {dev} via {gateway}", vm.guest_ip)
            }
            Reach::Unreachable => format!("no route to {}", vm.guest_ip),
        };
        Err(WorkspaceOpError::Conflict(format!(
            "VM {name} has no network card (the daemon runs with network.enabled = false) and {why}: \
             banger does not dial guests through the host's network; enable the guest network \
             (network.enabled = true), restart the daemon and `banger vm restart {name}`, \
             or read its console with `banger vm logs {name}`",
            name = vm.name
        )))
    }

    /// Phase one of every guest operation: take `vm_locks[id]` only to
    /// validate that the VM runs and copy its fields, then release it.
    pub async fn snapshot(&self, name_or_id: &str) -> Result<Vm, WorkspaceOpError> {
        let id = self.vms.resolve_vm(name_or_id)?.id;
        let _vm_lock = self.vms.vm_locks().lock(&id).await;
        self.running_vm(&id)
    }

    /// Where `vm` answers SSH.
    pub fn target(&self, vm: &Vm) -> GuestTarget {
        GuestTarget {
            vm_name: vm.name.clone(),
            vm_id: vm.id.clone(),
            addr: SocketAddr::new(vm.guest_ip.into(), self.deps.guest.ssh_port),
        }
    }

    /// Run `script` on the guest: `feed` writes its stdin, its stdout goes
    /// to `out`. Blocking; call from `spawn_blocking`. An SSH-level failure
    /// (exit 255) becomes a classified [`GuestSshError`].
    pub(crate) fn run_guest(
        &self,
        target: &GuestTarget,
        script: &str,
        feed: Option<&mut Feed<'_>>,
        out: &mut (dyn Write + Send),
    ) -> Result<GuestRun, WorkspaceOpError> {
        ensure_client_files(&self.deps.ssh)?;
        let mut cmd = self.deps.dial.command(target, script);
        cmd.stdin(if feed.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let io = |source| WorkspaceOpError::Io {
            what: "cannot run ssh for",
            path: PathBuf::from(&target.vm_name),
            source,
        };
        let mut child = cmd.spawn().map_err(io)?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let stdin = child.stdin.take();
        let (fed, copied, err_text) = std::thread::scope(|s| {
            let err_t = s.spawn(move || {
                let mut v = Vec::new();
                let _ = stderr.read_to_end(&mut v);
                String::from_utf8_lossy(&v).into_owned()
            });
            let (tx, rx) = std::sync::mpsc::channel();
            let mut hello = GuestHello {
                rx,
                buf: Vec::new(),
            };
            let out_t = s.spawn(move || {
                let mut w = Tee { out, tx: Some(tx) };
                std::io::copy(&mut stdout, &mut w)
            });
            let fed = match (feed, stdin) {
                (Some(f), Some(stdin)) => {
                    let mut w = std::io::BufWriter::with_capacity(1 << 20, stdin);
                    f(&mut w, &mut hello).and_then(|()| w.flush())
                }
                _ => Ok(()),
            };
            // Stop the copies to the feed (an export's bundle is large).
            drop(hello);
            (fed, out_t.join(), err_t.join().unwrap_or_default())
        });
        let status = child.wait().map_err(io)?;
        let code = status.code().unwrap_or(-1);
        if code == 255 {
            return Err(self.deps.dial.classify(target, &err_text).into());
        }
        match copied {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(io(e)),
            Err(_) => return Err(io(std::io::Error::other("output thread panicked"))),
        }
        if let Err(e) = fed
            && code == 0
        {
            return Err(io(e));
        }
        Ok(GuestRun {
            code,
            stderr: err_text,
        })
    }
}

/// The host path of a workspace request, which must be absolute (the CLI
/// sends its own absolute path; relative ones would be the daemon's cwd).
pub(crate) fn absolute_path(path: &str) -> Result<PathBuf, WorkspaceOpError> {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        Ok(p)
    } else {
        Err(WorkspaceOpError::Invalid(format!(
            "workspace path {path:?} must be absolute"
        )))
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;
    use crate::common::error::to_rpc;
    use banger_api::ErrorKind;

    #[test]
    fn converts_at_the_boundary_with_its_message_and_kind() {
        let cases = [
            (
                WorkspaceOpError::Invalid("bad path".into()),
                ErrorKind::InvalidArgument,
                "bad path",
            ),
            (
                WorkspaceOpError::Conflict("VM dev is not running".into()),
                ErrorKind::Conflict,
                "VM dev is not running",
            ),
            (
                WorkspaceOpError::Internal("sync task: panicked".into()),
                ErrorKind::Internal,
                "internal error: sync task: panicked",
            ),
            (
                WorkspaceOpError::Lookup(DaemonError::NotFound("no VM named \"dev\"".into())),
                ErrorKind::NotFound,
                "no VM named \"dev\"",
            ),
            // A guest that does not answer is not banger's failure.
            (
                WorkspaceOpError::Ssh(GuestSshError::NoBanner {
                    addr: "172.30.0.2:22".parse().unwrap(),
                    secs: 5,
                    reason: "connection refused".into(),
                }),
                ErrorKind::Unreachable,
                "no SSH banner from 172.30.0.2:22 within 5s: connection refused",
            ),
        ];
        for (e, kind, message) in cases {
            assert_eq!(e.kind(), kind);
            let rpc = to_rpc(&DaemonError::from(e));
            assert_eq!((rpc.kind, rpc.message.as_str()), (kind, message));
        }
        let e = DaemonError::from(WorkspaceOpError::Invalid("x".into()));
        assert!(matches!(e, DaemonError::Invalid(_)));
    }
}
