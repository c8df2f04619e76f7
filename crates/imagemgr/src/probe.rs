//! Recognise kernels and filesystems by their magic numbers.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{ImageMgrError, io_err};

/// What a file looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// An ELF executable (an uncompressed `vmlinux`).
    Elf,
    /// An x86 boot image (`bzImage`, "HdrS" at 0x202).
    BzImage,
    /// An ext2/3/4 filesystem (superblock magic 0xEF53).
    Ext4,
    /// Nothing we recognise.
    Unknown,
}

/// Look at the first bytes of `path`.
pub fn probe(path: &Path) -> Result<FileKind, ImageMgrError> {
    let file = File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    if !meta.is_file() {
        return Ok(FileKind::Unknown);
    }
    let mut head = [0u8; 4];
    let n = (&file).take(4).read(&mut head).map_err(io_err(path))?;
    if n == 4 && head == *b"\x7fELF" {
        return Ok(FileKind::Elf);
    }
    let mut hdrs = [0u8; 4];
    if file.read_exact_at(&mut hdrs, 0x202).is_ok() && hdrs == *b"HdrS" {
        return Ok(FileKind::BzImage);
    }
    let mut magic = [0u8; 2];
    if file.read_exact_at(&mut magic, 1024 + 0x38).is_ok() && magic == [0x53, 0xEF] {
        return Ok(FileKind::Ext4);
    }
    Ok(FileKind::Unknown)
}

/// Require an uncompressed ELF kernel (`vmlinux`), which every Firecracker
/// release boots on x86_64.
pub fn check_kernel(path: &Path) -> Result<(), ImageMgrError> {
    match probe(path)? {
        FileKind::Elf => Ok(()),
        FileKind::BzImage => Err(ImageMgrError::WrongKind {
            path: path.to_path_buf(),
            expected: "an uncompressed ELF kernel (vmlinux)",
            found: "it is a compressed bzImage; extract the vmlinux from it (the kernel's scripts/extract-vmlinux) and register that".into(),
        }),
        other => Err(ImageMgrError::WrongKind {
            path: path.to_path_buf(),
            expected: "an uncompressed ELF kernel (vmlinux)",
            found: format!("its contents look like {other:?}"),
        }),
    }
}

/// Require an ext4 (or ext2/3) filesystem image.
pub fn check_rootfs(path: &Path) -> Result<(), ImageMgrError> {
    match probe(path)? {
        FileKind::Ext4 => Ok(()),
        other => Err(ImageMgrError::WrongKind {
            path: path.to_path_buf(),
            expected: "an ext4 filesystem image",
            found: format!(
                "no ext4 superblock found (looks like {other:?}); build one with `mkfs.ext4 -d DIR FILE SIZE`"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_magic() {
        let t = tempfile::tempdir().unwrap();
        let elf = t.path().join("vmlinux");
        std::fs::write(&elf, b"\x7fELF\x02\x01\x01rest").unwrap();
        assert_eq!(probe(&elf).unwrap(), FileKind::Elf);
        check_kernel(&elf).unwrap();

        let bz = t.path().join("bzImage");
        let mut data = vec![0u8; 0x300];
        data[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&bz, &data).unwrap();
        assert_eq!(probe(&bz).unwrap(), FileKind::BzImage);
        assert!(
            check_kernel(&bz)
                .unwrap_err()
                .to_string()
                .contains("bzImage")
        );

        let ext = t.path().join("root.ext4");
        let mut data = vec![0u8; 4096];
        data[1024 + 0x38] = 0x53;
        data[1024 + 0x39] = 0xEF;
        std::fs::write(&ext, &data).unwrap();
        check_rootfs(&ext).unwrap();
        assert!(check_rootfs(&elf).is_err());
        assert!(check_kernel(&ext).is_err());
        assert!(matches!(
            check_rootfs(&t.path().join("missing")),
            Err(ImageMgrError::Io { .. })
        ));
    }
}
