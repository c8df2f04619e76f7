//! The copy strategy: reflink or sparse copy under a temporary name,
//! grown and renamed into place, so a crash never leaves a half-copied
//! disk that looks complete.
//!
//! Spare disks: without reflink (ext4 hosts) the copy costs a create a few
//! hundred milliseconds, so after each create one ready copy of the image,
//! already grown to that size, is made in the background next to the image
//! (`<image dir>/spare-root/<bytes>-<version>.ext4`, the version from the
//! image file's device, inode, size and mtime). The next create of that
//! image and size takes it with one `rename` (two creates cannot both get
//! it: the loser copies). A spare of an older image version or another
//! size is never used; an older version's is removed at the next refill of
//! its size; the directory goes with the image (`image delete`).

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
        let spare = spare_path(base, disk_bytes);
        if let Some(spare) = &spare
            && std::fs::rename(spare, &partial).is_ok()
        {
            let disk = vm_dir.join(ROOT_DISK);
            std::fs::rename(&partial, &disk).map_err(io("rename into place", &disk))?;
            tracing::debug!(vm = vm_id, disk = %disk.display(), "root disk from the image's spare");
            refill_in_background(base, disk_bytes);
            return Ok(disk);
        }
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
        if spare.is_some() {
            refill_in_background(base, disk_bytes);
        }
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

/// Directory of the image's spare root disks.
const SPARE_DIR: &str = "spare-root";

/// The spare for `base` at `disk_bytes`: its name carries the image file's
/// version, so a rewritten image (`managed-seed refresh`) never hands out
/// an old copy. `None` when `base` cannot be read.
pub fn spare_path(base: &Path, disk_bytes: u64) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(base).ok()?;
    let version = [
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
    ]
    .iter()
    .flat_map(|v| v.to_le_bytes())
    .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Some(
        base.parent()?
            .join(SPARE_DIR)
            .join(format!("{disk_bytes}-{version:016x}.ext4")),
    )
}

/// Make the spare for `base` at `disk_bytes` unless it is there: a copy
/// under a unique temporary name, grown, then renamed into place; spares
/// of older versions of that size are removed. Blocking; errors are only
/// logged (a missing spare just means the next create copies).
pub fn refill(base: &Path, disk_bytes: u64) -> Result<(), std::io::Error> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(spare) = spare_path(base, disk_bytes) else {
        return Ok(());
    };
    if spare.exists() {
        return Ok(());
    }
    let dir = spare.parent().unwrap_or(Path::new("."));
    // Not `create_dir_all`: an image directory removed meanwhile stays gone.
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}-{n}.partial", std::process::id()));
    let made = (|| {
        banger_imagemgr::clone_or_copy(base, &tmp).map_err(std::io::Error::other)?;
        if banger_imagemgr::grow_file(&tmp, disk_bytes).map_err(std::io::Error::other)? {
            banger_imagemgr::resize_ext4(&tmp).map_err(std::io::Error::other)?;
        }
        std::fs::rename(&tmp, &spare)
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return made;
    }
    // Older versions of this size: never handed out again.
    let prefix = format!("{disk_bytes}-");
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let stale_spare = p != spare
            && p.extension().is_some_and(|x| x == "ext4")
            && e.file_name().to_string_lossy().starts_with(&prefix);
        let old_partial = p.extension().is_some_and(|x| x == "partial")
            && e.metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|a| a.as_secs() > 3600));
        if stale_spare || old_partial {
            let _ = std::fs::remove_file(&p);
        }
    }
    Ok(())
}

/// Spares being made, and image directories closed to new refills.
struct Refills {
    busy: Vec<PathBuf>,
    closed: Vec<PathBuf>,
}

static REFILLS: std::sync::Mutex<Refills> = std::sync::Mutex::new(Refills {
    busy: Vec::new(),
    closed: Vec::new(),
});

fn refills() -> std::sync::MutexGuard<'static, Refills> {
    REFILLS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Before an image's directory is removed (`image delete`): no new spare
/// of `base` is started, and this returns once the running ones ended, so
/// no spare is written into a directory being removed. Blocking.
pub fn close_spares(base: &Path) {
    let Some(dir) = base.parent().map(|d| d.join(SPARE_DIR)) else {
        return;
    };
    refills().closed.push(dir.clone());
    while refills().busy.iter().any(|k| k.starts_with(&dir)) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// [`refill`] on its own thread, one at a time per spare.
fn refill_in_background(base: &Path, disk_bytes: u64) {
    let Some(key) = spare_path(base, disk_bytes) else {
        return;
    };
    {
        let mut r = refills();
        if r.busy.contains(&key) || r.closed.iter().any(|d| key.starts_with(d)) {
            return;
        }
        r.busy.push(key.clone());
    }
    let base = base.to_path_buf();
    let done = key.clone();
    let spawned = std::thread::Builder::new()
        .name("spare-root".into())
        .spawn(move || {
            if let Err(e) = refill(&base, disk_bytes) {
                tracing::warn!(image = %base.display(), error = %e, "cannot make a spare root disk");
            }
            refills().busy.retain(|k| k != &done);
        });
    if spawned.is_err() {
        tracing::warn!("cannot start the spare root disk thread");
        refills().busy.retain(|k| k != &key);
    }
}
