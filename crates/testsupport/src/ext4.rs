//! Small ext4 images for tests, made with `mkfs.ext4` (e2fsprogs) and
//! nothing mounted: `Mkfs::new().file("etc/hostname", "x\n").build(&path,
//! "32M")`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `mkfs.ext4` cannot be run on this machine: the test skips with this
/// reason (`Display`).
#[derive(Debug)]
pub struct Unavailable(String);

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// An ext4 image to make: options and the files it holds.
#[derive(Debug, Default, Clone)]
pub struct Mkfs {
    args: Vec<OsString>,
    files: Vec<(PathBuf, Vec<u8>)>,
    dirs: Vec<PathBuf>,
}

impl Mkfs {
    /// An empty filesystem with `mkfs.ext4`'s defaults.
    pub fn new() -> Mkfs {
        Mkfs::default()
    }

    /// Block size in bytes (`-b`).
    pub fn block_size(mut self, bytes: u32) -> Mkfs {
        self.args.push("-b".into());
        self.args.push(bytes.to_string().into());
        self
    }

    /// A feature list (`-O`, e.g. `^64bit`).
    pub fn features(mut self, features: &str) -> Mkfs {
        self.args.push("-O".into());
        self.args.push(features.into());
        self
    }

    /// A regular file at `path` (relative to the filesystem's root) with
    /// `contents`; its parent directories are made too.
    pub fn file(mut self, path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Mkfs {
        self.files
            .push((path.as_ref().to_path_buf(), contents.as_ref().to_vec()));
        self
    }

    /// An (empty) directory at `path` (relative to the filesystem's root);
    /// its parent directories are made too.
    pub fn dir(mut self, path: impl AsRef<Path>) -> Mkfs {
        self.dirs.push(path.as_ref().to_path_buf());
        self
    }

    /// Make the image at `image` (created or overwritten) of `size`
    /// (`mkfs.ext4`'s size argument: `16M`, `1G`, …). `Err` only when
    /// `mkfs.ext4` cannot be run here (the caller skips); a run that fails
    /// panics with its output, since the fixture is then broken.
    pub fn build(&self, image: &Path, size: &str) -> Result<(), Unavailable> {
        let mut cmd = Command::new("mkfs.ext4");
        cmd.args(["-q", "-F"]).args(&self.args);
        // The tree outlives the run; it is removed when `tree` drops.
        let tree = if self.files.is_empty() && self.dirs.is_empty() {
            None
        } else {
            let tree = tempfile::Builder::new()
                .prefix("banger-ext4-tree-")
                .tempdir()
                .expect("temporary directory for the ext4 tree");
            for dir in &self.dirs {
                std::fs::create_dir_all(tree.path().join(dir)).expect("ext4 tree directory");
            }
            for (path, contents) in &self.files {
                let at = tree.path().join(path);
                if let Some(parent) = at.parent() {
                    std::fs::create_dir_all(parent).expect("ext4 tree directory");
                }
                std::fs::write(&at, contents).expect("ext4 tree file");
            }
            cmd.arg("-d").arg(tree.path());
            Some(tree)
        };
        cmd.arg(image).arg(size);
        let out = cmd.output().map_err(|e| {
            Unavailable(format!(
                "mkfs.ext4 is not available (apt-get install e2fsprogs): {e}"
            ))
        })?;
        drop(tree);
        assert!(
            out.status.success(),
            "mkfs.ext4 {} failed ({}): {}",
            image.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

/// Check the filesystem in `image` with `e2fsck -fn` (read-only, forced)
/// and panic with its report unless it is clean.
pub fn fsck_clean(image: &Path) {
    let out = Command::new("e2fsck")
        .arg("-fn")
        .arg(image)
        .output()
        .expect("run e2fsck (apt-get install e2fsprogs)");
    assert!(
        out.status.success(),
        "e2fsck -fn {} ({}): {}{}",
        image.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_an_image_holding_the_files() {
        let t = tempfile::tempdir().unwrap();
        let image = t.path().join("fs.ext4");
        let built = Mkfs::new()
            .block_size(1024)
            .file("etc/hostname", "fixture\n")
            .dir("home/dev")
            .build(&image, "8M");
        if let Err(why) = built {
            crate::skip!("builds_an_image_holding_the_files", "{why}");
        }
        assert_eq!(image.metadata().unwrap().len(), 8 << 20);
        if crate::in_path("e2fsck") {
            fsck_clean(&image);
            // A zeroed superblock is not clean.
            let mut broken = std::fs::read(&image).unwrap();
            broken[1024..2048].fill(0);
            let bad = t.path().join("broken.ext4");
            std::fs::write(&bad, broken).unwrap();
            assert!(std::panic::catch_unwind(|| fsck_clean(&bad)).is_err());
        }
        // The superblock (at 1024) says ext4's magic and 1 KiB blocks.
        let bytes = std::fs::read(&image).unwrap();
        assert_eq!(&bytes[1024 + 0x38..1024 + 0x3a], &[0x53, 0xef]);
        let log_block_size =
            u32::from_le_bytes(bytes[1024 + 0x18..1024 + 0x1c].try_into().unwrap());
        assert_eq!(log_block_size, 0, "1 KiB blocks");
        if crate::in_path("debugfs") {
            let out = Command::new("debugfs")
                .args(["-R", "cat /etc/hostname"])
                .arg(&image)
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "fixture\n");
            let out = Command::new("debugfs")
                .args(["-R", "stat /home/dev"])
                .arg(&image)
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("Type: directory"),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    #[test]
    fn a_failing_run_panics() {
        if !crate::in_path("mkfs.ext4") {
            crate::skip!("a_failing_run_panics", "mkfs.ext4 is not installed");
        }
        let t = tempfile::tempdir().unwrap();
        // A size mkfs.ext4 refuses.
        let image = t.path().join("fs.ext4");
        let run = std::panic::catch_unwind(|| Mkfs::new().build(&image, "not-a-size"));
        let msg = run.expect_err("a failed mkfs.ext4 panics");
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains("mkfs.ext4"), "{msg}");
    }
}
