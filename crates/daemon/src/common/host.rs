//! Host-side names shared by the daemon's parts.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Prefix of every network device banger creates (one definition, in
/// `banger-config`).
pub use banger_config::DEVICE_PREFIX;

/// The owner's home directory (`$HOME`, else the passwd entry).
pub fn owner_home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// What tells one version of a file from another without reading it:
/// device, inode, size, modification and change times (nanoseconds). A
/// file rewritten or replaced (a rename over it) gets a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileVersion {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileVersion {
    /// The version of `path` (following symlinks); `None` when it cannot
    /// be stat'ed.
    pub fn of(path: &Path) -> Option<FileVersion> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileVersion {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }

    /// The fields as bytes (for a cache key).
    pub fn bytes(&self) -> Vec<u8> {
        [
            self.dev,
            self.ino,
            self.len,
            self.mtime.0 as u64,
            self.mtime.1 as u64,
            self.ctime.0 as u64,
            self.ctime.1 as u64,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }
}
