//! The device-mapper strategy. Create, in this order: base image on a
//! read-only loop device, a sparse per-VM COW file on a loop device, the
//! dm device `bgroot-<vm id>` with table
//! `0 <sectors> snapshot <base loop> <cow loop> P 8`, a record of the
//! three in `<vm dir>/root.dm`, and the symlink `<vm dir>/root.ext4` →
//! `/dev/mapper/<name>`. A failure at any step undoes the earlier steps in
//! reverse order. Teardown is the reverse: symlink, dm remove, COW loop
//! detach, base loop detach, record and COW file.
//!
//! A snapshot is exactly as large as its origin, so the disk size is the
//! image's; growing it would need a linear target appended (not done).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_privops::{DiskOps, PrivilegedOps};
use serde::{Deserialize, Serialize};

use crate::{ROOT_DISK, RootDiskError, RootDiskStrategy, StrategyKind, io};

/// Prefix of the dm devices of VM root disks.
pub const DM_PREFIX: &str = "bgroot-";

/// Name of the per-VM COW file inside the VM directory.
pub const COW_SUFFIX: &str = "root.cow";

/// File recording the devices of a VM's snapshot.
const RECORD: &str = "root.dm";

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
}

impl DmRecord {
    /// Read `<vm_dir>/root.dm`, if any.
    pub fn read(vm_dir: &Path) -> Option<DmRecord> {
        let text = std::fs::read(vm_dir.join(RECORD)).ok()?;
        serde_json::from_slice(&text).ok()
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
}

/// Size of the COW file for an origin of `base_bytes`: room for every
/// chunk to be written once plus the exception metadata (sparse, so this
/// costs nothing until written).
fn cow_bytes(base_bytes: u64) -> u64 {
    base_bytes + base_bytes / 16 + (8 << 20)
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
        _disk_bytes: u64,
    ) -> Result<PathBuf, RootDiskError> {
        let base_bytes = std::fs::metadata(base)
            .map_err(io("read the size of", base))?
            .len();
        let name = dm_name(vm_id);
        let cow = vm_dir.join(COW_SUFFIX);
        let record = vm_dir.join(RECORD);
        let link = vm_dir.join(ROOT_DISK);
        let step = |step: &'static str| {
            move |source| RootDiskError::Priv {
                vm: vm_id.to_string(),
                step,
                source,
            }
        };
        // Undo stack, run in reverse on failure.
        let mut undo: Vec<Box<dyn FnOnce() + '_>> = Vec::new();
        let result = (|| {
            let f = std::fs::File::create(&cow).map_err(io("create", &cow))?;
            undo.push(Box::new(|| {
                let _ = std::fs::remove_file(&cow);
            }));
            f.set_len(cow_bytes(base_bytes)).map_err(io("size", &cow))?;
            drop(f);
            let base_loop = self
                .ops
                .loop_attach(base, true)
                .map_err(step("attaching the image read-only"))?;
            let bl = base_loop.clone();
            undo.push(Box::new(move || {
                let _ = self.ops.loop_detach(&bl);
            }));
            let cow_loop = self
                .ops
                .loop_attach(&cow, false)
                .map_err(step("attaching the COW file"))?;
            let cl = cow_loop.clone();
            undo.push(Box::new(move || {
                let _ = self.ops.loop_detach(&cl);
            }));
            self.ops
                .dm_create_snapshot(
                    &name,
                    base_bytes / 512,
                    &base_loop,
                    &cow_loop,
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
            };
            let json = serde_json::to_vec(&rec).unwrap_or_default();
            std::fs::write(&record, json).map_err(io("write", &record))?;
            undo.push(Box::new(|| {
                let _ = std::fs::remove_file(&record);
            }));
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
        let step = |step: &'static str| {
            move |source| RootDiskError::Priv {
                vm: vm_id.to_string(),
                step,
                source,
            }
        };
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
            self.ops
                .loop_detach(&r.cow_loop)
                .map_err(step("detaching the COW file"))?;
            self.ops
                .loop_detach(&r.base_loop)
                .map_err(step("detaching the image"))?;
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
