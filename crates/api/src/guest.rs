//! Wire types of guest access and workspaces: `workspace.prepare`,
//! `workspace.export`, `workspace.sync_files`, `guest.ssh_config`,
//! `vm.ssh_argv` and `vm.ports`.

use serde::{Deserialize, Serialize};

/// `workspace.prepare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspacePrepareParams {
    /// VM name or id.
    pub vm: String,
    /// Absolute path inside the host checkout.
    pub path: String,
    /// Send everything even if a previous prepare is recorded.
    #[serde(default)]
    pub full: bool,
    /// Trust that the guest's copy is as the last prepare left it: skip
    /// asking the guest for its own listing, so files changed or deleted
    /// inside the guest are not repaired (faster by one round trip and a
    /// `stat` of every carried file on the guest).
    #[serde(default)]
    pub trust_guest: bool,
}

/// Result of `workspace.prepare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspacePrepared {
    /// VM name.
    pub vm: String,
    /// Checkout directory on the guest.
    pub guest_dir: String,
    /// Host checkout root.
    pub host_root: String,
    /// HEAD commit, if any.
    pub head: Option<String>,
    /// Branch, if HEAD is not detached.
    pub branch: Option<String>,
    /// Whether everything was sent (no usable previous prepare).
    pub full: bool,
    /// Files sent.
    pub files_sent: u64,
    /// Files deleted on the guest.
    pub files_deleted: u64,
    /// Of `files_sent`, those sent again because the guest's copy had
    /// been changed, replaced or deleted inside the guest.
    #[serde(default)]
    pub guest_changed: u64,
    /// Content bytes sent.
    pub bytes_sent: u64,
}

/// `workspace.export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceExportParams {
    /// VM name or id.
    pub vm: String,
    /// Absolute path inside the host checkout that was prepared.
    pub path: String,
    /// Target branch; `banger/<vm>` when absent (ignored with `patch`).
    #[serde(default)]
    pub branch: Option<String>,
    /// Write a patch series to this absolute path instead of a branch.
    #[serde(default)]
    pub patch: Option<String>,
}

/// Result of `workspace.export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceExported {
    /// VM name.
    pub vm: String,
    /// The branch written (branch mode).
    pub branch: Option<String>,
    /// Its commit (branch mode).
    pub commit: Option<String>,
    /// The patch file written (patch mode).
    pub patch: Option<String>,
    /// False when the guest had nothing new (nothing was written).
    pub changed: bool,
}

/// Result of `workspace.sync_files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesSynced {
    /// VM name.
    pub vm: String,
    /// Paths copied, relative to home.
    pub files: Vec<String>,
}

/// Result of `guest.ssh_config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshConfigText {
    /// The ssh_config include, one `Host <name>.vm` block per VM.
    pub text: String,
}

/// Result of `vm.ssh_argv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshArgv {
    /// Full argv, program first.
    pub argv: Vec<String>,
}

/// `vm.ssh_argv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSshParams {
    /// VM name or id.
    pub vm: String,
    /// Remote command words; interactive shell when empty.
    #[serde(default)]
    pub command: Vec<String>,
}

/// One listening socket in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestPort {
    /// `tcp` or `udp`.
    pub proto: String,
    /// Local address as `ss` printed it (`0.0.0.0`, `[::]`, `127.0.0.1`…).
    pub address: String,
    /// Port.
    pub port: u16,
    /// Process name, when `ss` could see it.
    pub process: Option<String>,
    /// `<vm>.vm:<port>`.
    pub endpoint: String,
}
