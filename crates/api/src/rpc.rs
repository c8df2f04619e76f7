//! The RPC protocol between `banger` and `bangerd`.
//!
//! 1. The client connects to the daemon's Unix socket (mode 0600; the daemon
//!    checks the peer's uid with `SO_PEERCRED`).
//! 2. Every message is one JSON object on one line.
//! 3. The first request must be `daemon.hello` with the client's
//!    [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION); a mismatch is refused
//!    with [`ErrorKind::VersionMismatch`] and the connection is closed.
//! 4. A request is `{"id": N, "method": "...", "params": {...}}`. The daemon
//!    answers with `{"id": N, "result": ...}` or `{"id": N, "error": {...}}`.
//!    `operation.watch` first streams `{"id": N, "event": <Operation>}` lines,
//!    one per change, and ends with the final `result`.
//! 5. Every numeric field has a documented range (see each field and
//!    [`crate::validate`]); the daemon refuses a value outside it with
//!    [`ErrorKind::InvalidArgument`] before anything changes.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::size::ByteSize;

/// A request, tagged by its method name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params")]
pub enum Request {
    /// Handshake; must come first. Returns [`Hello`](crate::Hello).
    #[serde(rename = "daemon.hello")]
    Hello(HelloParams),
    /// Returns [`DaemonStatus`](crate::DaemonStatus).
    #[serde(rename = "daemon.status")]
    Status,
    /// Run the daemon's host checks on the daemon's host, as the daemon's
    /// user and in its network namespace. Returns
    /// `Vec<`[`Check`](crate::doctor::Check)`>`.
    #[serde(rename = "daemon.doctor")]
    Doctor,
    /// Create a VM and (unless `no_start`) boot it asynchronously.
    /// Returns [`VmCreated`](crate::VmCreated).
    #[serde(rename = "vm.create")]
    VmCreate(VmCreateParams),
    /// Boot a stopped VM. Returns [`Vm`](crate::Vm).
    #[serde(rename = "vm.start")]
    VmStart(VmRef),
    /// Boot a stopped VM in the background, like `vm.create`: answers at
    /// once with the operation to follow (its stages: preparing, starting
    /// VMM, configuring, booting). Returns [`VmCreated`](crate::VmCreated).
    #[serde(rename = "vm.start_op")]
    VmStartOp(VmRef),
    /// Ctrl-Alt-Del, then SIGKILL after a timeout. Returns [`Vm`](crate::Vm).
    #[serde(rename = "vm.stop")]
    VmStop(VmStopParams),
    /// Stop (if running) and start. Returns [`Vm`](crate::Vm).
    #[serde(rename = "vm.restart")]
    VmRestart(VmStopParams),
    /// SIGKILL the VMM. Returns [`Vm`](crate::Vm).
    #[serde(rename = "vm.kill")]
    VmKill(VmRef),
    /// Remove a VM and its files. Returns [`Deleted`](crate::Deleted).
    #[serde(rename = "vm.delete")]
    VmDelete(VmDeleteParams),
    /// Change resources of a stopped VM. Returns [`Vm`](crate::Vm).
    #[serde(rename = "vm.set")]
    VmSet(VmSetParams),
    /// Returns `Vec<`[`Vm`](crate::Vm)`>`.
    #[serde(rename = "vm.list")]
    VmList,
    /// Returns [`VmDetail`](crate::VmDetail).
    #[serde(rename = "vm.show")]
    VmShow(VmRef),
    /// Returns [`VmStats`](crate::VmStats).
    #[serde(rename = "vm.stats")]
    VmStats(VmRef),
    /// Returns [`VmLogs`](crate::VmLogs).
    #[serde(rename = "vm.logs")]
    VmLogs(VmLogsParams),
    /// Stop a running VM's vCPUs (state `paused`). Returns [`Vm`](crate::Vm).
    #[serde(rename = "vm.pause")]
    VmPause(VmRef),
    /// Continue a paused VM. Returns [`Vm`](crate::Vm).
    #[serde(rename = "vm.resume")]
    VmResume(VmRef),
    /// Snapshot a running or paused VM to its directory and end its VMM
    /// (state `suspended`; `vm.start` resumes it). Returns [`Vm`](crate::Vm).
    #[serde(rename = "vm.suspend")]
    VmSuspend(VmRef),
    /// Take a named snapshot of a running or paused VM, which keeps its
    /// state. Returns [`VmSnapshot`](crate::VmSnapshot).
    #[serde(rename = "vm.snapshot.create")]
    VmSnapshotCreate(VmSnapshotParams),
    /// A VM's snapshots. Returns `Vec<`[`VmSnapshot`](crate::VmSnapshot)`>`.
    #[serde(rename = "vm.snapshot.list")]
    VmSnapshotList(VmRef),
    /// Remove a snapshot. Returns [`Deleted`](crate::Deleted).
    #[serde(rename = "vm.snapshot.delete")]
    VmSnapshotDelete(VmSnapshotParams),
    /// A new running VM restored from a snapshot of another, with its own
    /// disks, name, address, MAC, hostname and host key. Returns [`Vm`](crate::Vm).
    #[serde(rename = "vm.fork")]
    VmFork(VmForkParams),
    /// Register local rootfs/kernel files as an image. Returns [`Image`](crate::Image).
    #[serde(rename = "image.register")]
    ImageRegister(ImageRegisterParams),
    /// Returns `Vec<`[`Image`](crate::Image)`>`.
    #[serde(rename = "image.list")]
    ImageList,
    /// Returns [`Image`](crate::Image).
    #[serde(rename = "image.show")]
    ImageShow(NameRef),
    /// Delete an image no VM uses. Returns [`Deleted`](crate::Deleted).
    #[serde(rename = "image.delete")]
    ImageDelete(NameRef),
    /// Returns [`Operation`](crate::Operation).
    #[serde(rename = "operation.get")]
    OperationGet(OpRef),
    /// Streams [`Operation`](crate::Operation) events, then returns the final one.
    #[serde(rename = "operation.watch")]
    OperationWatch(OpRef),
    /// Returns `Vec<`[`Operation`](crate::Operation)`>`.
    #[serde(rename = "operation.list")]
    OperationList,
    /// Remove banger's bridge, TAPs and NAT table and restore IPv4
    /// forwarding; refused while VMs run. Returns
    /// [`NetworkReset`](crate::NetworkReset).
    #[serde(rename = "network.reset")]
    NetworkReset,
    /// Copy a host checkout into a running VM. Returns
    /// [`WorkspacePrepared`](crate::guest::WorkspacePrepared).
    #[serde(rename = "workspace.prepare")]
    WorkspacePrepare(crate::guest::WorkspacePrepareParams),
    /// Bring guest work back as a branch or patch. Returns
    /// [`WorkspaceExported`](crate::guest::WorkspaceExported).
    #[serde(rename = "workspace.export")]
    WorkspaceExport(crate::guest::WorkspaceExportParams),
    /// Copy the configured dotfiles into a VM. Returns
    /// [`FilesSynced`](crate::guest::FilesSynced).
    #[serde(rename = "workspace.sync_files")]
    WorkspaceSyncFiles(VmRef),
    /// The ssh_config include for all VMs. Returns
    /// [`SshConfigText`](crate::guest::SshConfigText).
    #[serde(rename = "guest.ssh_config")]
    GuestSshConfig,
    /// The ssh argv for `banger vm ssh`. Returns [`SshArgv`](crate::guest::SshArgv).
    #[serde(rename = "vm.ssh_argv")]
    VmSshArgv(crate::guest::VmSshParams),
    /// Listening guest ports. Returns `Vec<`[`GuestPort`](crate::guest::GuestPort)`>`.
    #[serde(rename = "vm.ports")]
    VmPorts(VmRef),
    /// Record the provisioning runs of a VM (replacing the previous
    /// record). Returns `Vec<`[`ProvisionRun`](crate::ProvisionRun)`>`.
    #[serde(rename = "vm.provision_record")]
    VmProvisionRecord(crate::model::VmProvisionParams),
    /// Pull an image from an OCI registry, asynchronously. Returns the
    /// [`Operation`](crate::Operation) to follow; its subject is the image name.
    #[serde(rename = "image.pull")]
    ImagePull(ImagePullParams),
    /// Write an image as a bundle file. Returns [`BundleExported`](crate::BundleExported).
    #[serde(rename = "image.export_bundle")]
    ImageExportBundle(ImageExportBundleParams),
    /// Registered kernels. Returns `Vec<`[`Kernel`](crate::Kernel)`>`.
    #[serde(rename = "kernel.list")]
    KernelList,
    /// Download a catalog kernel, verify its sha256 and register it.
    /// Returns [`Kernel`](crate::Kernel).
    #[serde(rename = "kernel.pull")]
    KernelPull(NameRef),
    /// Register a local vmlinux or bzImage. Returns [`Kernel`](crate::Kernel).
    #[serde(rename = "kernel.register")]
    KernelRegister(KernelRegisterParams),
    /// Delete a kernel no image uses. Returns [`Deleted`](crate::Deleted).
    #[serde(rename = "kernel.delete")]
    KernelDelete(NameRef),
    /// Turn a stopped VM's root disk into a new image. Returns [`Image`](crate::Image).
    #[serde(rename = "image.promote")]
    ImagePromote(ImagePromoteParams),
    /// Re-seed images whose keys or guest agent changed (`managed-seed
    /// refresh`). Returns `Vec<`[`SeedRefresh`](crate::SeedRefresh)`>`.
    #[serde(rename = "image.refresh_seed")]
    ImageRefreshSeed(ImageRefreshSeedParams),
    /// Build a Debian image locally with mmdebstrap, asynchronously.
    /// Returns the [`Operation`](crate::Operation) to follow; its subject is
    /// the image name.
    #[serde(rename = "image.build")]
    ImageBuild(ImageBuildParams),
    /// Forward a host TCP port to a guest port (stored; kept across VM and
    /// daemon restarts). Returns [`PortForward`](crate::forward::PortForward).
    #[serde(rename = "vm.forward")]
    VmForward(crate::forward::VmForwardParams),
    /// Remove forwards of a VM. Returns the removed
    /// `Vec<`[`PortForward`](crate::forward::PortForward)`>`.
    #[serde(rename = "vm.forward_remove")]
    VmForwardRemove(crate::forward::VmForwardParams),
    /// A VM's forwards. Returns `Vec<`[`PortForward`](crate::forward::PortForward)`>`.
    #[serde(rename = "vm.forwards")]
    VmForwards(VmRef),
    /// Build banger's microVM kernel from Debian's `linux-source` (or take
    /// it from the build cache) and register it, asynchronously. Returns
    /// the [`Operation`](crate::Operation) to follow; its subject is the
    /// kernel name.
    #[serde(rename = "kernel.build")]
    KernelBuild(KernelBuildParams),
}

impl Request {
    /// The method name, as on the wire.
    pub fn method(&self) -> &'static str {
        match self {
            Request::Hello(_) => "daemon.hello",
            Request::Status => "daemon.status",
            Request::Doctor => "daemon.doctor",
            Request::VmCreate(_) => "vm.create",
            Request::VmStart(_) => "vm.start",
            Request::VmStartOp(_) => "vm.start_op",
            Request::VmStop(_) => "vm.stop",
            Request::VmRestart(_) => "vm.restart",
            Request::VmKill(_) => "vm.kill",
            Request::VmDelete(_) => "vm.delete",
            Request::VmSet(_) => "vm.set",
            Request::VmList => "vm.list",
            Request::VmShow(_) => "vm.show",
            Request::VmStats(_) => "vm.stats",
            Request::VmLogs(_) => "vm.logs",
            Request::VmPause(_) => "vm.pause",
            Request::VmResume(_) => "vm.resume",
            Request::VmSuspend(_) => "vm.suspend",
            Request::VmSnapshotCreate(_) => "vm.snapshot.create",
            Request::VmSnapshotList(_) => "vm.snapshot.list",
            Request::VmSnapshotDelete(_) => "vm.snapshot.delete",
            Request::VmFork(_) => "vm.fork",
            Request::ImageRegister(_) => "image.register",
            Request::ImageList => "image.list",
            Request::ImageShow(_) => "image.show",
            Request::ImageDelete(_) => "image.delete",
            Request::OperationGet(_) => "operation.get",
            Request::OperationWatch(_) => "operation.watch",
            Request::OperationList => "operation.list",
            Request::NetworkReset => "network.reset",
            Request::WorkspacePrepare(_) => "workspace.prepare",
            Request::WorkspaceExport(_) => "workspace.export",
            Request::WorkspaceSyncFiles(_) => "workspace.sync_files",
            Request::GuestSshConfig => "guest.ssh_config",
            Request::VmSshArgv(_) => "vm.ssh_argv",
            Request::VmPorts(_) => "vm.ports",
            Request::VmProvisionRecord(_) => "vm.provision_record",
            Request::ImagePull(_) => "image.pull",
            Request::ImageExportBundle(_) => "image.export_bundle",
            Request::KernelList => "kernel.list",
            Request::KernelPull(_) => "kernel.pull",
            Request::KernelRegister(_) => "kernel.register",
            Request::KernelDelete(_) => "kernel.delete",
            Request::ImagePromote(_) => "image.promote",
            Request::ImageRefreshSeed(_) => "image.refresh_seed",
            Request::ImageBuild(_) => "image.build",
            Request::VmForward(_) => "vm.forward",
            Request::VmForwardRemove(_) => "vm.forward_remove",
            Request::VmForwards(_) => "vm.forwards",
            Request::KernelBuild(_) => "kernel.build",
        }
    }
}

/// `daemon.hello`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelloParams {
    /// The client's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
    pub protocol: u32,
    /// Free-form client name and version, for the daemon's log.
    pub client: String,
}

/// A VM named by name or id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmRef {
    /// Name or id.
    pub vm: String,
}

/// A VM's snapshot, by VM and snapshot name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSnapshotParams {
    /// VM name or id.
    pub vm: String,
    /// Snapshot name (a DNS label, 1–63 characters).
    pub snapshot: String,
}

/// `vm.fork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmForkParams {
    /// The source VM (name or id); running or paused unless `from` names
    /// one of its snapshots.
    pub source: String,
    /// The new VM's name.
    pub name: String,
    /// Restore this snapshot of the source instead of taking a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// Something named by name or id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRef {
    /// Name or id.
    pub name: String,
}

/// An operation id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpRef {
    /// Operation id.
    pub id: String,
}

/// `vm.create`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmCreateParams {
    /// DNS label, unique.
    pub name: String,
    /// Image name or id; the configured default image when absent.
    #[serde(default)]
    pub image: Option<String>,
    /// vCPUs (1–32); the configured default when absent.
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// Memory in MiB (128–1048576); the configured default when absent.
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// Root disk size; at least the image's size, at most 16 TiB and at
    /// most what the image's ext4 can be grown to.
    #[serde(default)]
    pub disk: Option<ByteSize>,
    /// Work disk size (same bounds, against the work seed's ext4); the
    /// configured `[vm] work_disk` when absent.
    #[serde(default)]
    pub work_disk: Option<ByteSize>,
    /// Create without booting.
    #[serde(default)]
    pub no_start: bool,
}

/// `vm.stop` / `vm.restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmStopParams {
    /// Name or id.
    pub vm: String,
    /// Seconds to wait after Ctrl-Alt-Del before SIGKILL (0–3600); config
    /// default when absent.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// `vm.delete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDeleteParams {
    /// Name or id.
    pub vm: String,
    /// Kill a running VM first instead of refusing.
    #[serde(default)]
    pub force: bool,
}

/// `vm.set`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSetParams {
    /// Name or id.
    pub vm: String,
    /// New vCPU count (1–32).
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// New memory size in MiB (128–1048576).
    #[serde(default)]
    pub memory_mib: Option<u32>,
    /// New root disk size (grow only; bounds as in `vm.create`).
    #[serde(default)]
    pub disk: Option<ByteSize>,
    /// New work disk size (grow only; bounds as in `vm.create`).
    #[serde(default)]
    pub work_disk: Option<ByteSize>,
}

/// Which log `vm.logs` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    /// The guest's serial console.
    #[default]
    Console,
    /// The VMM's own log.
    Vmm,
}

/// `vm.logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmLogsParams {
    /// Name or id.
    pub vm: String,
    /// Console or VMM log.
    #[serde(default)]
    pub source: LogSource,
    /// Number of last lines (1–10000; default 100). Out of range is
    /// `invalid_argument`.
    #[serde(default)]
    pub tail: Option<u32>,
    /// Follow mode: the complete lines written from this byte offset on
    /// (the `end` of the previous answer), at most 4 MiB; `tail` is then
    /// ignored. An offset past the end (the log was truncated or rotated)
    /// reads from the start.
    #[serde(default)]
    pub since: Option<u64>,
}

/// `image.register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRegisterParams {
    /// Unique name.
    pub name: String,
    /// Root filesystem file (copied into the state dir).
    pub rootfs: String,
    /// Kernel file (copied into the state dir); empty when `kernel_name` is given.
    #[serde(default)]
    pub kernel: String,
    /// Optional initrd (copied into the state dir).
    #[serde(default)]
    pub initrd: Option<String>,
    /// A registered kernel (`banger kernel list`) to boot the image with,
    /// instead of `kernel`. The kernel cannot be deleted while the image exists.
    #[serde(default)]
    pub kernel_name: Option<String>,
}

/// `kernel.register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelRegisterParams {
    /// Unique name.
    pub name: String,
    /// ELF vmlinux or bzImage (absolute path; copied or extracted).
    pub file: String,
    /// Version string, when known.
    #[serde(default)]
    pub version: Option<String>,
}

/// `image.promote`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePromoteParams {
    /// The stopped VM (name or id).
    pub vm: String,
    /// Name of the new image.
    pub name: String,
}

/// `image.pull`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePullParams {
    /// Image reference (`registry/repo:tag` or `…@sha256:…`), or a bundle:
    /// an absolute file path or an `http(s)://` URL.
    pub reference: String,
    /// Image name; derived from the repository's last component when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Kernel file to use with the image (absolute path; copied).
    #[serde(default)]
    pub kernel: Option<String>,
    /// Platform `os/arch[/variant]` picked from a manifest list (default `linux/amd64`).
    #[serde(default)]
    pub platform: Option<String>,
    /// A registered kernel (`banger kernel list`) to attach, instead of `kernel`.
    #[serde(default)]
    pub kernel_name: Option<String>,
}

/// `image.build`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageBuildParams {
    /// Image name (default `debian-<suite>`).
    #[serde(default)]
    pub name: Option<String>,
    /// Debian suite (default `bookworm`).
    #[serde(default)]
    pub suite: Option<String>,
    /// Debian mirror URL (default: the host's apt mirror when the host is
    /// Debian, else `http://deb.debian.org/debian`).
    #[serde(default)]
    pub mirror: Option<String>,
    /// Packages installed on top of the default set.
    #[serde(default)]
    pub include: Vec<String>,
    /// Bootstrap again even when a cached tarball matches.
    #[serde(default)]
    pub no_cache: bool,
    /// A registered kernel to boot the image with (default: `microvm`, the
    /// kernel `kernel.build` registers, when it exists).
    #[serde(default)]
    pub kernel_name: Option<String>,
    /// Install Debian's cloud kernel and an initrd in the image instead of
    /// a registered kernel (the default when no `microvm` kernel exists).
    #[serde(default)]
    pub debian_kernel: bool,
}

/// `kernel.build`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelBuildParams {
    /// Kernel name (default `microvm`).
    #[serde(default)]
    pub name: Option<String>,
    /// Build even when the build cache has this source and config.
    #[serde(default)]
    pub no_cache: bool,
}

/// `image.export_bundle`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageExportBundleParams {
    /// Image name or id.
    pub name: String,
    /// Bundle file to create (absolute path; must not exist).
    pub file: String,
}

/// Classes of errors, each with its CLI exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was malformed or a value is out of range.
    InvalidArgument,
    /// The named VM, image or operation does not exist.
    NotFound,
    /// A name is taken or the object is in the wrong state.
    Conflict,
    /// The protocol versions differ.
    VersionMismatch,
    /// The peer may not use this daemon.
    PermissionDenied,
    /// The host or the VMM failed.
    Internal,
    /// A guest or a remote service (a registry) did not answer; the daemon
    /// itself is fine. Retry once it is up.
    Unreachable,
}

impl ErrorKind {
    /// Exit code the CLI uses for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::InvalidArgument => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Conflict => 4,
            ErrorKind::VersionMismatch | ErrorKind::PermissionDenied => 5,
            ErrorKind::Internal | ErrorKind::Unreachable => 1,
        }
    }
}

/// An error returned by the daemon.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub struct RpcError {
    /// Machine-readable class.
    pub kind: ErrorKind,
    /// What failed and what to do about it.
    pub message: String,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl RpcError {
    /// Build an error.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl From<RpcError> for crate::RpcErrorBody {
    fn from(e: RpcError) -> Self {
        crate::RpcErrorBody {
            kind: e.kind,
            message: e.message,
        }
    }
}

impl From<crate::RpcErrorBody> for RpcError {
    fn from(e: crate::RpcErrorBody) -> Self {
        RpcError {
            kind: e.kind,
            message: e.message,
        }
    }
}

/// One request line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// Client-chosen id echoed in the response.
    pub id: u64,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// The request's id.
    pub id: u64,
    /// The payload.
    #[serde(flatten)]
    pub body: ResponseBody,
}

/// What a response line carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseBody {
    /// The final, successful answer.
    Result(serde_json::Value),
    /// The final, failed answer.
    Error(RpcError),
    /// A progress event (more lines follow).
    Event(serde_json::Value),
}

/// Largest request line the daemon reads.
pub const MAX_LINE_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_shape() {
        let env = RequestEnvelope {
            id: 7,
            request: Request::VmStart(VmRef { vm: "dev".into() }),
        };
        let line = serde_json::to_string(&env).unwrap();
        assert_eq!(
            line,
            r#"{"id":7,"method":"vm.start","params":{"vm":"dev"}}"#
        );
        let back: RequestEnvelope = serde_json::from_str(&line).unwrap();
        assert_eq!(back, env);
        let unit: RequestEnvelope = serde_json::from_str(r#"{"id":1,"method":"vm.list"}"#).unwrap();
        assert_eq!(unit.request, Request::VmList);
        assert_eq!(unit.request.method(), "vm.list");
        let doctor: RequestEnvelope =
            serde_json::from_str(r#"{"id":2,"method":"daemon.doctor"}"#).unwrap();
        assert_eq!(doctor.request, Request::Doctor);
        assert_eq!(doctor.request.method(), "daemon.doctor");
    }

    #[test]
    fn unknown_fields_and_methods_are_refused() {
        assert!(
            serde_json::from_str::<RequestEnvelope>(
                r#"{"id":1,"method":"vm.start","params":{"vm":"a","x":1}}"#
            )
            .is_err()
        );
        assert!(serde_json::from_str::<RequestEnvelope>(r#"{"id":1,"method":"vm.nope"}"#).is_err());
    }

    #[test]
    fn response_wire_shape() {
        let r = ResponseEnvelope {
            id: 3,
            body: ResponseBody::Error(RpcError::new(ErrorKind::NotFound, "no VM named x")),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"id":3,"error":{"kind":"not_found","message":"no VM named x"}}"#
        );
        assert_eq!(serde_json::from_str::<ResponseEnvelope>(&line).unwrap(), r);
    }
}

/// `image.refresh_seed`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageRefreshSeedParams {
    /// Only this image (name or id); all images when absent.
    #[serde(default)]
    pub image: Option<String>,
}
