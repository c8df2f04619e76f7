//! Root-disk copies that cost (almost) nothing: a reflink clone where the
//! filesystem supports it (btrfs, xfs), else a sparse copy that moves only
//! the data extents (`SEEK_DATA`/`SEEK_HOLE` + `copy_file_range`).

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::{ImageMgrError, io_err};

/// How a copy was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    /// `FICLONE`: shares blocks with the source until written.
    Reflink,
    /// Data extents copied, holes kept.
    Sparse,
}

nix::ioctl_write_int!(ficlone, 0x94, 9);

/// Copy `src` to the new file `dst` (which must not exist) as cheaply as
/// the filesystem allows. `dst` is created 0600 (disk images hold guest
/// data and keys). On error `dst` is removed.
pub fn clone_or_copy(src: &Path, dst: &Path) -> Result<CopyMethod, ImageMgrError> {
    let from = File::open(src).map_err(io_err(src))?;
    let to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dst)
        .map_err(io_err(dst))?;
    let result = copy_into(&from, &to, src, dst);
    if result.is_err() {
        let _ = std::fs::remove_file(dst);
    }
    result
}

fn copy_into(from: &File, to: &File, src: &Path, dst: &Path) -> Result<CopyMethod, ImageMgrError> {
    // SAFETY: FICLONE takes the source descriptor as its integer argument;
    // both descriptors are open for the duration of the call.
    if unsafe { ficlone(to.as_raw_fd(), from.as_raw_fd() as _) }.is_ok() {
        return Ok(CopyMethod::Reflink);
    }
    let len = from.metadata().map_err(io_err(src))?.len();
    to.set_len(len).map_err(io_err(dst))?;
    let mut pos: i64 = 0;
    while (pos as u64) < len {
        let data = match nix::unistd::lseek(from, pos, nix::unistd::Whence::SeekData) {
            Ok(d) => d,
            Err(nix::Error::ENXIO) => break, // only a hole remains
            Err(e) => return Err(io_err(src)(e.into())),
        };
        let hole = nix::unistd::lseek(from, data, nix::unistd::Whence::SeekHole)
            .map_err(|e| io_err(src)(e.into()))?;
        copy_range(from, to, data, hole - data).map_err(io_err(dst))?;
        pos = hole;
    }
    to.sync_all().map_err(io_err(dst))?;
    Ok(CopyMethod::Sparse)
}

fn copy_range(from: &File, to: &File, start: i64, mut len: i64) -> std::io::Result<()> {
    let mut off_in = start;
    let mut off_out = start;
    while len > 0 {
        // SAFETY: valid descriptors and offsets owned by this frame.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                &mut off_out,
                len as usize,
                0,
            )
        };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "source shrank during copy",
            ));
        }
        len -= n as i64;
    }
    Ok(())
}

/// Grow `path` to `size` bytes (sparse). Refuses to shrink.
pub fn grow_file(path: &Path, size: u64) -> Result<bool, ImageMgrError> {
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    let current = f.metadata().map_err(io_err(path))?.len();
    if size < current {
        return Err(ImageMgrError::Shrink {
            path: path.to_path_buf(),
            current,
            requested: size,
        });
    }
    if size == current {
        return Ok(false);
    }
    f.set_len(size).map_err(io_err(path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn sparse_copy_keeps_holes_and_data() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        let mut f = File::create(&src).unwrap();
        f.write_all(b"head").unwrap();
        f.seek(SeekFrom::Start(64 << 20)).unwrap();
        f.write_all(b"tail").unwrap();
        drop(f);
        let dst = t.path().join("dst");
        let method = clone_or_copy(&src, &dst).unwrap();
        assert_eq!(std::fs::read(&src).unwrap(), std::fs::read(&dst).unwrap());
        let m = std::fs::metadata(&dst).unwrap();
        assert_eq!(m.len(), (64 << 20) + 4);
        // Far fewer blocks than the apparent size: the hole was not written.
        assert!(
            m.blocks() * 512 < 1 << 20,
            "{method:?} copy allocated {} blocks",
            m.blocks()
        );
        assert!(
            clone_or_copy(&src, &dst).is_err(),
            "existing destination refused"
        );
    }

    #[test]
    fn copy_is_private_whatever_the_source_mode() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::write(&src, b"disk").unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dst = t.path().join("dst");
        clone_or_copy(&src, &dst).unwrap();
        let mode = std::fs::metadata(&dst).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "copy has mode {mode:o}");
    }

    #[test]
    fn failed_copy_leaves_nothing() {
        let t = tempfile::tempdir().unwrap();
        let dst = t.path().join("dst");
        assert!(clone_or_copy(&t.path().join("missing"), &dst).is_err());
        assert!(!dst.exists());
    }

    #[test]
    fn grow_only() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("d");
        std::fs::write(&p, vec![1u8; 4096]).unwrap();
        assert!(grow_file(&p, 1 << 20).unwrap());
        assert!(!grow_file(&p, 1 << 20).unwrap());
        assert!(matches!(
            grow_file(&p, 10),
            Err(ImageMgrError::Shrink { .. })
        ));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
    }
}
