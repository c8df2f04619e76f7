//! The closed set of privileged operations and their replies.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{Policy, PrivOpsError};

/// Start a VMM process (Firecracker or anything speaking its API).
///
/// Preconditions: `binary` is the policy's `vmm_binary`; `id` is 1–64
/// characters of ASCII alphanumerics and `-` (Firecracker's `--id` rule);
/// every path lies beneath the policy's state or runtime directory (checked
/// lexically by `validate`, then *opened* by the executor beneath a
/// directory fd of that root with `openat2(RESOLVE_BENEATH |
/// RESOLVE_NO_SYMLINKS)`, with the owner's filesystem identity, and
/// required to be the owner's regular files); the API socket's directory
/// exists (opened the same way) and the socket name in it does not
/// (Firecracker refuses to start on a leftover socket).
///
/// Effects: `lock_file` is opened (created) and locked with
/// `flock(LOCK_EX | LOCK_NB)`; a held lock is refused with
/// [`VMM_LOCK_HELD`] (another VMM runs on this VM's disks). The locked fd
/// is inherited by the VMM, so the lock lives exactly as long as the VMM
/// (and whatever it forks). The process runs in its own process group (so
/// terminal signals aimed at the daemon do not reach it, and it outlives a
/// daemon crash) with stdin from `/dev/null`, stdout (the guest serial
/// console) appended to `console_log`, stderr appended to `stderr_log`.
/// `exit_status_file` is opened (truncated) before the spawn; when the
/// process ends, a line describing its exit status is written through
/// that fd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnVmm {
    /// The VMM binary.
    pub binary: PathBuf,
    /// `--api-sock`.
    pub api_sock: PathBuf,
    /// `--id`.
    pub id: String,
    /// Receives the VMM's stdout (serial console).
    pub console_log: PathBuf,
    /// Receives the VMM's stderr.
    pub stderr_log: PathBuf,
    /// Written with the exit status once the process ends.
    pub exit_status_file: PathBuf,
    /// Per-VM lock (e.g. `<vm dir>/vmm.lock`), held by the VMM through an
    /// inherited fd: two VMMs on one VM's disks are impossible.
    pub lock_file: PathBuf,
}

/// The start of the refusal reason when a `SpawnVmm`'s `lock_file` is held.
pub const VMM_LOCK_HELD: &str = "a VMM still runs on this VM's disks";

/// Signals the daemon may send to a VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmmSignal {
    /// SIGTERM.
    Term,
    /// SIGKILL.
    Kill,
}

/// A privileged operation. One `match` in each implementation handles them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrivOp {
    /// See [`SpawnVmm`].
    SpawnVmm(SpawnVmm),
    /// Signal a VMM.
    ///
    /// Preconditions: `pid` is in `2..=i32::MAX`. The executor opens a
    /// pidfd for `pid` first, then checks through `/proc/<pid>` that the
    /// process's real and effective uid are the policy's owner uid, that it
    /// started at `start_time` (clock ticks since boot, so a recycled pid
    /// never matches) and that its executable is the policy's `vmm_binary`
    /// (same `(st_dev, st_ino)`), and only then signals through the pidfd.
    /// Anything else is refused. A process that is gone (or a zombie) is
    /// not an error: the reply says `delivered: false`.
    SignalVmm {
        /// Target process.
        pid: u32,
        /// Its start time, as [`PrivReply::Spawned`] reported it.
        start_time: u64,
        /// Which signal.
        signal: VmmSignal,
    },
    /// Create the bridge if missing, give it `gateway/prefix` and bring it
    /// up; idempotent.
    ///
    /// Preconditions: `name` passes `check_device`; `gateway` is inside the
    /// guest subnet and `prefix` is the subnet's prefix length.
    EnsureBridge {
        /// Bridge name.
        name: String,
        /// Host address on the bridge.
        gateway: Ipv4Addr,
        /// Prefix length of the subnet.
        prefix: u8,
    },
    /// Create a persistent TAP (`IFF_TAP|IFF_NO_PI|IFF_VNET_HDR`, the flags
    /// Firecracker opens it with) owned by the policy's owner uid, attach it
    /// to `bridge` and bring it up; idempotent on an existing TAP.
    ///
    /// Preconditions: `name` and `bridge` pass `check_device`; the bridge
    /// exists.
    CreateTap {
        /// TAP name.
        name: String,
        /// Bridge to attach to.
        bridge: String,
    },
    /// Delete a banger link (TAP or bridge). A missing link is not an error:
    /// the reply says `existed: false`.
    ///
    /// Preconditions: `name` passes `check_device`.
    DeleteLink {
        /// Link name.
        name: String,
    },
    /// List every link whose name carries the policy's prefix.
    ListLinks,
    /// Replace banger's nftables table ([`NAT_TABLE`](crate::NAT_TABLE),
    /// family `inet`) in one `nft -j -f -` transaction: masquerade for the
    /// guest subnet out of every interface but `bridge`, forward accept
    /// from the bridge and for replies to it.
    ///
    /// Preconditions: `bridge` passes `check_device`; `(network, prefix)` is
    /// exactly the policy's subnet.
    ApplyNat {
        /// The bridge.
        bridge: String,
        /// Subnet address.
        network: Ipv4Addr,
        /// Subnet prefix length.
        prefix: u8,
    },
    /// Delete banger's nftables table; `existed: false` when absent.
    RemoveNat,
    /// Set `net.ipv4.ip_forward`; the reply carries the previous value so
    /// the caller can restore it.
    SetIpForward {
        /// The new value.
        enabled: bool,
    },
    /// Route `~vm` queries to `dns` through systemd-resolved on `bridge`
    /// (`resolvectl dns` + `resolvectl domain`), or undo it (`revert`).
    ///
    /// Preconditions: `bridge` passes `check_device`; `dns` is inside the
    /// guest subnet; systemd-resolved runs (otherwise refused with a hint).
    ResolverRoute {
        /// The bridge.
        bridge: String,
        /// The DNS server address (the gateway).
        dns: Ipv4Addr,
        /// Undo instead (`resolvectl revert`).
        revert: bool,
    },
    /// Attach `file` to a free loop device (`LOOP_CTL_GET_FREE` +
    /// `LOOP_CONFIGURE`/`LOOP_SET_FD`, through the `loopdev` crate),
    /// read-only when asked; the reply names the device.
    ///
    /// Preconditions: `file` passes `check_path`.
    LoopAttach {
        /// The backing file.
        file: PathBuf,
        /// Attach read-only.
        read_only: bool,
    },
    /// Detach a loop device; `existed: false` when it was not attached,
    /// or when `backing_file` is given and the device is now backed by
    /// another file (it was auto-cleared and reused meanwhile: not ours).
    ///
    /// Preconditions: `device` is exactly `/dev/loopN`; `backing_file`,
    /// when given, passes `check_path`.
    LoopDetach {
        /// The loop device.
        device: PathBuf,
        /// Detach only while this file backs the device.
        #[serde(default)]
        backing_file: Option<PathBuf>,
    },
    /// Create the dm device `name` with the table
    /// [`snapshot_table`](crate::snapshot_table)`(sectors, base, cow,
    /// chunk_sectors)`: a persistent `dm-snapshot` of `base` whose
    /// exceptions live on `cow` (an existing COW is reused as it is, so a
    /// snapshot re-created after a reboot keeps its writes). The table is
    /// built by the implementation, never taken from the request. Effects,
    /// through the `devicemapper` crate: create, load the table, resume;
    /// then both loop devices are marked autoclear (the dm device holds
    /// them, so they detach themselves when it is removed),
    /// `/dev/mapper/<name>` is made when udev did not make it, and the
    /// device node is given to the policy's owner uid (the VMM runs as the
    /// owner and opens it read-write). A failure after the create removes
    /// the dm device again.
    ///
    /// Preconditions: `name` carries the policy's prefix (see
    /// [`dm_name_ok`](crate::dm_name_ok)); `base` and `cow` are distinct
    /// `/dev/loopN`; `sectors` is in `1..=2^40`; `chunk_sectors` is a power
    /// of two in `8..=2048`.
    DmCreateSnapshot {
        /// dm device name (`/dev/mapper/<name>`).
        name: String,
        /// Size in 512-byte sectors.
        sectors: u64,
        /// The read-only origin.
        base: PathBuf,
        /// The COW store.
        cow: PathBuf,
        /// Chunk size in sectors.
        chunk_sectors: u32,
    },
    /// Remove a dm device; `existed: false` when absent.
    ///
    /// Preconditions: `name` carries the policy's prefix.
    DmRemove {
        /// dm device name.
        name: String,
    },
    /// banger's dm devices (prefix) and the loop devices whose backing
    /// file is inside banger's directories; for reconcile.
    ListDisks,
}

impl PrivOp {
    /// Check every field against `policy`; on success return the operation
    /// to perform (for disk and network operations with their paths
    /// resolved; process operations keep their paths, which the executor
    /// opens beneath the policy's roots without following symlinks).
    /// Nothing is touched on failure.
    pub fn validate(self, policy: &Policy) -> Result<PrivOp, PrivOpsError> {
        let op = self.name();
        match self {
            PrivOp::SpawnVmm(s) => {
                let id_ok = !s.id.is_empty()
                    && s.id.len() <= 64
                    && s.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !id_ok {
                    return Err(PrivOpsError::Refused {
                        op,
                        reason: format!("invalid VMM id {:?}: 1-64 letters, digits or '-'", s.id),
                    });
                }
                if s.binary != policy.vmm_binary {
                    return Err(PrivOpsError::Refused {
                        op,
                        reason: format!(
                            "{} is not the configured VMM binary {}",
                            s.binary.display(),
                            policy.vmm_binary.display()
                        ),
                    });
                }
                for p in [
                    &s.api_sock,
                    &s.console_log,
                    &s.stderr_log,
                    &s.exit_status_file,
                    &s.lock_file,
                ] {
                    // Lexically beneath a root, and (a first filter; the
                    // executor's no-symlink open is what holds) not
                    // resolving outside either.
                    policy.beneath(op, p)?;
                    policy.check_path(op, p)?;
                }
                Ok(PrivOp::SpawnVmm(s))
            }
            PrivOp::SignalVmm {
                pid,
                start_time,
                signal,
            } => {
                if pid <= 1 || pid > i32::MAX as u32 {
                    return Err(PrivOpsError::Refused {
                        op,
                        reason: format!("invalid pid {pid}"),
                    });
                }
                Ok(PrivOp::SignalVmm {
                    pid,
                    start_time,
                    signal,
                })
            }
            op @ (PrivOp::LoopAttach { .. }
            | PrivOp::LoopDetach { .. }
            | PrivOp::DmCreateSnapshot { .. }
            | PrivOp::DmRemove { .. }
            | PrivOp::ListDisks) => crate::disk_op::validate(op, policy),
            other => crate::net_op::validate(other, policy),
        }
    }

    /// Short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            PrivOp::SpawnVmm(_) => "spawn_vmm",
            PrivOp::SignalVmm { .. } => "signal_vmm",
            PrivOp::EnsureBridge { .. } => "ensure_bridge",
            PrivOp::CreateTap { .. } => "create_tap",
            PrivOp::DeleteLink { .. } => "delete_link",
            PrivOp::ListLinks => "list_links",
            PrivOp::ApplyNat { .. } => "apply_nat",
            PrivOp::RemoveNat => "remove_nat",
            PrivOp::SetIpForward { .. } => "set_ip_forward",
            PrivOp::ResolverRoute { .. } => "resolver_route",
            PrivOp::LoopAttach { .. } => "loop_attach",
            PrivOp::LoopDetach { .. } => "loop_detach",
            PrivOp::DmCreateSnapshot { .. } => "dm_create_snapshot",
            PrivOp::DmRemove { .. } => "dm_remove",
            PrivOp::ListDisks => "list_disks",
        }
    }
}

/// The typed answer to a [`PrivOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrivReply {
    /// [`PrivOp::SpawnVmm`] succeeded.
    Spawned {
        /// PID of the new VMM.
        pid: u32,
        /// Its start time in clock ticks since boot (`/proc/<pid>/stat`
        /// field 22): with the pid, what [`PrivOp::SignalVmm`] needs.
        start_time: u64,
    },
    /// [`PrivOp::SignalVmm`] finished.
    Signalled {
        /// False when the process was already gone.
        delivered: bool,
    },
    /// A network operation finished.
    Done,
    /// [`PrivOp::DeleteLink`] / [`PrivOp::RemoveNat`] finished.
    Removed {
        /// False when there was nothing to remove.
        existed: bool,
    },
    /// [`PrivOp::ListLinks`].
    Links {
        /// banger's links.
        links: Vec<LinkInfo>,
    },
    /// [`PrivOp::SetIpForward`]: the value before the change.
    Forwarding {
        /// Previous `net.ipv4.ip_forward`.
        previous: bool,
    },
    /// [`PrivOp::LoopAttach`]: the device now backed by the file.
    LoopAttached {
        /// `/dev/loopN`.
        device: PathBuf,
    },
    /// [`PrivOp::ListDisks`].
    Disks {
        /// banger's dm device names.
        dm: Vec<String>,
        /// Loop devices backed by files inside banger's directories.
        loops: Vec<crate::LoopInfo>,
    },
}

/// One banger link, as [`PrivOp::ListLinks`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// Interface name.
    pub name: String,
    /// `bridge`, `tun`, or another rtnetlink kind (empty when unknown).
    pub kind: String,
    /// Administratively up.
    pub up: bool,
    /// Name of the bridge it is attached to.
    pub controller: Option<String>,
}
