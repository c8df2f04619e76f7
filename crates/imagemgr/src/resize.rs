//! Growing the ext4 filesystem inside a disk file after the file grew.

use std::path::Path;
use std::process::Command;

use crate::ImageMgrError;

/// Run `resize2fs -f FILE` so the filesystem fills the (already grown)
/// file. `resize2fs` comes from e2fsprogs; it is run by argv, never a shell.
pub fn resize_ext4(path: &Path) -> Result<(), ImageMgrError> {
    let out = Command::new("resize2fs")
        .arg("-f")
        .arg(path)
        .output()
        .map_err(|source| ImageMgrError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                source.kind(),
                format!("cannot run resize2fs (install e2fsprogs): {source}"),
            ),
        })?;
    if out.status.success() {
        return Ok(());
    }
    Err(ImageMgrError::WrongKind {
        path: path.to_path_buf(),
        expected: "a resizable ext4 filesystem",
        found: format!(
            "resize2fs failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_a_real_filesystem_or_says_why_not() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("fs.ext4");
        if let Err(why) = banger_testsupport::ext4::Mkfs::new().build(&img, "16M") {
            banger_testsupport::skip!("resize test", "{why}");
        }
        crate::grow_file(&img, 64 << 20).unwrap();
        resize_ext4(&img).unwrap();
        let garbage = t.path().join("garbage");
        std::fs::write(&garbage, vec![0u8; 1 << 20]).unwrap();
        assert!(resize_ext4(&garbage).is_err());
    }
}
