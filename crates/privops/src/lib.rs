//! The privileged-operations seam.
//!
//! Everything the owner daemon does that needs privilege on the supported
//! host path goes through [`PrivilegedOps::execute`] with one [`PrivOp`]:
//! a closed set of typed operations, each answered by a [`PrivReply`].
//! Two implementations exist: [`LocalPrivOps`], the in-process adapter
//! used on the dev path, and [`RootHelperClient`], the RPC client of
//! `bangerd-root` on the system path (protocol in [`wire`]). Both validate the same preconditions, written on each
//! variant, so a caller cannot tell them apart.
//!
//! The trait is synchronous: every operation is a short syscall sequence.
//! Async callers run it directly when it is quick (spawn, signal) and on a
//! blocking thread otherwise.
#![warn(missing_docs)]

pub mod beneath;
mod client;
mod disk_op;
mod host;
mod limits;
mod local;
mod nat;
mod net_op;
mod netlink;
mod notify;
mod op;
mod policy;
mod proc;
pub mod wire;

pub use client::RootHelperClient;

mod tap;

pub use disk_op::{
    DM_CONTROL, DevNum, LOOP_MAJOR, LoopInfo, MAX_DM_NAME, dm_name_ok, is_loop_device,
    loop_backing_file, loop_set_autoclear, parse_snapshot_table, snapshot_params, snapshot_table,
};
pub use host::{IP_FORWARD, ip_forward, resolved_running};
pub use limits::{
    ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, ACCEPT_LOG_EVERY, AcceptBackoff, AcceptFailure,
    LogLimiter, NofileLimit, is_exhaustion, raise_and_log_nofile_limit, raise_nofile_limit,
};
pub use local::LocalPrivOps;
pub use notify::{notify_ready, notify_status, notify_stopping};

/// banger's links (name prefix `prefix`) as rtnetlink reports them; a
/// read-only query that needs no privilege (`banger doctor` uses it).
pub fn read_links(prefix: &str) -> Result<Vec<LinkInfo>, PrivOpsError> {
    netlink::list(prefix)
}
pub use nat::{
    NAT_TABLE, NFT, list_ruleset as nft_ruleset, present as nat_table_present,
    ruleset as nat_ruleset,
};
pub use op::{LinkInfo, PrivOp, PrivReply, SpawnVmm, VMM_LOCK_HELD, VmmSignal};
pub use policy::{MAX_IFNAME, Policy};
pub use proc::{
    FileId, FoundVmm, ProcIdentity, cmdline_flag, file_id, is_same_process, read_identity,
    scan_vmms, start_time,
};
pub use tap::{TAP_FLAGS, TUN_DEVICE, open_tap, open_tap_at};

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Why a privileged operation failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrivOpsError {
    /// A field broke the operation's preconditions; nothing was done.
    #[error("refused {op}: {reason}")]
    Refused {
        /// Operation name.
        op: &'static str,
        /// Which rule it broke.
        reason: String,
    },
    /// Starting the VMM binary failed.
    #[error("cannot start VMM binary {binary}")]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file the operation needed could not be prepared.
    #[error("cannot prepare {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A signal could not be delivered.
    #[error("cannot signal process {pid}")]
    Signal {
        /// Target.
        pid: u32,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The helper socket could not be reached.
    #[error(
        "cannot reach bangerd-root at {socket}; is it running? (`banger system status`, or start bangerd-root)"
    )]
    HelperUnavailable {
        /// The socket.
        socket: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The helper answered with an error other than a refusal, or broke the protocol.
    #[error("{op} through bangerd-root failed: {message}")]
    Helper {
        /// Operation name.
        op: &'static str,
        /// The helper's reason.
        message: String,
    },
    /// A netlink request failed.
    #[error("{op} failed on {device:?}: {message}")]
    Netlink {
        /// Operation name.
        op: &'static str,
        /// The link.
        device: String,
        /// The kernel's answer.
        message: String,
    },
    /// A TAP ioctl failed.
    #[error("cannot {what} TAP {name} (needs root or CAP_NET_ADMIN)")]
    Tap {
        /// The TAP.
        name: String,
        /// Which step.
        what: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// `nft` failed.
    #[error("nftables: {message}")]
    Nft {
        /// nft's stderr or what went wrong running it.
        message: String,
    },
    /// Another helper program failed.
    #[error("{program} failed: {message}")]
    Command {
        /// The program.
        program: &'static str,
        /// Its stderr.
        message: String,
    },
    /// A loop-device ioctl failed.
    #[error("cannot {what} {target} (needs root and /dev/loop-control)")]
    Loop {
        /// Which step.
        what: &'static str,
        /// The device or backing file.
        target: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A device-mapper ioctl failed.
    #[error("device-mapper: cannot {what} {name}: {message}")]
    DeviceMapper {
        /// Which step.
        what: &'static str,
        /// The dm device.
        name: String,
        /// The kernel's or library's answer, with a hint.
        message: String,
    },
}

/// The seam. See the crate docs.
pub trait PrivilegedOps: Send + Sync {
    /// Perform `op`, or refuse it without side effects.
    fn execute(&self, op: PrivOp) -> Result<PrivReply, PrivOpsError>;

    /// Spawn a VMM; returns its PID and start time (clock ticks since boot).
    fn spawn_vmm(&self, spec: SpawnVmm) -> Result<(u32, u64), PrivOpsError> {
        match self.execute(PrivOp::SpawnVmm(spec))? {
            PrivReply::Spawned { pid, start_time } => Ok((pid, start_time)),
            other => Err(unexpected("spawn_vmm", &other)),
        }
    }

    /// Signal the VMM `pid` that started at `start_time`; `Ok(false)` when
    /// it was already gone.
    fn signal_vmm(
        &self,
        pid: u32,
        start_time: u64,
        signal: VmmSignal,
    ) -> Result<bool, PrivOpsError> {
        match self.execute(PrivOp::SignalVmm {
            pid,
            start_time,
            signal,
        })? {
            PrivReply::Signalled { delivered } => Ok(delivered),
            other => Err(unexpected("signal_vmm", &other)),
        }
    }
}

/// Typed wrappers of the network operations (see each [`PrivOp`] variant).
pub trait NetOps: PrivilegedOps {
    /// [`PrivOp::EnsureBridge`].
    fn ensure_bridge(&self, name: &str, gateway: Ipv4Addr, prefix: u8) -> Result<(), PrivOpsError> {
        done(
            self.execute(PrivOp::EnsureBridge {
                name: name.into(),
                gateway,
                prefix,
            })?,
            "ensure_bridge",
        )
    }
    /// [`PrivOp::CreateTap`].
    fn create_tap(&self, name: &str, bridge: &str) -> Result<(), PrivOpsError> {
        done(
            self.execute(PrivOp::CreateTap {
                name: name.into(),
                bridge: bridge.into(),
            })?,
            "create_tap",
        )
    }
    /// [`PrivOp::DeleteLink`]; `Ok(false)` when absent.
    fn delete_link(&self, name: &str) -> Result<bool, PrivOpsError> {
        removed(
            self.execute(PrivOp::DeleteLink { name: name.into() })?,
            "delete_link",
        )
    }
    /// [`PrivOp::ListLinks`].
    fn list_links(&self) -> Result<Vec<LinkInfo>, PrivOpsError> {
        match self.execute(PrivOp::ListLinks)? {
            PrivReply::Links { links } => Ok(links),
            other => Err(unexpected("list_links", &other)),
        }
    }
    /// [`PrivOp::ApplyNat`].
    fn apply_nat(&self, bridge: &str, network: Ipv4Addr, prefix: u8) -> Result<(), PrivOpsError> {
        done(
            self.execute(PrivOp::ApplyNat {
                bridge: bridge.into(),
                network,
                prefix,
            })?,
            "apply_nat",
        )
    }
    /// [`PrivOp::RemoveNat`]; `Ok(false)` when absent.
    fn remove_nat(&self) -> Result<bool, PrivOpsError> {
        removed(self.execute(PrivOp::RemoveNat)?, "remove_nat")
    }
    /// [`PrivOp::SetIpForward`]; returns the previous value.
    fn set_ip_forward(&self, enabled: bool) -> Result<bool, PrivOpsError> {
        match self.execute(PrivOp::SetIpForward { enabled })? {
            PrivReply::Forwarding { previous } => Ok(previous),
            other => Err(unexpected("set_ip_forward", &other)),
        }
    }
    /// [`PrivOp::ResolverRoute`].
    fn resolver_route(
        &self,
        bridge: &str,
        dns: Ipv4Addr,
        revert: bool,
    ) -> Result<(), PrivOpsError> {
        done(
            self.execute(PrivOp::ResolverRoute {
                bridge: bridge.into(),
                dns,
                revert,
            })?,
            "resolver_route",
        )
    }
}

impl<T: PrivilegedOps + ?Sized> NetOps for T {}

/// Typed wrappers of the disk operations (see each [`PrivOp`] variant).
pub trait DiskOps: PrivilegedOps {
    /// [`PrivOp::LoopAttach`]; returns `/dev/loopN`.
    fn loop_attach(
        &self,
        file: &std::path::Path,
        read_only: bool,
    ) -> Result<PathBuf, PrivOpsError> {
        match self.execute(PrivOp::LoopAttach {
            file: file.into(),
            read_only,
        })? {
            PrivReply::LoopAttached { device } => Ok(device),
            other => Err(unexpected("loop_attach", &other)),
        }
    }
    /// [`PrivOp::LoopDetach`]: detach `device` only while `backing_file`
    /// backs it; `Ok(false)` when not attached (or the file is gone),
    /// refused when something else backs it.
    fn loop_detach(
        &self,
        device: &std::path::Path,
        backing_file: &std::path::Path,
    ) -> Result<bool, PrivOpsError> {
        removed(
            self.execute(PrivOp::LoopDetach {
                device: device.into(),
                backing_file: backing_file.into(),
            })?,
            "loop_detach",
        )
    }
    /// [`PrivOp::DmCreateSnapshot`]; `base` and `cow` are each
    /// `(loop device, the banger file backing it)`.
    fn dm_create_snapshot(
        &self,
        name: &str,
        sectors: u64,
        base: (&std::path::Path, &std::path::Path),
        cow: (&std::path::Path, &std::path::Path),
        chunk_sectors: u32,
    ) -> Result<(), PrivOpsError> {
        done(
            self.execute(PrivOp::DmCreateSnapshot {
                name: name.into(),
                sectors,
                base: base.0.into(),
                base_file: base.1.into(),
                cow: cow.0.into(),
                cow_file: cow.1.into(),
                chunk_sectors,
            })?,
            "dm_create_snapshot",
        )
    }
    /// [`PrivOp::DmRemove`]; `Ok(false)` when absent.
    fn dm_remove(&self, name: &str) -> Result<bool, PrivOpsError> {
        removed(
            self.execute(PrivOp::DmRemove { name: name.into() })?,
            "dm_remove",
        )
    }
    /// [`PrivOp::ListDisks`]: `(dm names, loop devices)`.
    fn list_disks(&self) -> Result<(Vec<String>, Vec<LoopInfo>), PrivOpsError> {
        match self.execute(PrivOp::ListDisks)? {
            PrivReply::Disks { dm, loops } => Ok((dm, loops)),
            other => Err(unexpected("list_disks", &other)),
        }
    }
}

impl<T: PrivilegedOps + ?Sized> DiskOps for T {}

fn done(reply: PrivReply, op: &'static str) -> Result<(), PrivOpsError> {
    match reply {
        PrivReply::Done => Ok(()),
        other => Err(unexpected(op, &other)),
    }
}

fn removed(reply: PrivReply, op: &'static str) -> Result<bool, PrivOpsError> {
    match reply {
        PrivReply::Removed { existed } => Ok(existed),
        other => Err(unexpected(op, &other)),
    }
}

fn unexpected(op: &'static str, reply: &PrivReply) -> PrivOpsError {
    PrivOpsError::Refused {
        op,
        reason: format!("unexpected reply {reply:?}"),
    }
}
