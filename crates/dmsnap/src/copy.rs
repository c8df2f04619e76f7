//! The copy strategy: reflink or sparse copy under a temporary name,
//! grown and renamed into place, so a crash never leaves a half-copied
//! disk that looks complete.

use std::path::{Path, PathBuf};

use crate::{ROOT_DISK, RootDiskError, RootDiskStrategy, StrategyKind, io};

/// See the crate docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyStrategy;

impl RootDiskStrategy for CopyStrategy {
    fn kind(&self) -> StrategyKind {
        StrategyKind::Copy
    }

    fn create(
        &self,
        vm_id: &str,
        base: &Path,
        vm_dir: &Path,
        disk_bytes: u64,
    ) -> Result<PathBuf, RootDiskError> {
        let partial = vm_dir.join("root.ext4.partial");
        let _ = std::fs::remove_file(&partial);
        let copy = |source| RootDiskError::Copy {
            base: base.to_path_buf(),
            source,
        };
        let made = (|| {
            let method = banger_imagemgr::clone_or_copy(base, &partial).map_err(copy)?;
            if banger_imagemgr::grow_file(&partial, disk_bytes).map_err(copy)? {
                banger_imagemgr::resize_ext4(&partial).map_err(copy)?;
            }
            Ok(method)
        })();
        let method = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
        let disk = vm_dir.join(ROOT_DISK);
        std::fs::rename(&partial, &disk).map_err(io("rename into place", &disk))?;
        tracing::debug!(vm = vm_id, disk = %disk.display(), ?method, "root disk copied");
        Ok(disk)
    }

    fn remove(&self, _vm_id: &str, vm_dir: &Path) -> Result<(), RootDiskError> {
        for f in [ROOT_DISK, "root.ext4.partial"] {
            let p = vm_dir.join(f);
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(RootDiskError::Io {
                        what: "remove",
                        path: p,
                        source: e,
                    });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Grow the copied disk in `vm_dir` to `disk_bytes` and resize its ext4.
pub(crate) fn grow(vm_dir: &Path, disk_bytes: u64) -> Result<(), RootDiskError> {
    let disk = vm_dir.join(ROOT_DISK);
    let err = |source| RootDiskError::Grow {
        disk: disk.clone(),
        source,
    };
    if banger_imagemgr::grow_file(&disk, disk_bytes).map_err(err)? {
        banger_imagemgr::resize_ext4(&disk).map_err(err)?;
    }
    Ok(())
}
