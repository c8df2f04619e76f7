//! The daemon's SSH client for guests: OpenSSH driven by argv.
//!
//! * banger's key pair lives in the owner's home on the dev path
//!   (`~/.config/banger/ssh/id_ed25519`) and in the state directory on the
//!   system path (`/var/lib/banger/ssh/id_ed25519`, where the unit may
//!   write), made by `ssh-keygen` on first use;
//! * the daemon keeps its own known_hosts (`<state_dir>/ssh/known_hosts`)
//!   and pins each guest's host key under the alias `banger-<vm id>`
//!   (`HostKeyAlias`): learned at first connection (`accept-new`), a new VM
//!   id (a recreated VM) gets a fresh entry, and a different key for the same
//!   VM is refused with [`GuestSshError::HostKeyChanged`];
//! * `-F none` keeps the user's own ssh config out of the daemon's
//!   connections.
//!
//! The seams [`GuestDial`] and [`WaitForSsh`] sit on the composition root
//! (`Daemon::guest_dial`, `Daemon::guest_wait_for_ssh`) and are handed to
//! the workspace service.

use std::ffi::OsString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// Errors reaching a guest over SSH.
#[derive(Debug, thiserror::Error)]
pub enum GuestSshError {
    /// The guest's host key differs from the pinned one.
    #[error(
        "the SSH host key of VM {vm} differs from the one banger pinned at its first boot, so banger refuses to connect; \
         if the guest's host keys were regenerated on purpose, forget the old one with \
         `ssh-keygen -R {alias} -f {known_hosts}`, otherwise recreate the VM"
    )]
    HostKeyChanged {
        /// VM name.
        vm: String,
        /// The known_hosts alias.
        alias: String,
        /// The daemon's known_hosts file.
        known_hosts: PathBuf,
    },
    /// The guest refused banger's key.
    #[error(
        "VM {vm} refused banger's SSH key {key}; the image must authorize it for user {user} \
         (see docs/workspaces.md)"
    )]
    AuthRefused {
        /// VM name.
        vm: String,
        /// The key.
        key: PathBuf,
        /// The user.
        user: String,
    },
    /// SSH failed for another reason.
    #[error("ssh to VM {vm} ({addr}) failed: {stderr}")]
    Failed {
        /// VM name.
        vm: String,
        /// Address.
        addr: SocketAddr,
        /// ssh's stderr.
        stderr: String,
    },
    /// No SSH banner within the timeout.
    #[error("no SSH banner from {addr} within {secs}s: {reason}")]
    NoBanner {
        /// Address.
        addr: SocketAddr,
        /// Timeout.
        secs: u64,
        /// Last failure.
        reason: String,
    },
    /// Creating the key pair (or the known_hosts directory) failed.
    #[error(
        "cannot create {path}: {reason}; check that ssh-keygen is installed and the directory is writable"
    )]
    Keygen {
        /// The key path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Local I/O around ssh failed.
    #[error("cannot run {bin}: {source}; install the OpenSSH client")]
    Spawn {
        /// The program.
        bin: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Which guest a connection is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestTarget {
    /// VM name (messages).
    pub vm_name: String,
    /// VM id (host key alias).
    pub vm_id: String,
    /// Where sshd listens.
    pub addr: SocketAddr,
}

impl GuestTarget {
    /// The known_hosts alias this VM's key is pinned under.
    pub fn alias(&self) -> String {
        format!("banger-{}", self.vm_id)
    }
}

/// The `guest_dial` seam: a command that runs `remote` (a POSIX sh script)
/// on the guest with stdin/stdout connected to the caller.
pub trait GuestDial: Send + Sync {
    /// Build the command; the caller sets stdio and spawns it.
    fn command(&self, target: &GuestTarget, remote: &str) -> std::process::Command;
    /// Turn a failed run's stderr into an error naming the VM.
    fn classify(&self, target: &GuestTarget, stderr: &str) -> GuestSshError;
}

/// The `guest_wait_for_ssh` seam.
pub type WaitForSsh = Arc<
    dyn Fn(SocketAddr, Duration) -> Pin<Box<dyn Future<Output = Result<(), GuestSshError>> + Send>>
        + Send
        + Sync,
>;

/// OpenSSH by argv.
#[derive(Debug, Clone)]
pub struct SshClient {
    /// `ssh` binary.
    pub bin: String,
    /// banger's private key.
    pub key: PathBuf,
    /// The daemon's known_hosts.
    pub known_hosts: PathBuf,
    /// Guest user.
    pub user: String,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl SshClient {
    /// Options shared by the daemon's connections and `banger vm ssh`.
    pub fn args(&self, target: &GuestTarget) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        let mut opt = |s: String| {
            a.push("-o".into());
            a.push(s.into());
        };
        opt("BatchMode=yes".into());
        opt("IdentitiesOnly=yes".into());
        opt(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        opt("GlobalKnownHostsFile=/dev/null".into());
        opt("StrictHostKeyChecking=accept-new".into());
        opt(format!("HostKeyAlias={}", target.alias()));
        opt("CheckHostIP=no".into());
        opt(format!(
            "ConnectTimeout={}",
            self.connect_timeout.as_secs().max(1)
        ));
        opt("LogLevel=ERROR".into());
        opt("ServerAliveInterval=15".into());
        a.push("-i".into());
        a.push(self.key.clone().into());
        a.push("-p".into());
        a.push(target.addr.port().to_string().into());
        a.push(format!("{}@{}", self.user, target.addr.ip()).into());
        a
    }

    /// The full argv of an interactive `banger vm ssh` (ssh first).
    pub fn interactive_argv(&self, target: &GuestTarget, cmd: &[String]) -> Vec<String> {
        let mut v = vec![self.bin.clone(), "-F".into(), "none".into()];
        v.extend(
            self.args(target)
                .into_iter()
                .map(|s| s.to_string_lossy().into_owned()),
        );
        if !cmd.is_empty() {
            v.push("--".into());
            v.extend(cmd.iter().cloned());
        }
        v
    }
}

impl GuestDial for SshClient {
    fn command(&self, target: &GuestTarget, remote: &str) -> std::process::Command {
        let mut c = std::process::Command::new(&self.bin);
        c.arg("-F").arg("none").arg("-T").args(self.args(target));
        if let Some(pref) = bulk_cipher_preference() {
            c.arg("-o").arg(pref);
        }
        // The remote side joins argv into one string for the login shell;
        // a single quoted `sh -c` keeps the script intact whatever it is.
        c.arg("--")
            .arg(format!("sh -c {}", banger_workspace::script::quote(remote)));
        c
    }

    fn classify(&self, target: &GuestTarget, stderr: &str) -> GuestSshError {
        classify(self, target, stderr)
    }
}

/// The cipher option of the daemon's own connections (workspace streams,
/// exports, file sync), or `None` to keep OpenSSH's order.
///
/// OpenSSH lists chacha20-poly1305 first, the right default on a CPU
/// without AES instructions. With them (the guest runs on the same CPU),
/// AES-GCM moves bulk data markedly faster: 400 MB through a local sshd
/// took 2.0 s against 3.2 s on our 2-core machines, and a workspace copy is
/// bound by exactly that. `^` only moves it to the head of the default
/// list, so a guest sshd without it still negotiates the next one.
pub fn bulk_cipher_preference() -> Option<&'static str> {
    static AES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    AES.get_or_init(|| std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|s| cpu_has_aes(&s)))
        .then_some("Ciphers=^aes128-gcm@openssh.com")
}

/// Whether `/proc/cpuinfo` text lists the AES instructions (`flags` on
/// x86, `Features` on arm64).
fn cpu_has_aes(cpuinfo: &str) -> bool {
    cpuinfo.lines().any(|l| {
        (l.starts_with("flags") || l.starts_with("Features"))
            && l.split_whitespace().any(|w| w == "aes")
    })
}

fn classify(c: &SshClient, target: &GuestTarget, stderr: &str) -> GuestSshError {
    if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("Host key verification failed")
    {
        return GuestSshError::HostKeyChanged {
            vm: target.vm_name.clone(),
            alias: target.alias(),
            known_hosts: c.known_hosts.clone(),
        };
    }
    if stderr.contains("Permission denied (publickey") {
        return GuestSshError::AuthRefused {
            vm: target.vm_name.clone(),
            key: c.key.clone(),
            user: c.user.clone(),
        };
    }
    GuestSshError::Failed {
        vm: target.vm_name.clone(),
        addr: target.addr,
        stderr: stderr.trim().to_string(),
    }
}

/// Create banger's key pair and the known_hosts directory if missing.
pub fn ensure_client_files(c: &SshClient) -> Result<(), GuestSshError> {
    if let Some(dir) = c.known_hosts.parent() {
        std::fs::create_dir_all(dir).map_err(|e| GuestSshError::Keygen {
            path: c.known_hosts.clone(),
            reason: e.to_string(),
        })?;
    }
    crate::common::ensure_keypair(&c.key).map_err(|e| GuestSshError::Keygen {
        path: e.path,
        reason: e.reason,
    })
}

/// Wait until `addr` sends an SSH banner (`SSH-...`), retrying connects.
pub async fn wait_for_banner(addr: SocketAddr, timeout: Duration) -> Result<(), GuestSshError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut reason = String::from("not tried");
    while tokio::time::Instant::now() < deadline {
        let left = deadline - tokio::time::Instant::now();
        let attempt = tokio::time::timeout(left, async {
            let mut s = tokio::net::TcpStream::connect(addr).await?;
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            while got.len() < 4 {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::other("connection closed before a banner"));
                }
                got.extend_from_slice(&buf[..n]);
            }
            if got.starts_with(b"SSH-") {
                Ok(())
            } else {
                Err(std::io::Error::other("not an SSH banner"))
            }
        })
        .await;
        match attempt {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => reason = e.to_string(),
            Err(_) => reason = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(GuestSshError::NoBanner {
        addr,
        secs: timeout.as_secs(),
        reason,
    })
}

/// The production `guest_wait_for_ssh`.
pub fn banner_waiter() -> WaitForSsh {
    Arc::new(|addr, timeout| Box::pin(wait_for_banner(addr, timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn client() -> SshClient {
        SshClient {
            bin: "ssh".into(),
            key: "/k/id".into(),
            known_hosts: "/s/known_hosts".into(),
            user: "root".into(),
            connect_timeout: Duration::from_secs(3),
        }
    }

    fn target() -> GuestTarget {
        GuestTarget {
            vm_name: "dev".into(),
            vm_id: "00ff".into(),
            addr: "172.30.0.2:22".parse().unwrap(),
        }
    }

    #[test]
    fn argv_pins_per_vm_and_ignores_user_config() {
        let v = client().interactive_argv(&target(), &["uname".into(), "-a".into()]);
        let s = v.join(" ");
        assert!(s.starts_with("ssh -F none "));
        assert!(s.contains("HostKeyAlias=banger-00ff"));
        assert!(s.contains("UserKnownHostsFile=/s/known_hosts"));
        assert!(s.contains("StrictHostKeyChecking=accept-new"));
        assert!(s.contains("BatchMode=yes"));
        assert!(s.ends_with("-p 22 root@172.30.0.2 -- uname -a"));
    }

    #[test]
    fn aes_gcm_goes_first_only_with_aes_instructions() {
        assert!(cpu_has_aes("flags\t\t: fpu vme sse2 aes avx2\n"));
        assert!(cpu_has_aes("Features\t: fp asimd aes pmull sha1\n"));
        assert!(!cpu_has_aes(
            "flags\t\t: fpu vme sse2 avx2\nmodel name\t: aes box\n"
        ));
        let c = client().command(&target(), "true");
        let argv: Vec<_> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let pinned = argv.iter().any(|a| a == "Ciphers=^aes128-gcm@openssh.com");
        assert_eq!(pinned, bulk_cipher_preference().is_some());
    }

    #[test]
    fn changed_key_is_named_clearly() {
        let e = classify(
            &client(),
            &target(),
            "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.",
        );
        let msg = e.to_string();
        assert!(msg.contains("VM dev"), "{msg}");
        assert!(
            msg.contains("ssh-keygen -R banger-00ff -f /s/known_hosts"),
            "{msg}"
        );
        assert!(matches!(
            classify(
                &client(),
                &target(),
                "root@x: Permission denied (publickey)."
            ),
            GuestSshError::AuthRefused { .. }
        ));
    }

    #[test]
    fn keypair_is_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ssh/id_ed25519");
        crate::common::ensure_keypair(&key).unwrap();
        let first = std::fs::read(&key).unwrap();
        crate::common::ensure_keypair(&key).unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), first);
        assert!(key.with_extension("pub").exists());
    }

    #[tokio::test]
    async fn banner_wait_sees_ssh_and_times_out_on_silence() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let _ = s.write_all(b"SSH-2.0-Test\r\n").await;
            }
        });
        wait_for_banner(addr, Duration::from_secs(3)).await.unwrap();

        let quiet = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let qaddr = quiet.local_addr().unwrap();
        tokio::spawn(async move {
            let mut keep = Vec::new();
            while let Ok((s, _)) = quiet.accept().await {
                keep.push(s);
            }
        });
        let e = wait_for_banner(qaddr, Duration::from_millis(600))
            .await
            .unwrap_err();
        assert!(matches!(e, GuestSshError::NoBanner { .. }), "{e}");
    }
}
