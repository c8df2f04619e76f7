//! `[guest]`: how the daemon reaches guests (SSH user, port, key, readiness)
//! and what workspaces put there (work directory, synced dotfiles).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How `vm start` decides that a guest is up before marking it `running`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readiness {
    /// Do not wait: `running` as soon as the VMM boots (test harnesses).
    None,
    /// Wait for an SSH banner on `guest_ip:ssh_port`.
    Ssh,
    /// Wait for banger's guest agent to answer `PING` over hybrid vsock.
    Vsock,
    /// `vsock` when `guest_hook` is set; otherwise, when the VM has a vsock
    /// socket, race the agent and SSH (first success wins), else `ssh`.
    Auto,
}

/// `[guest]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuestConfig {
    /// User banger logs into guests as. Default `root`.
    pub user: String,
    /// Guest SSH port. Default 22.
    pub ssh_port: u16,
    /// The OpenSSH client binary. Default `ssh`.
    pub ssh_bin: String,
    /// banger's private key (created with `ssh-keygen` on first use).
    /// Default `$XDG_CONFIG_HOME/banger/ssh/id_ed25519`; on the system
    /// path `<state_dir>/ssh/id_ed25519` (`Config::settle_for`).
    pub ssh_key: Option<PathBuf>,
    /// SSH connect timeout in seconds. Default 10.
    pub connect_timeout_secs: u64,
    /// Where `workspace prepare` puts checkouts: relative to the guest
    /// user's home, or absolute. Default `work` (so `~/work/<repo>`).
    pub work_dir: String,
    /// Compress `workspace prepare` streams with zstd (level 1) when the
    /// guest has `zstd` (it says so before the stream starts; without it
    /// the stream is plain tar). Default false: on a local link with
    /// AES-GCM, compressing and decompressing on the same cores cost more
    /// than the bytes saved (a 274 MB checkout: 2.5-2.8 s compressed vs
    /// 1.8-2.1 s plain); worth it over a slow or remote link.
    pub compress_stream: bool,
    /// Files under the owner's home copied into the guest user's home by
    /// `workspace sync-files` (relative to home or absolute under it).
    /// Default empty.
    pub sync_files: Vec<PathBuf>,
    /// Readiness check after boot. Default `auto`.
    pub readiness: Readiness,
    /// Seconds to wait for readiness before the VM goes to `error`. Default 60.
    pub readiness_timeout_secs: u64,
    /// Whether every image carries banger's guest agent (vsock port
    /// `vsock_port`), so `auto` waits for it alone. Default false (`auto`
    /// then races the agent and SSH).
    pub guest_hook: bool,
    /// The hook's vsock port. Default 52.
    pub vsock_port: u32,
    /// Write banger's and the owner's public keys and the owner's git
    /// identity into the VM's disk before each boot. Default true.
    pub sync_identity: bool,
    /// The `banger-guest` executable image seeding installs into images.
    /// Default: `banger-guest` next to the running `bangerd`.
    pub agent: Option<PathBuf>,
}

impl Default for GuestConfig {
    fn default() -> Self {
        Self {
            user: "root".into(),
            ssh_port: 22,
            ssh_bin: "ssh".into(),
            ssh_key: None,
            connect_timeout_secs: 10,
            work_dir: "work".into(),
            compress_stream: false,
            sync_files: Vec::new(),
            readiness: Readiness::Auto,
            readiness_timeout_secs: 60,
            guest_hook: false,
            vsock_port: 52,
            sync_identity: true,
            agent: None,
        }
    }
}

impl GuestConfig {
    /// banger's private key path.
    pub fn key_path(&self) -> PathBuf {
        self.ssh_key.clone().unwrap_or_else(|| {
            let base = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .unwrap_or_else(|| PathBuf::from("/etc"));
            base.join("banger/ssh/id_ed25519")
        })
    }

    /// The guest agent executable (`agent`, or `banger-guest` beside the
    /// running executable).
    pub fn agent_path(&self) -> PathBuf {
        self.agent
            .clone()
            .unwrap_or_else(|| crate::beside_current_exe("banger-guest"))
    }

    /// The readiness check that applies.
    pub fn effective_readiness(&self) -> Readiness {
        match self.readiness {
            Readiness::Auto if self.guest_hook => Readiness::Vsock,
            r => r,
        }
    }
}
