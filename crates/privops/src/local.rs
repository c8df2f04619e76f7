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
        let console = append(&spec.console_log)?;
        let stderr = append(&spec.stderr_log)?;
        let mut cmd = Command::new(&spec.binary);
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
                if let Err(e) = std::fs::write(&status_file, format!("{line}\n")) {
                    tracing::warn!(pid, file = %status_file.display(), error = %e, "cannot record VMM exit status");
                }
            })
            .map_err(|source| PrivOpsError::Spawn {
                binary: spec.binary.clone(),
                source,
            })?;
        tracing::debug!(pid, binary = %spec.binary.display(), "spawned VMM");
        Ok(PrivReply::Spawned { pid })
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
            } => crate::netlink::ensure_bridge(&name, gateway, prefix).map(|()| PrivReply::Done),
            PrivOp::CreateTap { name, bridge } => {
                crate::tap::create_persistent(&name, self.policy.owner_uid)?;
                if let Err(e) = crate::netlink::attach_up(&name, &bridge) {
                    let _ = crate::netlink::delete(&name);
                    return Err(e);
                }
                Ok(PrivReply::Done)
            }
            PrivOp::DeleteLink { name } => {
                crate::netlink::delete(&name).map(|existed| PrivReply::Removed { existed })
            }
            PrivOp::ListLinks => crate::netlink::list(&self.policy.device_prefix)
                .map(|links| PrivReply::Links { links }),
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
            } => crate::host::resolver_route(&bridge, dns, revert).map(|()| PrivReply::Done),
        }
    }
}

fn append(path: &Path) -> Result<File, PrivOpsError> {
    OpenOptions::new()
        .create(true)
        .append(true)
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
}
