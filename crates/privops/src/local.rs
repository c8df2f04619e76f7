//! The in-process adapter: performs privileged operations in the calling
//! process (the dev path, or a daemon that runs as root in tests).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;

use crate::op::{PrivOp, PrivReply, SpawnVmm, VMM_LOCK_HELD, VmmSignal};
use crate::{Policy, PrivOpsError, PrivilegedOps};

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
        const OP: &str = "spawn_vmm";
        let refuse = |reason: String| PrivOpsError::Refused { op: OP, reason };
        let id_ok = !spec.id.is_empty()
            && spec.id.len() <= 64
            && spec
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_ok {
            return Err(refuse(format!("invalid VMM id {:?}", spec.id)));
        }
        if spec.binary != self.policy.vmm_binary {
            return Err(refuse(format!(
                "{} is not the configured VMM binary {}",
                spec.binary.display(),
                self.policy.vmm_binary.display()
            )));
        }
        if !spec.binary.is_file() {
            return Err(refuse(format!("{} is not a file", spec.binary.display())));
        }
        let run_as = self.run_as();
        // Every file is opened here, beneath banger's roots, with no symlink
        // followed and the owner's filesystem identity (so new files are the
        // owner's and nothing the owner cannot open is opened for them).
        let files = as_owner(run_as, || self.open_spawn_files(&spec))?;
        let mut cmd = Command::new(&spec.binary);
        if let Some((uid, gid)) = run_as {
            // std also drops supplementary groups (setgroups(0)) when uid is set.
            cmd.uid(uid).gid(gid);
        }
        let lock_fd = files.lock.as_raw_fd();
        cmd.arg("--api-sock")
            .arg(&spec.api_sock)
            .arg("--id")
            .arg(&spec.id)
            .stdin(Stdio::null())
            .stdout(files.console)
            .stderr(files.stderr)
            .process_group(0);
        // SAFETY: between fork and exec only `fcntl`, which is
        // async-signal-safe; it clears close-on-exec on the locked fd in
        // the child alone, so the VMM inherits the lock.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(lock_fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = cmd.spawn();
        // Our copy of the lock goes now (never `LOCK_UN`: the lock belongs
        // to the open file, which the VMM shares); it lives as long as the
        // VMM holds its copy.
        drop(files.lock);
        let mut child = spawned.map_err(|source| PrivOpsError::Spawn {
            binary: spec.binary.clone(),
            source,
        })?;
        let pid = child.id();
        // Not reaped before the reaper thread runs, so the pid is pinned
        // (at worst a zombie) while its start time is read.
        let start_time = match crate::proc::start_time(&self.proc_root, pid) {
            Some(t) => t,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(PrivOpsError::File {
                    path: self.proc_root.join(pid.to_string()).join("stat"),
                    source: std::io::Error::other("cannot read the new VMM's start time"),
                });
            }
        };
        let mut status_file = files.exit_status;
        // Reap the child so it never lingers as a zombie, and leave its exit
        // status where the daemon (which may not be its parent) can read it,
        // through the fd opened before the spawn.
        std::thread::Builder::new()
            .name(format!("reap-{pid}"))
            .spawn(move || {
                use std::io::Write;
                let line = match child.wait() {
                    Ok(st) => describe_exit(st),
                    Err(e) => format!("exit status unknown: {e}"),
                };
                if let Err(e) = status_file.write_all(format!("{line}\n").as_bytes()) {
                    tracing::warn!(pid, error = %e, "cannot record VMM exit status");
                }
            })
            .map_err(|source| PrivOpsError::Spawn {
                binary: spec.binary.clone(),
                source,
            })?;
        tracing::debug!(pid, start_time, binary = %spec.binary.display(), ?run_as, "spawned VMM");
        Ok(PrivReply::Spawned { pid, start_time })
    }

    /// Open what `SpawnVmm` names, beneath the policy's roots (see
    /// [`crate::beneath`]); call it with the owner's fs identity.
    fn open_spawn_files(&self, spec: &SpawnVmm) -> Result<SpawnFiles, PrivOpsError> {
        use nix::fcntl::OFlag;
        use nix::sys::stat::Mode;
        const OP: &str = "spawn_vmm";
        let owner = self.policy.owner_uid;
        let open = |path: &Path, flags: OFlag| -> Result<File, PrivOpsError> {
            let b = self.policy.beneath(OP, path)?;
            let fd = crate::beneath::open_beneath(
                &b,
                flags | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK,
                Mode::from_bits_truncate(0o640),
            )
            .map_err(|e| crate::beneath::open_error(OP, &b, e))?;
            let st =
                crate::beneath::stat_fd(&fd).map_err(|e| crate::beneath::open_error(OP, &b, e))?;
            if !crate::beneath::is_regular(&st) || !crate::beneath::owned_by(&st, owner) {
                return Err(PrivOpsError::Refused {
                    op: OP,
                    reason: format!(
                        "{} is not a regular file of uid {owner}",
                        b.display_path().display()
                    ),
                });
            }
            // Back to blocking I/O (O_NONBLOCK only kept a FIFO from hanging the open).
            nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags & !OFlag::O_CREAT))
                .map_err(|e| crate::beneath::open_error(OP, &b, e.into()))?;
            Ok(File::from(fd))
        };
        let lock = open(&spec.lock_file, OFlag::O_RDWR)?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(PrivOpsError::Refused {
                    op: OP,
                    reason: format!(
                        "{VMM_LOCK_HELD} (lock {} is held); stop or kill that VMM first",
                        spec.lock_file.display()
                    ),
                });
            }
            return Err(PrivOpsError::File {
                path: spec.lock_file.clone(),
                source: e,
            });
        }
        // The socket: its directory opened beneath (no symlink on the way),
        // the directory the owner's, and no entry of that name in it.
        let b = self.policy.beneath(OP, &spec.api_sock)?;
        let (dir, name) = crate::beneath::open_parent_beneath(&b)
            .map_err(|e| crate::beneath::open_error(OP, &b, e))?;
        let st =
            crate::beneath::stat_fd(&dir).map_err(|e| crate::beneath::open_error(OP, &b, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR || !crate::beneath::owned_by(&st, owner) {
            return Err(PrivOpsError::Refused {
                op: OP,
                reason: format!(
                    "the directory of {} is not a directory of uid {owner}",
                    spec.api_sock.display()
                ),
            });
        }
        match nix::sys::stat::fstatat(&dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(nix::Error::ENOENT) => {}
            Ok(_) => {
                return Err(PrivOpsError::Refused {
                    op: OP,
                    reason: format!("API socket {} already exists", spec.api_sock.display()),
                });
            }
            Err(e) => return Err(crate::beneath::open_error(OP, &b, e.into())),
        }
        let console = open(&spec.console_log, OFlag::O_WRONLY | OFlag::O_APPEND)?;
        let stderr = open(&spec.stderr_log, OFlag::O_WRONLY | OFlag::O_APPEND)?;
        let exit_status = open(&spec.exit_status_file, OFlag::O_WRONLY | OFlag::O_TRUNC)?;
        Ok(SpawnFiles {
            lock,
            console,
            stderr,
            exit_status,
        })
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
        start_time: u64,
        signal: VmmSignal,
    ) -> Result<PrivReply, PrivOpsError> {
        const OP: &str = "signal_vmm";
        let refuse = |reason: String| {
            tracing::warn!(op = OP, pid, start_time, reason = %reason, "refused");
            PrivOpsError::Refused { op: OP, reason }
        };
        if pid <= 1 || pid > i32::MAX as u32 {
            return Err(refuse(format!("invalid pid {pid}")));
        }
        let gone = Ok(PrivReply::Signalled { delivered: false });
        // The pidfd first: whatever /proc says below is about the process
        // it pins, as long as that process has not exited meanwhile.
        let pidfd = match pidfd_open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return gone,
            Err(e) => {
                return Err(PrivOpsError::Signal {
                    pid,
                    source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)),
                });
            }
        };
        // Read /proc with the owner's filesystem identity: `/proc/<pid>/exe`
        // of another uid's process needs CAP_SYS_PTRACE otherwise (the
        // kernel checks the fsuid), which bangerd-root's unit does not grant.
        let ident = as_owner(self.run_as(), || {
            Ok(crate::proc::read_identity(&self.proc_root, pid))
        })?;
        let Some(ident) = ident else {
            return gone;
        };
        if pidfd_exited(&pidfd) || ident.zombie {
            return gone;
        }
        let owner = self.policy.owner_uid;
        if ident.uid != owner || ident.euid != owner {
            return Err(refuse(format!(
                "process {pid} runs as uid {} (effective {}), not as the owner uid {owner}",
                ident.uid, ident.euid
            )));
        }
        if ident.start_time != start_time {
            return Err(refuse(format!(
                "process {pid} started at tick {}, not {start_time}: not the VMM named (a recycled pid)",
                ident.start_time
            )));
        }
        if !ident.runs(&self.policy.vmm_binary) {
            return Err(refuse(format!(
                "process {pid} is not running the configured VMM binary {}",
                self.policy.vmm_binary.display()
            )));
        }
        let sig = match signal {
            VmmSignal::Term => libc::SIGTERM,
            VmmSignal::Kill => libc::SIGKILL,
        };
        // SAFETY: pidfd_send_signal(pidfd, sig, NULL, 0) reads no memory of ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            )
        };
        if r == 0 {
            return Ok(PrivReply::Signalled { delivered: true });
        }
        match nix::Error::last() {
            nix::Error::ESRCH => gone,
            source => Err(PrivOpsError::Signal { pid, source }),
        }
    }
}

/// The files of a spawn, opened before it.
struct SpawnFiles {
    lock: File,
    console: File,
    stderr: File,
    exit_status: File,
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let fd = i32::try_from(ret).map_err(|_| std::io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just returned this fd (close-on-exec) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Whether the process behind `pidfd` has exited (the fd polls readable).
fn pidfd_exited(pidfd: &OwnedFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let r = unsafe { libc::poll(&mut pfd, 1, 0) };
    r != 0
}

impl PrivilegedOps for LocalPrivOps {
    fn execute(&self, op: PrivOp) -> Result<PrivReply, PrivOpsError> {
        match op.validate(&self.policy)? {
            PrivOp::SpawnVmm(spec) => self.spawn(spec),
            PrivOp::SignalVmm {
                pid,
                start_time,
                signal,
            } => self.signal(pid, start_time, signal),
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
    use std::time::Duration;

    fn ops(dir: &Path, binary: &str) -> LocalPrivOps {
        LocalPrivOps::new(Policy {
            device_prefix: "bg".into(),
            state_dir: dir.to_path_buf(),
            runtime_dir: dir.join("run"),
            subnet: (std::net::Ipv4Addr::new(172, 30, 0, 0), 24),
            owner_uid: nix::unistd::geteuid().as_raw(),
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
            lock_file: dir.join("vmm.lock"),
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("condition never held");
    }

    fn script(dir: &Path, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("vmm.sh");
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
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
            Err(PrivOpsError::Refused { reason, .. }) if reason.contains("already exists")
        ));
        assert!(!t.path().join("console.log").exists());
        // Symlinks are not followed, wherever they are.
        std::fs::remove_file(t.path().join("api.sock")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("x"), t.path().join("console.log")).unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("d")).unwrap();
        let mut s = spec(t.path(), "/bin/true");
        s.console_log = t.path().join("console.log");
        assert!(matches!(
            ops.spawn_vmm(s),
            Err(PrivOpsError::Refused { .. })
        ));
        let mut s = spec(t.path(), "/bin/true");
        s.console_log = t.path().join("c.log");
        s.api_sock = t.path().join("d/api.sock");
        assert!(matches!(
            ops.spawn_vmm(s),
            Err(PrivOpsError::Refused { .. })
        ));
        assert!(list(outside.path()).is_empty());
    }

    fn list(p: &Path) -> Vec<String> {
        std::fs::read_dir(p)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn spawns_reaps_and_records_exit() {
        let t = tempfile::tempdir().unwrap();
        let ops = ops(t.path(), "/bin/false");
        // `false` ignores its arguments and exits 1.
        let (pid, start) = ops.spawn_vmm(spec(t.path(), "/bin/false")).unwrap();
        assert!(pid > 1 && start > 0);
        let exit = t.path().join("exit");
        wait_for(|| {
            std::fs::read_to_string(&exit)
                .map(|s| s.ends_with('\n'))
                .unwrap_or(false)
        });
        assert_eq!(
            std::fs::read_to_string(exit).unwrap(),
            "exited with status 1\n"
        );
    }

    #[test]
    fn the_lock_refuses_a_second_vmm_while_the_first_lives() {
        let t = tempfile::tempdir().unwrap();
        // `exec` keeps the inherited (locked) fd in the long-lived process.
        let bin = script(t.path(), "exec sleep 30");
        let ops = ops(t.path(), &bin);
        let (pid, _) = ops.spawn_vmm(spec(t.path(), &bin)).unwrap();
        let mut second = spec(t.path(), &bin);
        second.api_sock = t.path().join("api2.sock");
        second.console_log = t.path().join("console2.log");
        let err = ops.spawn_vmm(second.clone()).unwrap_err();
        assert!(
            matches!(&err, PrivOpsError::Refused { reason, .. } if reason.contains(VMM_LOCK_HELD)),
            "{err}"
        );
        assert!(!t.path().join("console2.log").exists(), "nothing opened");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        wait_for(|| {
            std::fs::read_to_string(t.path().join("exit")).is_ok_and(|s| s.ends_with('\n'))
        });
        let (pid2, _) = ops.spawn_vmm(second).unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid2 as i32), Signal::SIGKILL).unwrap();
    }

    #[test]
    fn signals_only_the_vmm_it_was_told_about() {
        let t = tempfile::tempdir().unwrap();
        let sleep = std::fs::canonicalize("/bin/sleep").unwrap();
        let ops = ops(t.path(), &sleep.display().to_string());
        let proc = Path::new("/proc");
        // The right executable, the owner's, but the wrong start time.
        let mut vmm = Command::new(&sleep).arg("30").spawn().unwrap();
        let start = crate::proc::start_time(proc, vmm.id()).unwrap();
        let err = ops
            .signal_vmm(vmm.id(), start + 1, VmmSignal::Kill)
            .unwrap_err();
        assert!(err.to_string().contains("recycled"), "{err}");
        // Another executable with a VMM-looking command line.
        let mut fake = Command::new("sh")
            .args([
                "-c",
                "sleep 30; true",
                "sh",
                "--api-sock",
                "/x",
                "--id",
                "vm-1",
            ])
            .spawn()
            .unwrap();
        let fstart = crate::proc::start_time(proc, fake.id()).unwrap();
        let err = ops
            .signal_vmm(fake.id(), fstart, VmmSignal::Kill)
            .unwrap_err();
        assert!(err.to_string().contains("VMM binary"), "{err}");
        assert!(fake.try_wait().unwrap().is_none(), "sh must still run");
        assert!(vmm.try_wait().unwrap().is_none(), "sleep must still run");
        // The real one.
        assert!(ops.signal_vmm(vmm.id(), start, VmmSignal::Kill).unwrap());
        wait_for(|| crate::proc::read_identity(proc, vmm.id()).is_none_or(|i| i.zombie));
        assert!(
            !ops.signal_vmm(vmm.id(), start, VmmSignal::Kill).unwrap(),
            "zombie"
        );
        vmm.wait().unwrap();
        fake.kill().unwrap();
        fake.wait().unwrap();
        for pid in [0, 1, u32::MAX] {
            assert!(ops.signal_vmm(pid, 0, VmmSignal::Kill).is_err(), "{pid}");
        }
    }

    /// `CAP_SYS_PTRACE` (linux/capability.h).
    const CAP_SYS_PTRACE: u32 = 19;

    /// Drop `cap` from this thread's effective set (capabilities are per
    /// thread): bangerd-root's unit bounds its capabilities.
    fn drop_effective_cap(cap: u32) {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut h = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut d = [Data::default(); 2];
        // SAFETY: capget/capset with a v3 header and two data structs.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()), 0);
            d[(cap / 32) as usize].effective &= !(1 << (cap % 32));
            assert_eq!(libc::syscall(libc::SYS_capset, &h, d.as_ptr()), 0);
        }
    }

    #[test]
    fn signals_the_owners_vmm_without_cap_sys_ptrace() {
        const T: &str = "signals_the_owners_vmm_without_cap_sys_ptrace";
        if !nix::unistd::geteuid().is_root() {
            banger_testsupport::skip!(T, "needs root to run a process as another uid");
        }
        let t = tempfile::tempdir().unwrap();
        let sleep = std::fs::canonicalize("/bin/sleep").unwrap();
        let mut policy = ops(t.path(), &sleep.display().to_string()).policy().clone();
        policy.owner_uid = 64_613;
        let ops = LocalPrivOps::new(policy);
        let mut vmm = Command::new(&sleep)
            .arg("30")
            .uid(64_613)
            .gid(64_613)
            .spawn()
            .unwrap();
        let start = crate::proc::start_time(Path::new("/proc"), vmm.id()).unwrap();
        let pid = vmm.id();
        // Reading /proc/<pid>/exe of another uid as root needs
        // CAP_SYS_PTRACE, which the helper's unit does not grant.
        let r = std::thread::spawn(move || {
            drop_effective_cap(CAP_SYS_PTRACE);
            ops.signal_vmm(pid, start, VmmSignal::Kill)
        })
        .join()
        .unwrap();
        let _ = vmm.kill();
        vmm.wait().unwrap();
        assert!(matches!(r, Ok(true)), "{r:?}");
    }

    #[test]
    fn spawns_as_the_owner_when_root() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        if !nix::unistd::geteuid().is_root() {
            banger_testsupport::skip!("spawns_as_the_owner_when_root", "needs root");
        }
        let t = tempfile::tempdir().unwrap();
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        // The state dir is the owner's; a symlink they plant must not make
        // root write through it.
        std::os::unix::fs::chown(t.path(), Some(65534), Some(65534)).unwrap();
        std::os::unix::fs::symlink("/etc/banger-evil-exit", t.path().join("exit")).unwrap();
        let bin = script(t.path(), "id -u; id -G");
        let mut policy = ops(t.path(), &bin).policy().clone();
        policy.owner_uid = 65534;
        let ops = LocalPrivOps::new(policy);
        assert!(matches!(
            ops.spawn_vmm(spec(t.path(), &bin)),
            Err(PrivOpsError::Refused { .. })
        ));
        assert!(!Path::new("/etc/banger-evil-exit").exists());
        std::fs::remove_file(t.path().join("exit")).unwrap();
        // A file of root's in the owner's directory is not theirs to use.
        let _ = std::fs::remove_file(t.path().join("console.log"));
        std::fs::write(t.path().join("console.log"), "root's\n").unwrap();
        std::fs::set_permissions(
            t.path().join("console.log"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        assert!(matches!(
            ops.spawn_vmm(spec(t.path(), &bin)),
            Err(PrivOpsError::Refused { reason, .. }) if reason.contains("not a regular file of uid")
        ));
        std::fs::remove_file(t.path().join("console.log")).unwrap();
        let (pid, _) = ops.spawn_vmm(spec(t.path(), &bin)).unwrap();
        wait_for(|| !Path::new(&format!("/proc/{pid}")).exists());
        wait_for(|| {
            std::fs::read_to_string(t.path().join("exit")).is_ok_and(|s| s.ends_with('\n'))
        });
        let out = std::fs::read_to_string(t.path().join("console.log")).unwrap();
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some("65534"), "{out}");
        assert!(
            !lines.next().unwrap_or("").split(' ').any(|g| g == "0"),
            "root's groups dropped: {out}"
        );
        for f in ["console.log", "vmm.lock", "exit"] {
            let meta = std::fs::metadata(t.path().join(f)).unwrap();
            assert_eq!(meta.uid(), 65534, "{f}");
        }
    }
}
