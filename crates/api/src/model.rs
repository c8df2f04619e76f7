//! What the daemon knows about VMs, images, kernels and operations, as it
//! appears on the wire and in `--json` output.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// The lifecycle state of a VM.
///
/// ```text
/// created ──start──▶ starting ──▶ running ──stop──▶ stopping ──▶ stopped
///    ▲                  │            │                              │
///    └───────── error ◀─┘            └── VMM died ──▶ stopped ◀─────┘
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Row and disk exist; never started.
    Created,
    /// The VMM is being spawned and configured.
    Starting,
    /// The VMM accepted `InstanceStart` and is alive.
    Running,
    /// A stop is in progress.
    Stopping,
    /// No VMM process; disks kept.
    Stopped,
    /// The last start failed; see `last_error`. Start again or delete.
    Error,
}

impl VmState {
    /// The state's name as shown to users and stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Created => "created",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Stopping => "stopping",
            VmState::Stopped => "stopped",
            VmState::Error => "error",
        }
    }

    /// Whether a VMM process may exist for a VM in this state.
    pub fn has_vmm(self) -> bool {
        matches!(
            self,
            VmState::Starting | VmState::Running | VmState::Stopping
        )
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of [`VmState`]'s.
#[derive(Debug, thiserror::Error)]
#[error("unknown VM state {0:?}")]
pub struct UnknownVmState(pub String);

impl FromStr for VmState {
    type Err = UnknownVmState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "created" => VmState::Created,
            "starting" => VmState::Starting,
            "running" => VmState::Running,
            "stopping" => VmState::Stopping,
            "stopped" => VmState::Stopped,
            "error" => VmState::Error,
            other => return Err(UnknownVmState(other.to_string())),
        })
    }
}

/// A VM as stored by the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vm {
    /// Stable identifier (16 hex digits).
    pub id: String,
    /// Unique DNS label; the guest is `<name>.vm`.
    pub name: String,
    /// Lifecycle state.
    pub state: VmState,
    /// Image the root disk was copied from.
    pub image_id: String,
    /// Name of that image at creation time.
    pub image_name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Root disk size in bytes.
    pub disk_bytes: u64,
    /// Static guest address.
    pub guest_ip: Ipv4Addr,
    /// Guest MAC address (derived from the IP, lower-case).
    pub guest_mac: String,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Last change of any field.
    pub updated_at: UnixMillis,
    /// When the current VMM started (running VMs only).
    pub started_at: Option<UnixMillis>,
    /// Why the VM last failed or stopped unexpectedly, if it did.
    pub last_error: Option<String>,
    /// Size of the persistent work disk (`work.ext4`, the guest user's
    /// home, made from the image's work seed at first start); 0 for a VM
    /// without one.
    #[serde(default)]
    pub work_disk_bytes: u64,
}

/// Transient facts about a running VM's VMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRuntime {
    /// PID of the VMM process.
    pub pid: u32,
    /// Firecracker API socket.
    pub api_socket: String,
    /// Firecracker hybrid-vsock socket.
    pub vsock_socket: Option<String>,
}

/// Files that belong to a VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPaths {
    /// The VM's directory under the state dir.
    pub dir: String,
    /// Root disk.
    pub root_disk: String,
    /// Serial console output.
    pub console_log: String,
    /// Firecracker's own log.
    pub vmm_log: String,
    /// The persistent work disk, once it exists.
    #[serde(default)]
    pub work_disk: Option<String>,
    /// Its apparent size in bytes (0 while it does not exist).
    #[serde(default)]
    pub work_disk_bytes: u64,
}

/// Everything `vm show` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmDetail {
    /// The stored VM.
    #[serde(flatten)]
    pub vm: Vm,
    /// The VMM, when one runs.
    pub runtime: Option<VmRuntime>,
    /// Files on disk.
    pub paths: VmPaths,
    /// Its port forwards (`banger vm forward`).
    #[serde(default)]
    pub forwards: Vec<crate::forward::PortForward>,
    /// The provisioning scripts of `vm create --provision`, in order
    /// (empty when none ran).
    #[serde(default)]
    pub provision: Vec<ProvisionRun>,
}

/// Where a provisioning script is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProvisionState {
    /// Not started yet (an earlier script failed or is still running).
    Pending,
    /// Running in the guest.
    Running,
    /// Exited 0.
    Ok,
    /// Exited non-zero, or could not be run.
    Failed,
}

impl ProvisionState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisionState::Pending => "pending",
            ProvisionState::Running => "running",
            ProvisionState::Ok => "ok",
            ProvisionState::Failed => "failed",
        }
    }
}

/// One provisioning script's run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRun {
    /// The script, as named on the host.
    pub script: String,
    /// Its state.
    pub state: ProvisionState,
    /// Exit code, once it ended (`None` when ssh could not run it).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Start time (Unix ms), once started.
    #[serde(default)]
    pub started_at: Option<i64>,
    /// End time (Unix ms), once ended.
    #[serde(default)]
    pub finished_at: Option<i64>,
}

/// `vm.provision_record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmProvisionParams {
    /// Name or id.
    pub vm: String,
    /// Every script's run, in order (at most 64).
    pub runs: Vec<ProvisionRun>,
}

/// Resource use of a running VM's VMM process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmStats {
    /// VM name.
    pub name: String,
    /// VM state when sampled.
    pub state: VmState,
    /// VMM PID, when running.
    pub pid: Option<u32>,
    /// User+system CPU time consumed by the VMM (includes the guest's vCPUs).
    pub cpu_time_ms: u64,
    /// CPU use over the last polling interval, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Resident memory of the VMM process.
    pub rss_bytes: u64,
    /// Bytes allocated on the host for the root disk.
    pub disk_allocated_bytes: u64,
    /// Seconds since the VMM started.
    pub uptime_secs: u64,
}

/// A bootable image: a root filesystem and the kernel to boot it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// Stable identifier.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Root filesystem file (owned by banger, under the state dir).
    pub rootfs_path: String,
    /// Uncompressed kernel (`vmlinux`).
    pub kernel_path: String,
    /// Optional initrd.
    pub initrd_path: Option<String>,
    /// Size of the root filesystem file.
    pub size_bytes: u64,
    /// Where it came from (`register:/path`, a registry reference, …).
    pub source: String,
    /// Registration time.
    pub created_at: UnixMillis,
    /// What seeding wrote into the root filesystem; `None` for an image
    /// published before seeding existed.
    #[serde(default)]
    pub seed: Option<ImageSeed>,
    /// The work seed (`work-seed.ext4`), the template of each VM's work disk.
    #[serde(default)]
    pub work_seed_path: Option<String>,
}

/// What image seeding wrote, so `managed-seed refresh` and `doctor` can
/// tell a stale seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSeed {
    /// The guest user whose home got the keys.
    pub guest_user: String,
    /// sha256 (`sha256:<hex>`) of the authorized_keys written.
    pub key_fingerprint: String,
    /// sha256 (`sha256:<hex>`) of the guest agent installed, `None` when
    /// no agent was available.
    pub agent_sha256: Option<String>,
    /// When.
    pub seeded_at: UnixMillis,
}

/// One image `image.refresh_seed` looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeedRefresh {
    /// Image name.
    pub image: String,
    /// `refreshed`, `current` or `skipped`.
    pub outcome: String,
    /// Why (what changed, or why it was skipped).
    pub detail: String,
}

/// A kernel known to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    /// Stable identifier.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Version string, when known.
    pub version: Option<String>,
    /// Kernel file.
    pub path: String,
    /// sha256 of the kernel file.
    pub sha256: String,
    /// Registration time.
    pub created_at: UnixMillis,
    /// Size of the kernel file in bytes (filled in when listed).
    #[serde(default)]
    pub size_bytes: u64,
    /// Where it came from: `catalog:<url>` or `register:<file>`.
    #[serde(default)]
    pub source: String,
}

/// The state of an asynchronous operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpState {
    /// Still working.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
}

impl OpState {
    /// Name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            OpState::Running => "running",
            OpState::Succeeded => "succeeded",
            OpState::Failed => "failed",
        }
    }

    /// Whether the operation has finished.
    pub fn is_done(self) -> bool {
        !matches!(self, OpState::Running)
    }
}

impl FromStr for OpState {
    type Err = UnknownVmState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "running" => OpState::Running,
            "succeeded" => OpState::Succeeded,
            "failed" => OpState::Failed,
            other => return Err(UnknownVmState(other.to_string())),
        })
    }
}

/// A long-running daemon operation (e.g. `vm.create`) that clients follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Identifier to pass to `operation.get` / `operation.watch`.
    pub id: String,
    /// The method that started it (`vm.create`).
    pub kind: String,
    /// What it works on (a VM name).
    pub subject: String,
    /// Running, succeeded or failed.
    pub state: OpState,
    /// The current step, in words (`copying root disk`, `starting VMM`, …).
    pub stage: String,
    /// Steps completed so far.
    pub step: u32,
    /// Steps in total.
    pub steps: u32,
    /// Why it failed.
    pub error: Option<RpcErrorBody>,
    /// Start time.
    pub created_at: UnixMillis,
    /// Time of the last change.
    pub updated_at: UnixMillis,
}

/// An error as carried on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcErrorBody {
    /// Machine-readable class.
    pub kind: crate::rpc::ErrorKind,
    /// What failed and what to do about it.
    pub message: String,
}

/// The daemon's answer to the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Protocol version the daemon speaks.
    pub protocol: u32,
    /// Daemon package version.
    pub version: String,
}

/// `daemon.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// Daemon package version.
    pub version: String,
    /// Daemon PID.
    pub pid: u32,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
    /// State directory.
    pub state_dir: String,
    /// Runtime directory (sockets).
    pub runtime_dir: String,
    /// Configured VMM binary.
    pub firecracker_bin: String,
    /// Number of VMs by state.
    pub vms_total: u32,
    /// Number of running VMs.
    pub vms_running: u32,
}

/// Output of `vm.logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmLogs {
    /// File the lines come from.
    pub path: String,
    /// The last lines, oldest first (invalid UTF-8 replaced).
    pub lines: Vec<String>,
    /// Byte offset just after the last complete line returned: the
    /// `since` of the next follow call.
    #[serde(default)]
    pub end: u64,
}

/// Output of `vm.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// Identifier of what was deleted.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// Output of `vm.create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmCreated {
    /// The new VM (state `created`).
    pub vm: Vm,
    /// The boot operation to follow, unless `no_start` was given.
    pub operation: Option<Operation>,
}

/// Output of `image.export_bundle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleExported {
    /// The image name.
    pub name: String,
    /// The bundle file written.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of the root filesystem inside (`sha256:…`).
    pub rootfs_sha256: String,
}
