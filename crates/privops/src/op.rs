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
    /// inherited fd: two VMMs on one VM's disks are impossible. Its
    /// directory is the VMM's working directory.
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
    /// up; idempotent. An existing link of that name must be banger's
    /// bridge (kind `bridge`, every port a banger TAP); otherwise refused.
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
    /// to `bridge` and bring it up; idempotent on an existing TAP, which
    /// must be banger's (kind `tun`, TAP mode, owned by the owner uid):
    /// anything else of that name is refused, never taken over (the TAP
    /// is created with `IFF_TUN_EXCL`, so a link appearing meanwhile is
    /// not reused either). The bridge must be banger's bridge.
    ///
    /// Preconditions: `name` and `bridge` pass `check_device`; the bridge
    /// exists.
    CreateTap {
        /// TAP name.
        name: String,
        /// Bridge to attach to.
        bridge: String,
    },
    /// Delete a banger link: a TAP owned by the owner uid, or a bridge
    /// whose every port is such a TAP. A missing link is not an error (the
    /// reply says `existed: false`); a prefixed link that is not banger's
    /// is refused.
    ///
    /// Preconditions: `name` passes `check_device`.
    DeleteLink {
        /// Link name.
        name: String,
    },
    /// List banger's links: those with the policy's prefix that
    /// [`PrivOp::DeleteLink`] would accept.
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
    /// Preconditions: `bridge` passes `check_device` and, when it exists,
    /// is banger's bridge (kind `bridge`, only banger TAPs as ports); `dns`
    /// is inside the guest subnet; systemd-resolved runs (otherwise
    /// refused with a hint).
    ResolverRoute {
        /// The bridge.
        bridge: String,
        /// The DNS server address (the gateway).
        dns: Ipv4Addr,
        /// Undo instead (`resolvectl revert`).
        revert: bool,
    },
    /// Attach `file` to a free loop device (`LOOP_CTL_GET_FREE` +
    /// `LOOP_SET_FD`, through the `loopdev` crate), read-only when asked;
    /// the reply names the device.
    ///
    /// By construction: the helper opens `file` itself, beneath the state
    /// directory (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`)
    /// with the owner's filesystem identity, `O_RDONLY` when `read_only`
    /// (the loop is then read-only) and `O_RDWR` otherwise; the file must
    /// be a regular file owned by the policy's owner uid, and that very fd
    /// is attached. No path is checked and then opened again.
    ///
    /// Preconditions: `file` lies lexically below the state directory
    /// (absolute, no `.`/`..`).
    LoopAttach {
        /// The backing file.
        file: PathBuf,
        /// Attach read-only.
        read_only: bool,
    },
    /// Detach a loop device, only while it is backed by `backing_file`:
    /// the device's `(lo_device, lo_inode)` (`LOOP_GET_STATUS64`, read on
    /// the helper's own fd of the device, which also keeps the binding
    /// from changing until the detach) must equal `(st_dev, st_ino)` of
    /// `backing_file` opened beneath the state directory, no symlinks, and
    /// owned by the owner uid. `existed: false` when the device is not
    /// attached (or the file is gone); refused when it is backed by
    /// anything else.
    ///
    /// Preconditions: `device` is exactly `/dev/loopN`; `backing_file`
    /// lies lexically below the state directory.
    LoopDetach {
        /// The loop device.
        device: PathBuf,
        /// The banger file that must back it.
        backing_file: PathBuf,
    },
    /// Create the dm device `name`: a persistent `dm-snapshot` of the loop
    /// device `base` whose exceptions live on the loop device `cow` (an
    /// existing COW is reused as it is, so a snapshot re-created after a
    /// reboot keeps its writes).
    ///
    /// By construction: both loop devices are opened by the helper (block
    /// devices of the loop major), and each must be backed (`lo_device`,
    /// `lo_inode`) by its named banger file (`base_file`, `cow_file`,
    /// opened beneath the state directory, no symlinks, owned by the owner
    /// uid); `base` must be attached read-only. The table
    /// ([`snapshot_table`](crate::snapshot_table)) is built from the
    /// `major:minor` numbers read from those device fds, never from the
    /// request. Effects, through the `devicemapper` crate: create, load
    /// the table, resume; both loops are marked autoclear (the dm device
    /// holds them, so they detach themselves when it is removed);
    /// `/dev/mapper/<name>` is made when udev did not make it; and the
    /// node of this dm device (checked to be that block device) is given
    /// to the policy's owner uid (the VMM runs as the owner and opens it
    /// read-write). A failure after the create removes the dm device.
    ///
    /// Preconditions: `name` carries the policy's prefix (see
    /// [`dm_name_ok`](crate::dm_name_ok)); `base` and `cow` are distinct
    /// `/dev/loopN`; the files lie lexically below the state directory;
    /// `sectors` is in `1..=2^40`; `chunk_sectors` is a power of two in
    /// `8..=2048`.
    DmCreateSnapshot {
        /// dm device name (`/dev/mapper/<name>`).
        name: String,
        /// Size in 512-byte sectors.
        sectors: u64,
        /// The read-only origin's loop device.
        base: PathBuf,
        /// The banger file backing `base` (the image).
        base_file: PathBuf,
        /// The COW store's loop device.
        cow: PathBuf,
        /// The banger file backing `cow` (the VM's COW file).
        cow_file: PathBuf,
        /// Chunk size in sectors.
        chunk_sectors: u32,
    },
    /// Remove a dm device; `existed: false` when absent. Only banger's:
    /// the name carries the prefix and its live table is one `snapshot`
    /// target whose two devices are loop devices backed by banger files
    /// (beneath the state directory, owned by the owner uid); anything
    /// else is refused.
    ///
    /// Preconditions: `name` carries the policy's prefix.
    DmRemove {
        /// dm device name.
        name: String,
    },
    /// banger's dm devices (prefix, and a table that [`PrivOp::DmRemove`]
    /// would accept) and the loop devices backed by banger files (the
    /// [`PrivOp::LoopDetach`] rule); for reconcile.
    ListDisks,
}

impl PrivOp {
    /// Check every field against `policy`; on success return the operation
    /// to perform. Paths come back as given (lexically below the policy's
    /// roots, without `..`): execution opens them beneath those roots with
    /// no symlink following, so nothing checked here is ever re-opened by
    /// path. Nothing is touched on failure.
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
