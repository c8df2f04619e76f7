//! The in-process adapter: performs privileged operations in the calling
//! process (the dev path, or a daemon that runs as root in tests).

use std::fs::{File, OpenOptions};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::op::{PrivOp, PrivReply, SpawnVmm, VmmSignal};
use crate::{Policy, PrivOpsError, PrivilegedOps, vmm_matches};

/// Performs [`PrivOp`]s directly, after checking them against its
/// [`Policy`] exactly as `bangerd-root` does.
#[derive(Debug, Clone)]
pub struct LocalPrivOps {
    policy: Policy,
    proc_root: PathBuf,
}

impl LocalPrivOps {
    /// An adapter enforcing `policy`, reading process facts from `/proc`.
    pub fn new(policy: Policy) -> Self {
        Self::with_proc_root(policy, "/proc")
    }

    /// Like [`new`](Self::new) with another `/proc` (tests).
    pub fn with_proc_root(policy: Policy, proc_root: impl Into<PathBuf>) -> Self {
        Self {
            policy,
            proc_root: proc_root.into(),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn spawn(&self, spec: SpawnVmm) -> Result<PrivReply, PrivOpsError> {
        let refuse = |reason: String| PrivOpsError::Refused {
            op: "spawn_vmm",
            reason,
        };
        let id_ok = !spec.id.is_empty()
            && spec.id.len() <= 64
            && spec
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_ok {
            return Err(refuse(format!("invalid VMM id {:?}", spec.id)));
        }
        if !spec.binary.is_file() {
            return Err(refuse(format!("{} is not a file", spec.binary.display())));
        }
        if spec.api_sock.symlink_metadata().is_ok() {
            return Err(refuse(format!(
                "API socket {} already exists",
                spec.api_sock.display()
            )));
        }
        let run_as = self.run_as();
        // Open the logs with the owner's filesystem identity: a symlink the
        // owner planted cannot make root write elsewhere, and new files are
        // the owner's.
        let (console, stderr) = as_owner(run_as, || {
            Ok((append(&spec.console_log)?, append(&spec.stderr_log)?))
        })?;
        let mut cmd = Command::new(&spec.binary);
        if let Some((uid, gid)) = run_as {
            // std also drops supplementary groups (setgroups(0)) when uid is set.
            cmd.uid(uid).gid(gid);
        }
        cmd.arg("--api-sock")
            .arg(&spec.api_sock)
            .arg("--id")
            .arg(&spec.id)
            .stdin(Stdio::null())
            .stdout(console)
            .stderr(stderr)
            .process_group(0);
        let mut child = cmd.spawn().map_err(|source| PrivOpsError::Spawn {
            binary: spec.binary.clone(),
            source,
        })?;
        let pid = child.id();
        let status_file = spec.exit_status_file.clone();
        // Reap the child so it never lingers as a zombie, and leave its exit
        // status where the daemon (which may not be its parent) can read it.
        std::thread::Builder::new()
            .name(format!("reap-{pid}"))
            .spawn(move || {
                let line = match child.wait() {
                    Ok(st) => describe_exit(st),
                    Err(e) => format!("exit status unknown: {e}"),
                };
                // This thread only: write as the owner (see `as_owner`).
                let written = as_owner(run_as, || {
                    write_nofollow(&status_file, format!("{line}\n").as_bytes())
                });
                if let Err(e) = written {
                    tracing::warn!(pid, file = %status_file.display(), error = %e, "cannot record VMM exit status");
                }
            })
            .map_err(|source| PrivOpsError::Spawn {
                binary: spec.binary.clone(),
                source,
            })?;
        tracing::debug!(pid, binary = %spec.binary.display(), ?run_as, "spawned VMM");
        Ok(PrivReply::Spawned { pid })
    }

    /// `(uid, gid)` the VMM runs as: the owner's when this process is root
    /// and the owner is not (the helper on the system path), so the owner
    /// daemon can use the API socket and files; `None` keeps our identity.
    pub(crate) fn run_as(&self) -> Option<(u32, u32)> {
        let owner = self.policy.owner_uid;
        if !nix::unistd::geteuid().is_root() || owner == 0 {
            return None;
        }
        let gid = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(owner))
            .ok()
            .flatten()
            .map(|u| u.gid.as_raw())
            .unwrap_or(owner);
        Some((owner, gid))
    }

    fn signal(
        &self,
        pid: u32,
        api_sock: &Path,
        signal: VmmSignal,
    ) -> Result<PrivReply, PrivOpsError> {
        if pid <= 1 || pid > i32::MAX as u32 {
            return Err(PrivOpsError::Refused {
                op: "signal_vmm",
                reason: format!("invalid pid {pid}"),
            });
        }
        if !vmm_matches(&self.proc_root, pid, api_sock) {
            return Ok(PrivReply::Signalled { delivered: false });
        }
        let sig = match signal {
            VmmSignal::Term => Signal::SIGTERM,
            VmmSignal::Kill => Signal::SIGKILL,
        };
        match kill(Pid::from_raw(pid as i32), sig) {
            Ok(()) => Ok(PrivReply::Signalled { delivered: true }),
            Err(nix::Error::ESRCH) => Ok(PrivReply::Signalled { delivered: false }),
            Err(source) => Err(PrivOpsError::Signal { pid, source }),
        }
    }
}

impl PrivilegedOps for LocalPrivOps {
    fn execute(&self, op: PrivOp) -> Result<PrivReply, PrivOpsError> {
        match op.validate(&self.policy)? {
            PrivOp::SpawnVmm(spec) => self.spawn(spec),
            PrivOp::SignalVmm {
                pid,
                api_sock,
                signal,
            } => self.signal(pid, &api_sock, signal),
            PrivOp::EnsureBridge {
                name,
                gateway,
                prefix,
            } => crate::netlink::ensure_bridge(&self.policy, &name, gateway, prefix)
                .map(|()| PrivReply::Done),
            PrivOp::CreateTap { name, bridge } => {
                crate::net_op::create_tap(&self.policy, &name, &bridge).map(|()| PrivReply::Done)
            }
            PrivOp::DeleteLink { name } => crate::netlink::delete(&self.policy, &name)
                .map(|existed| PrivReply::Removed { existed }),
            PrivOp::ListLinks => {
                crate::netlink::list_bangers(&self.policy).map(|links| PrivReply::Links { links })
            }
            PrivOp::ApplyNat {
                bridge,
                network,
                prefix,
            } => crate::nat::apply(&bridge, network, prefix).map(|()| PrivReply::Done),
            PrivOp::RemoveNat => crate::nat::remove().map(|existed| PrivReply::Removed { existed }),
            PrivOp::SetIpForward { enabled } => crate::host::set_ip_forward(enabled)
                .map(|previous| PrivReply::Forwarding { previous }),
            PrivOp::ResolverRoute {
                bridge,
                dns,
                revert,
            } => {
                crate::netlink::check_bridge_if_present(&self.policy, "resolver_route", &bridge)?;
                crate::host::resolver_route(&bridge, dns, revert).map(|()| PrivReply::Done)
            }
            disk @ (PrivOp::LoopAttach { .. }
            | PrivOp::LoopDetach { .. }
            | PrivOp::DmCreateSnapshot { .. }
            | PrivOp::DmRemove { .. }
            | PrivOp::ListDisks) => crate::disk_op::execute(disk, &self.policy, self.run_as()),
        }
    }
}

/// Run `f` with this thread's filesystem uid/gid set to `run_as` (Linux
/// `setfsuid`/`setfsgid` are per thread), restoring ours afterwards; so
/// file access inside `f` is checked as the owner. `None`: just run `f`.
pub(crate) fn as_owner<T>(
    run_as: Option<(u32, u32)>,
    f: impl FnOnce() -> Result<T, PrivOpsError>,
) -> Result<T, PrivOpsError> {
    let Some((uid, gid)) = run_as else {
        return f();
    };
    let (my_uid, my_gid) = (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    );
    // SAFETY: plain syscalls changing only this thread's fs credentials.
    unsafe {
        libc::setfsgid(gid);
        libc::setfsuid(uid);
    }
    let out = f();
    // SAFETY: as above, restoring the previous values.
    unsafe {
        libc::setfsuid(my_uid);
        libc::setfsgid(my_gid);
    }
    out
}

fn write_nofollow(path: &Path, bytes: &[u8]) -> Result<(), PrivOpsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PrivOpsError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)
}

fn append(path: &Path) -> Result<File, PrivOpsError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| PrivOpsError::File {
            path: path.to_path_buf(),
            source,
        })
}

/// "exited with status N" or "killed by signal SIGX".
pub(crate) fn describe_exit(st: std::process::ExitStatus) -> String {
    if let Some(code) = st.code() {
        return format!("exited with status {code}");
    }
    match st.signal().map(Signal::try_from) {
        Some(Ok(sig)) => format!("killed by signal {sig}"),
        Some(Err(_)) => format!("killed by signal {}", st.signal().unwrap_or_default()),
        None => "exited".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(dir: &Path, binary: &str) -> LocalPrivOps {
        LocalPrivOps::new(Policy {
            device_prefix: "bg".into(),
            state_dir: dir.to_path_buf(),
            runtime_dir: dir.join("run"),
            subnet: (std::net::Ipv4Addr::new(172, 30, 0, 0), 24),
            owner_uid: 0,
            vmm_binary: PathBuf::from(binary),
        })
    }

    fn spec(dir: &Path, binary: &str) -> SpawnVmm {
        SpawnVmm {
            binary: PathBuf::from(binary),
            api_sock: dir.join("api.sock"),
            id: "vm-1".into(),
            console_log: dir.join("console.log"),
            stderr_log: dir.join("stderr.log"),
            exit_status_file: dir.join("exit"),
        }
    }

    #[test]
    fn refuses_bad_input_without_side_effects() {
        let t = tempfile::tempdir().unwrap();
        let ops = ops(t.path(), "/bin/true");
        let mut s = spec(t.path(), "/bin/true");
        s.id = "bad_id".into();
        assert!(matches!(
            ops.spawn_vmm(s),
            Err(PrivOpsError::Refused { .. })
        ));
        let s = spec(t.path(), "/bin/false");
        assert!(matches!(
            ops.spawn_vmm(s),
            Err(PrivOpsError::Refused { reason, .. }) if reason.contains("configured VMM binary")
        ));
        let mut s = spec(t.path(), "/bin/true");
        s.console_log = PathBuf::from("/etc/evil.log");
        assert!(matches!(
            ops.spawn_vmm(s),
            Err(PrivOpsError::Refused { .. })
        ));
        assert!(!Path::new("/etc/evil.log").exists());
        let missing = LocalPrivOps::new(Policy {
            vmm_binary: PathBuf::from("/nonexistent/fc"),
            ..ops.policy().clone()
        });
        assert!(matches!(
            missing.spawn_vmm(spec(t.path(), "/nonexistent/fc")),
            Err(PrivOpsError::Refused { .. })
        ));
        std::fs::write(t.path().join("api.sock"), "").unwrap();
        assert!(matches!(
            ops.spawn_vmm(spec(t.path(), "/bin/true")),
            Err(PrivOpsError::Refused { .. })
        ));
        assert!(!t.path().join("console.log").exists());
    }

    #[test]
    fn spawns_reaps_and_records_exit() {
        let t = tempfile::tempdir().unwrap();
        let ops = ops(t.path(), "/bin/false");
        // `false` ignores its arguments and exits 1.
        let pid = ops.spawn_vmm(spec(t.path(), "/bin/false")).unwrap();
        assert!(pid > 1);
        let exit = t.path().join("exit");
        for _ in 0..200 {
            if exit.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            std::fs::read_to_string(exit).unwrap(),
            "exited with status 1\n"
        );
    }

    #[test]
    fn signals_only_matching_processes() {
        let t = tempfile::tempdir().unwrap();
        let ops = ops(t.path(), "/bin/true");
        // A process whose cmdline does not carry our socket is never signalled.
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let delivered = ops
            .signal_vmm(child.id(), t.path().join("api.sock"), VmmSignal::Kill)
            .unwrap();
        assert!(!delivered);
        assert!(child.try_wait().unwrap().is_none(), "sleep must still run");
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            ops.signal_vmm(1, t.path().join("x"), VmmSignal::Kill)
                .is_err()
        );
    }

    #[test]
    fn spawns_as_the_owner_when_root() {
        use std::io::Write;
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !nix::unistd::geteuid().is_root() {
            let _ = writeln!(
                std::io::stderr(),
                "SKIP spawns_as_the_owner_when_root: needs root"
            );
            return;
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The state dir is the owner's; a symlink they plant must not make
        // root write through it.
        std::os::unix::fs::chown(t.path(), Some(65534), Some(65534)).unwrap();
        std::os::unix::fs::symlink("/etc/banger-evil-exit", t.path().join("exit")).unwrap();
        let script = t.path().join("vmm");
        std::fs::write(&script, "#!/bin/sh\nid -u; id -G\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = script.display().to_string();
        let mut policy = ops(t.path(), &bin).policy().clone();
        policy.owner_uid = 65534;
        let ops = LocalPrivOps::new(policy);
        // Validation refuses the planted (dangling) symlink...
        assert!(matches!(
            ops.spawn_vmm(spec(t.path(), &bin)),
            Err(PrivOpsError::Refused { .. })
        ));
        // ...and one planted after validation is not followed either.
        let pid = match ops.spawn(spec(t.path(), &bin)).unwrap() {
            PrivReply::Spawned { pid } => pid,
            other => panic!("{other:?}"),
        };
        for _ in 0..300 {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            !Path::new("/etc/banger-evil-exit").exists(),
            "the exit status did not follow the owner's symlink"
        );
        let out = std::fs::read_to_string(t.path().join("console.log")).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("65534"), "{out}");
        assert!(
            !lines.next().unwrap_or("").split(' ').any(|g| g == "0"),
            "root's groups dropped: {out}"
        );
        let meta = std::fs::metadata(t.path().join("console.log")).unwrap();
        assert_eq!(meta.uid(), 65534);
    }
}
