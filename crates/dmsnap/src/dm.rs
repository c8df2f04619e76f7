//! The device-mapper strategy. Create, in this order: a sparse per-VM COW
//! file, the base image on a read-only loop device, the COW file on a
//! read-write loop device, the dm device `bgroot-<vm id>` with table
//! `0 <sectors> snapshot <base loop> <cow loop> P 8`, a record of the
//! three in `<vm dir>/root.dm`, and the symlink `<vm dir>/root.ext4` →
//! `/dev/mapper/<name>`. A failure at any step undoes the earlier steps in
//! reverse order. Teardown is the reverse: symlink, dm remove, COW loop
//! detach, base loop detach, record and COW file. (Once the dm device
//! holds them the loops are autoclear, so they usually vanish with it; the
//! detaches name their backing file, the helper refuses a device backed by
//! anything else, and such a reused device is left alone.)
//!
//! The devices do not survive a host reboot, the COW file does: before a
//! boot, [`RootDiskStrategy::ensure`] re-assembles a snapshot whose dm
//! device is gone from the image and the untouched COW file (persistent
//! snapshots reload their exceptions), so the VM keeps its writes.
//!
//! A snapshot is exactly as large as its origin, so the disk size is the
//! image's: growing it is refused with [`RootDiskError::CannotGrow`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_privops::{DiskOps, PrivOpsError, PrivilegedOps};
use serde::{Deserialize, Serialize};

use crate::{ROOT_DISK, RootDiskError, RootDiskStrategy, StrategyKind, io};

/// Prefix of the dm devices of VM root disks.
pub const DM_PREFIX: &str = "bgroot-";

/// Name of the per-VM COW file inside the VM directory.
pub const COW_SUFFIX: &str = "root.cow";

/// File recording the devices of a VM's snapshot.
pub const RECORD: &str = "root.dm";

/// Chunk size of the snapshot in 512-byte sectors (4 KiB).
pub const CHUNK_SECTORS: u32 = 8;

/// The dm device name of VM `vm_id`.
pub fn dm_name(vm_id: &str) -> String {
    let id: String = vm_id
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
        .take(100)
        .collect();
    format!("{DM_PREFIX}{id}")
}

/// The devices of one VM's snapshot, as recorded in `<vm dir>/root.dm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmRecord {
    /// dm name.
    pub name: String,
    /// Loop device of the base image.
    pub base_loop: PathBuf,
    /// Loop device of the COW file.
    pub cow_loop: PathBuf,
    /// The image behind `base_loop` (absent in records of older versions).
    #[serde(default)]
    pub base: Option<PathBuf>,
    /// The COW file behind `cow_loop` (absent in records of older versions).
    #[serde(default)]
    pub cow: Option<PathBuf>,
}

impl DmRecord {
    /// Read `<vm_dir>/root.dm`, if any.
    pub fn read(vm_dir: &Path) -> Option<DmRecord> {
        let text = std::fs::read(vm_dir.join(RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Whether loop device `device`, now backed by `file`, is one of this
    /// record's (by device and, where recorded, backing file).
    pub fn owns_loop(&self, device: &Path, file: &Path) -> bool {
        let is = |d: &PathBuf, f: &Option<PathBuf>| {
            d == device && f.as_ref().is_none_or(|f| same_file(f, file))
        };
        is(&self.base_loop, &self.base) || is(&self.cow_loop, &self.cow)
    }
}

/// Paths equal, or equal once symlinks are resolved (the kernel reports
/// resolved backing files).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(x), Ok(y)) => x == y,
            _ => false,
        }
}

/// See the module docs.
pub struct DmSnapshotStrategy {
    ops: Arc<dyn PrivilegedOps>,
}

impl DmSnapshotStrategy {
    /// A strategy performing its host changes through `ops`.
    pub fn new(ops: Arc<dyn PrivilegedOps>) -> Self {
        Self { ops }
    }

    /// Whether the VM in `vm_dir` is a snapshot (else a copy made before
    /// device-mapper was there).
    fn is_snapshot(vm_dir: &Path) -> bool {
        vm_dir.join(RECORD).exists() || vm_dir.join(COW_SUFFIX).exists()
    }

    /// Attach `base` read-only and the existing `cow` read-write, create
    /// the snapshot, record it and link `root.ext4` to it. On error every
    /// device made here is released again (the COW file is left to the
    /// caller).
    fn assemble(
        &self,
        vm_id: &str,
        base: &Path,
        vm_dir: &Path,
        base_bytes: u64,
    ) -> Result<PathBuf, RootDiskError> {
        let name = dm_name(vm_id);
        let cow = vm_dir.join(COW_SUFFIX);
        let record = vm_dir.join(RECORD);
        let link = vm_dir.join(ROOT_DISK);
        let step = priv_step(vm_id);
        // Undo stack, run in reverse on failure.
        let mut undo: Vec<Box<dyn FnOnce() + '_>> = Vec::new();
        let result = (|| {
            let base_loop = self
                .ops
                .loop_attach(base, true)
                .map_err(step("attaching the image read-only"))?;
            let bl = base_loop.clone();
            undo.push(Box::new(move || {
                let _ = detach_ours(self.ops.as_ref(), &bl, base);
            }));
            let cow_loop = self
                .ops
                .loop_attach(&cow, false)
                .map_err(step("attaching the COW file"))?;
            let cl = cow_loop.clone();
            let c = cow.clone();
            undo.push(Box::new(move || {
                let _ = detach_ours(self.ops.as_ref(), &cl, &c);
            }));
            self.ops
                .dm_create_snapshot(
                    &name,
                    base_bytes / 512,
                    (&base_loop, base),
                    (&cow_loop, &cow),
                    CHUNK_SECTORS,
                )
                .map_err(step("creating the snapshot"))?;
            let n = name.clone();
            undo.push(Box::new(move || {
                let _ = self.ops.dm_remove(&n);
            }));
            let rec = DmRecord {
                name: name.clone(),
                base_loop,
                cow_loop,
                base: Some(base.to_path_buf()),
                cow: Some(cow.clone()),
            };
            let json = serde_json::to_vec(&rec).unwrap_or_default();
            let tmp = vm_dir.join("root.dm.partial");
            std::fs::write(&tmp, json).map_err(io("write", &tmp))?;
            std::fs::rename(&tmp, &record).map_err(io("write", &record))?;
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(Path::new("/dev/mapper").join(&name), &link)
                .map_err(io("link", &link))?;
            Ok(link.clone())
        })();
        if result.is_err() {
            while let Some(u) = undo.pop() {
                u();
            }
        }
        result
    }
}

/// Detach `device` while `file` backs it. The helper refuses a device
/// backed by anything else (reused since we attached or listed it): that
/// device is not ours to touch, so it is left alone (`Ok(false)`), with a
/// warning carrying the helper's reason.
pub(crate) fn detach_ours(
    ops: &dyn PrivilegedOps,
    device: &Path,
    file: &Path,
) -> Result<bool, PrivOpsError> {
    match ops.loop_detach(device, file) {
        Err(PrivOpsError::Refused { reason, .. }) => {
            tracing::warn!(device = %device.display(), file = %file.display(), %reason,
                "loop device left alone: not backed by our file");
            Ok(false)
        }
        other => other,
    }
}

/// Error mapper for privileged step `step` of VM `vm_id`.
fn priv_step(
    vm_id: &str,
) -> impl Fn(&'static str) -> Box<dyn FnOnce(PrivOpsError) -> RootDiskError> {
    let vm = vm_id.to_string();
    move |step| {
        let vm = vm.clone();
        Box::new(move |source| RootDiskError::Priv { vm, step, source })
    }
}

/// Size of the COW file for an origin of `base_bytes`: room for every
/// chunk to be written once plus the exception metadata (sparse, so this
/// costs nothing until written).
fn cow_bytes(base_bytes: u64) -> u64 {
    base_bytes + base_bytes / 16 + (8 << 20)
}

fn base_size(base: &Path) -> Result<u64, RootDiskError> {
    Ok(std::fs::metadata(base)
        .map_err(io("read the size of", base))?
        .len())
}

impl RootDiskStrategy for DmSnapshotStrategy {
    fn kind(&self) -> StrategyKind {
        StrategyKind::DmSnapshot
    }

    fn create(
        &self,
        vm_id: &str,
        base: &Path,
        vm_dir: &Path,
        disk_bytes: u64,
    ) -> Result<PathBuf, RootDiskError> {
        let base_bytes = base_size(base)?;
        if disk_bytes > base_bytes {
            return Err(RootDiskError::CannotGrow {
                vm: vm_id.to_string(),
                image_bytes: base_bytes,
                wanted_bytes: disk_bytes,
            });
        }
        let cow = vm_dir.join(COW_SUFFIX);
        let made = (|| {
            let f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&cow)
                    .map_err(io("create", &cow))?
            };
            f.set_len(cow_bytes(base_bytes)).map_err(io("size", &cow))?;
            drop(f);
            self.assemble(vm_id, base, vm_dir, base_bytes)
        })();
        if made.is_err() {
            let _ = std::fs::remove_file(&cow);
            let _ = std::fs::remove_file(vm_dir.join(RECORD));
        }
        made
    }

    fn present(&self, vm_dir: &Path) -> bool {
        if Self::is_snapshot(vm_dir) {
            vm_dir.join(COW_SUFFIX).exists() && vm_dir.join(RECORD).exists()
        } else {
            vm_dir.join(ROOT_DISK).exists()
        }
    }

    fn ensure(&self, vm_id: &str, base: &Path, vm_dir: &Path) -> Result<PathBuf, RootDiskError> {
        if !Self::is_snapshot(vm_dir) {
            return crate::CopyStrategy.ensure(vm_id, base, vm_dir);
        }
        let cow = vm_dir.join(COW_SUFFIX);
        if !cow.exists() {
            return Err(RootDiskError::Missing {
                vm: vm_id.to_string(),
                missing: cow,
            });
        }
        let step = priv_step(vm_id);
        let record = DmRecord::read(vm_dir);
        let name = record
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_else(|| dm_name(vm_id));
        let (dm, loops) = self
            .ops
            .list_disks()
            .map_err(step("listing the host's devices"))?;
        let link = vm_dir.join(ROOT_DISK);
        if dm.contains(&name) {
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(Path::new("/dev/mapper").join(&name), &link)
                    .map_err(io("link", &link))?;
            }
            return Ok(link);
        }
        // The snapshot is gone (host reboot, or a crash mid-create or
        // mid-teardown): release a leftover loop of this VM's COW file
        // (the file is the VM's alone; writing it through two devices
        // would corrupt it), then assemble again over the same COW file.
        // A leftover loop of the image cannot be told from another VM's
        // (they share the image) and is left to reconcile.
        for l in &loops {
            if same_file(&l.backing_file, &cow) {
                detach_ours(self.ops.as_ref(), &l.device, &l.backing_file)
                    .map_err(step("detaching a leftover loop device"))?;
            }
        }
        tracing::info!(vm = vm_id, dm = %name, "re-creating the root-disk snapshot (its devices are gone)");
        let base_bytes = base_size(base)?;
        self.assemble(vm_id, base, vm_dir, base_bytes)
    }

    fn grow(&self, vm_id: &str, vm_dir: &Path, disk_bytes: u64) -> Result<(), RootDiskError> {
        if !Self::is_snapshot(vm_dir) {
            return crate::copy::grow(vm_dir, disk_bytes);
        }
        let image_bytes = DmRecord::read(vm_dir)
            .and_then(|r| r.base)
            .and_then(|b| std::fs::metadata(b).ok())
            .map_or(0, |m| m.len());
        Err(RootDiskError::CannotGrow {
            vm: vm_id.to_string(),
            image_bytes,
            wanted_bytes: disk_bytes,
        })
    }

    fn remove_stale(
        &self,
        vms_dir: &Path,
        known: &std::collections::HashSet<String>,
    ) -> Result<crate::StaleReport, RootDiskError> {
        crate::remove_stale(self.ops.as_ref(), vms_dir, known).map_err(|source| {
            RootDiskError::Priv {
                vm: "(reconcile)".into(),
                step: "removing stale devices",
                source,
            }
        })
    }

    fn remove(&self, vm_id: &str, vm_dir: &Path) -> Result<(), RootDiskError> {
        if !Self::is_snapshot(vm_dir) {
            return crate::CopyStrategy.remove(vm_id, vm_dir);
        }
        let step = priv_step(vm_id);
        let link = vm_dir.join(ROOT_DISK);
        if link.symlink_metadata().is_ok() {
            std::fs::remove_file(&link).map_err(io("remove", &link))?;
        }
        let record = DmRecord::read(vm_dir);
        let name = record
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_else(|| dm_name(vm_id));
        self.ops
            .dm_remove(&name)
            .map_err(step("removing the snapshot"))?;
        if let Some(r) = &record {
            // Records of older versions name no backing files: the helper
            // reports which banger file backs each device, if any.
            let listed = if r.base.is_none() || r.cow.is_none() {
                self.ops
                    .list_disks()
                    .map_err(step("listing the host's devices"))?
                    .1
            } else {
                Vec::new()
            };
            let detach = |device: &Path, file: &Option<PathBuf>| {
                let file = file.clone().or_else(|| {
                    listed
                        .iter()
                        .find(|l| l.device == device)
                        .map(|l| l.backing_file.clone())
                });
                match file {
                    Some(f) => detach_ours(self.ops.as_ref(), device, &f),
                    None => Ok(false),
                }
            };
            detach(&r.cow_loop, &r.cow).map_err(step("detaching the COW file"))?;
            detach(&r.base_loop, &r.base).map_err(step("detaching the image"))?;
        }
        for f in [RECORD, COW_SUFFIX] {
            let p = vm_dir.join(f);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(RootDiskError::Io {
                    what: "remove",
                    path: p,
                    source: e,
                });
            }
        }
        Ok(())
    }
}
