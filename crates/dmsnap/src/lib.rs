//! VM root disks behind one seam, [`RootDiskStrategy`], with two
//! implementations:
//!
//! - [`CopyStrategy`]: the image's root filesystem copied into the VM
//!   directory (FICLONE reflink where the filesystem supports it, sparse
//!   copy otherwise), grown to the VM's disk size.
//! - [`DmSnapshotStrategy`]: the image attached read-only to a loop device,
//!   a per-VM sparse COW file on a second loop device, and a persistent
//!   `dm-snapshot` over both; nothing is copied. Every host change goes
//!   through the privileged-operations seam.
//!
//! Either way the VM's disk is reached at `<vm dir>/root.ext4` (with
//! device-mapper, a symlink to `/dev/mapper/<name>`), so the rest of the
//! daemon does not care which strategy made it. [`choose`] picks
//! device-mapper when `/dev/mapper/control` exists, the copy otherwise.
//! A VM made by the copy keeps being served as a copy by the
//! device-mapper strategy (it tells them apart by `root.dm`).
//!
//! Lifecycle: [`RootDiskStrategy::create`] at `vm create`,
//! [`RootDiskStrategy::ensure`] before every boot (re-assembles a snapshot
//! whose devices a host reboot removed), [`RootDiskStrategy::grow`] for
//! `--disk`, [`RootDiskStrategy::remove`] at `vm delete`, and
//! [`RootDiskStrategy::remove_stale`] at daemon start.
#![warn(missing_docs)]

mod copy;
mod dm;
mod stale;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use copy::{CopyStrategy, close_spares, refill as refill_spare, spare_path};
pub use dm::{CHUNK_SECTORS, COW_SUFFIX, DM_PREFIX, DmRecord, DmSnapshotStrategy, RECORD, dm_name};
pub use stale::{StaleReport, remove_stale};

use banger_privops::PrivilegedOps;

/// File name of the VM's root disk inside its directory.
pub const ROOT_DISK: &str = "root.ext4";

/// Which strategy is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyKind {
    /// [`CopyStrategy`].
    Copy,
    /// [`DmSnapshotStrategy`].
    DmSnapshot,
}

impl StrategyKind {
    /// Human name, as `doctor` shows it.
    pub fn describe(self) -> &'static str {
        match self {
            StrategyKind::Copy => "full copy (reflink where supported, sparse otherwise)",
            StrategyKind::DmSnapshot => "device-mapper snapshot",
        }
    }
}

/// Why a root disk could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum RootDiskError {
    /// Copying or resizing the image failed.
    #[error("cannot copy image {base} into a root disk")]
    Copy {
        /// The image.
        base: PathBuf,
        /// Why.
        #[source]
        source: banger_imagemgr::ImageMgrError,
    },
    /// A file operation failed.
    #[error("cannot {what} {path}")]
    Io {
        /// What was attempted.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Growing a copied disk or its filesystem failed.
    #[error("cannot grow root disk {disk}")]
    Grow {
        /// The disk.
        disk: PathBuf,
        /// Why.
        #[source]
        source: banger_imagemgr::ImageMgrError,
    },
    /// A device-mapper snapshot cannot be larger than its image.
    #[error(
        "VM {vm}: its root disk is a device-mapper snapshot of its image ({image_bytes} bytes), and a snapshot is exactly as large as its origin, so it cannot grow to {wanted_bytes} bytes; leave out --disk (and the [vm] disk setting), or register a larger image and create the VM from it"
    )]
    CannotGrow {
        /// The VM id.
        vm: String,
        /// The image's size.
        image_bytes: u64,
        /// The size asked for.
        wanted_bytes: u64,
    },
    /// The VM has no root disk to start from.
    #[error(
        "VM {vm} has no root disk ({missing} is missing; its creation was interrupted or its files were removed); delete the VM and create it again"
    )]
    Missing {
        /// The VM id.
        vm: String,
        /// The file that should be there.
        missing: PathBuf,
    },
    /// A privileged operation failed (what was made is torn down again).
    #[error("device-mapper root disk for VM {vm}: {step} failed")]
    Priv {
        /// The VM id.
        vm: String,
        /// Which step.
        step: &'static str,
        /// Why.
        #[source]
        source: banger_privops::PrivOpsError,
    },
}

/// The seam: make and remove a VM's root disk.
pub trait RootDiskStrategy: Send + Sync {
    /// Which implementation this is.
    fn kind(&self) -> StrategyKind;

    /// Make VM `vm_id`'s root disk from the image `base` in `vm_dir` (which
    /// exists), at least `disk_bytes` large where the strategy can grow it.
    /// Returns the path the VMM attaches (`<vm_dir>/root.ext4`). On error
    /// nothing made here is left behind.
    fn create(
        &self,
        vm_id: &str,
        base: &Path,
        vm_dir: &Path,
        disk_bytes: u64,
    ) -> Result<PathBuf, RootDiskError>;

    /// Remove what [`create`](Self::create) made; idempotent.
    fn remove(&self, vm_id: &str, vm_dir: &Path) -> Result<(), RootDiskError>;

    /// Whether `vm_dir` holds a root disk this strategy can boot (possibly
    /// after [`ensure`](Self::ensure) re-assembles it). A copy: the file.
    fn present(&self, vm_dir: &Path) -> bool {
        vm_dir.join(ROOT_DISK).exists()
    }

    /// Make sure VM `vm_id`'s root disk can be attached now, before a
    /// boot; returns its path. A copy only checks the file; a snapshot
    /// whose devices are gone (host reboot) is re-assembled from `base`
    /// and the VM's COW file, keeping its writes.
    fn ensure(&self, vm_id: &str, _base: &Path, vm_dir: &Path) -> Result<PathBuf, RootDiskError> {
        let disk = vm_dir.join(ROOT_DISK);
        if disk.exists() {
            Ok(disk)
        } else {
            Err(RootDiskError::Missing {
                vm: vm_id.to_string(),
                missing: disk,
            })
        }
    }

    /// Grow VM `vm_id`'s (stopped) root disk to `disk_bytes` and its ext4
    /// filesystem with it. A copy grows the file and runs resize2fs; a
    /// snapshot refuses ([`RootDiskError::CannotGrow`]).
    fn grow(&self, vm_id: &str, vm_dir: &Path, disk_bytes: u64) -> Result<(), RootDiskError> {
        let _ = vm_id;
        copy::grow(vm_dir, disk_bytes)
    }

    /// Remove host devices left by VMs not in `known` (ids), whose
    /// directories live in `vms_dir`. Nothing to do for strategies that
    /// hold no devices.
    fn remove_stale(
        &self,
        _vms_dir: &Path,
        _known: &std::collections::HashSet<String>,
    ) -> Result<StaleReport, RootDiskError> {
        Ok(StaleReport::default())
    }
}

/// Device-mapper when `<dev_dir>/mapper/control` exists, the copy otherwise.
pub fn choose(dev_dir: &Path, ops: Arc<dyn PrivilegedOps>) -> Arc<dyn RootDiskStrategy> {
    if dev_dir.join("mapper/control").exists() {
        Arc::new(DmSnapshotStrategy::new(ops))
    } else {
        Arc::new(CopyStrategy)
    }
}

/// The kind [`choose`] would pick on this host.
pub fn detect(dev_dir: &Path) -> StrategyKind {
    if dev_dir.join("mapper/control").exists() {
        StrategyKind::DmSnapshot
    } else {
        StrategyKind::Copy
    }
}

pub(crate) fn io<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> RootDiskError + 'a {
    move |source| RootDiskError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
