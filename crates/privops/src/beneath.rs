//! Opening banger's own files by construction, not by string checks.
//!
//! A privileged operation never re-opens a path it checked earlier: it
//! splits the request's path into one of the policy's roots (state or
//! runtime directory) and a relative rest, opens the root as a directory
//! fd and then the rest with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
//! | RESOLVE_NO_MAGICLINKS)`, and acts on the fd it got. A symlink or `..`
//! anywhere below the root makes the open fail (`ELOOP`/`EXDEV`), whatever
//! was swapped in between. [`owned_by`] then checks that the object is the
//! owner's (banger's files are created by the owner daemon), which also
//! defeats hard links to foreign files.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{FileStat, Mode, fstat};

use crate::{Policy, PrivOpsError};

/// Which of the policy's directories a path lies beneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    /// [`Policy::state_dir`].
    State,
    /// [`Policy::runtime_dir`].
    Runtime,
}

/// A request path split into a policy root and a relative rest (no `..`,
/// no `.`, not empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeneathPath {
    /// The root it lies beneath.
    pub root: Root,
    /// The root directory as configured.
    pub root_dir: PathBuf,
    /// The part below the root.
    pub rel: PathBuf,
}

impl BeneathPath {
    /// The full path, for messages and logs only (never re-opened).
    pub fn display_path(&self) -> PathBuf {
        self.root_dir.join(&self.rel)
    }
}

fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

impl Policy {
    /// Split `path` lexically into one of the policy's roots and the part
    /// below it. Refused unless `path` is absolute, has no `.`/`..`
    /// component and lies strictly below the state or runtime directory.
    /// Nothing is looked up on disk here: [`open_beneath`] does that, with
    /// no symlink following.
    pub fn beneath(&self, op: &'static str, path: &Path) -> Result<BeneathPath, PrivOpsError> {
        let refuse = |why: &str| PrivOpsError::Refused {
            op,
            reason: format!(
                "path {} {why} (banger's directories are {} and {})",
                path.display(),
                self.state_dir.display(),
                self.runtime_dir.display()
            ),
        };
        if !path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(refuse("must be absolute, without '.' or '..'"));
        }
        // The longer root first, so a runtime dir inside the state dir
        // (the dev path's `<state>/run`) is recognised as such.
        let mut roots = [
            (Root::State, &self.state_dir),
            (Root::Runtime, &self.runtime_dir),
        ];
        roots.sort_by_key(|(_, d)| std::cmp::Reverse(d.as_os_str().len()));
        for (root, dir) in roots {
            if let Ok(rel) = path.strip_prefix(dir)
                && rel.components().next().is_some()
            {
                return Ok(BeneathPath {
                    root,
                    root_dir: dir.clone(),
                    rel: rel.to_path_buf(),
                });
            }
        }
        Err(refuse("is outside banger's directories"))
    }
}

impl Policy {
    /// [`beneath`](Policy::beneath), refused unless the path lies beneath
    /// the state directory (banger's disks and images live there; the
    /// runtime directory holds only sockets).
    pub fn beneath_state(
        &self,
        op: &'static str,
        path: &Path,
    ) -> Result<BeneathPath, PrivOpsError> {
        let b = self.beneath(op, path)?;
        if b.root == Root::State {
            Ok(b)
        } else {
            Err(PrivOpsError::Refused {
                op,
                reason: format!(
                    "path {} is in the runtime directory, not below the state directory {}",
                    path.display(),
                    self.state_dir.display()
                ),
            })
        }
    }

    /// A path the kernel reports (a loop device's backing file, resolved),
    /// expressed below the state directory as configured: lexically, or
    /// below its canonical form (a configured state directory may have a
    /// symlinked ancestor). `None` when it is not below it. This only
    /// names a candidate: callers open it with [`open_beneath`] and
    /// compare `(st_dev, st_ino)` with what the kernel holds.
    pub fn beneath_state_reported(&self, path: &Path) -> Option<BeneathPath> {
        if let Ok(b) = self.beneath_state("reported", path) {
            return Some(b);
        }
        let canon = self.state_dir.canonicalize().ok()?;
        let rel = path.strip_prefix(&canon).ok()?;
        let clean = rel.components().next().is_some()
            && rel.components().all(|c| matches!(c, Component::Normal(_)));
        clean.then(|| BeneathPath {
            root: Root::State,
            root_dir: self.state_dir.clone(),
            rel: rel.to_path_buf(),
        })
    }
}

/// Open `p` beneath its root with `flags` (`O_CLOEXEC` is always added;
/// `mode` applies with `O_CREAT`), following no symlink below the root.
pub fn open_beneath(p: &BeneathPath, flags: OFlag, mode: Mode) -> std::io::Result<OwnedFd> {
    let dir = openat2(
        nix::fcntl::AT_FDCWD,
        p.root_dir.as_path(),
        OpenHow::new().flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC),
    )?;
    Ok(openat2(
        dir.as_fd(),
        p.rel.as_path(),
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(resolve_flags()),
    )?)
}

/// Open the directory that will hold `p` (its parent, beneath the root)
/// as an `O_PATH` fd, and return it with `p`'s last component: for
/// operations that name a new entry (a socket the VMM will bind).
pub fn open_parent_beneath(p: &BeneathPath) -> std::io::Result<(OwnedFd, &OsStr)> {
    let name = p
        .rel
        .file_name()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let parent = BeneathPath {
        rel: p.rel.parent().map(Path::to_path_buf).unwrap_or_default(),
        ..p.clone()
    };
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = if parent.rel.as_os_str().is_empty() {
        openat2(
            nix::fcntl::AT_FDCWD,
            parent.root_dir.as_path(),
            OpenHow::new().flags(flags),
        )?
    } else {
        open_beneath(&parent, flags, Mode::empty())?
    };
    Ok((fd, name))
}

/// `fstat` of an fd.
pub fn stat_fd(fd: impl AsFd) -> std::io::Result<FileStat> {
    Ok(fstat(fd)?)
}

/// Whether `st` belongs to `owner_uid` (banger's files are created by the
/// owner daemon, so anything else, hard links to foreign files included,
/// is not banger's).
pub fn owned_by(st: &FileStat, owner_uid: u32) -> bool {
    st.st_uid == owner_uid
}

/// Whether `st` is a block device.
pub fn is_block(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFBLK
}

/// Whether `st` is a regular file.
pub fn is_regular(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Map an open failure beneath a root to a refusal (symlinks, `..`
/// escapes) or a file error.
pub fn open_error(op: &'static str, p: &BeneathPath, e: std::io::Error) -> PrivOpsError {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::ENOTDIR) => PrivOpsError::Refused {
            op,
            reason: format!(
                "{} goes through a symlink or leaves banger's directory ({e})",
                p.display_path().display()
            ),
        },
        Some(libc::EISDIR) | Some(libc::ENAMETOOLONG) => PrivOpsError::Refused {
            op,
            reason: format!(
                "{} is not a file banger can use ({e})",
                p.display_path().display()
            ),
        },
        Some(libc::EACCES) | Some(libc::EPERM) => PrivOpsError::Refused {
            op,
            reason: format!(
                "the owner may not open {} ({e})",
                p.display_path().display()
            ),
        },
        _ => PrivOpsError::File {
            path: p.display_path(),
            source: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn policy(root: &Path) -> Policy {
        Policy {
            device_prefix: "bg".into(),
            state_dir: root.join("state"),
            runtime_dir: root.join("state/run"),
            subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
            owner_uid: nix::unistd::geteuid().as_raw(),
            vmm_binary: PathBuf::from("/bin/true"),
        }
    }

    #[test]
    fn splits_lexically() {
        let p = policy(Path::new("/x"));
        let b = p
            .beneath("t", Path::new("/x/state/vms/a/root.ext4"))
            .unwrap();
        assert_eq!(
            (b.root, b.rel.as_path()),
            (Root::State, Path::new("vms/a/root.ext4"))
        );
        let b = p
            .beneath("t", Path::new("/x/state/run/vms/a.sock"))
            .unwrap();
        assert_eq!(
            (b.root, b.rel.as_path()),
            (Root::Runtime, Path::new("vms/a.sock"))
        );
        for bad in [
            "/x/state",
            "/x/state/",
            "/x/state/../etc",
            "/etc/passwd",
            "relative",
            "/x/stateful/a",
        ] {
            assert!(p.beneath("t", Path::new(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn follows_no_symlink() {
        let t = tempfile::tempdir().unwrap();
        let p = policy(t.path());
        std::fs::create_dir_all(t.path().join("state/vms/a")).unwrap();
        std::fs::write(t.path().join("state/vms/a/root.ext4"), b"x").unwrap();
        std::fs::write(t.path().join("secret"), b"s").unwrap();
        let ok = p
            .beneath("t", &t.path().join("state/vms/a/root.ext4"))
            .unwrap();
        let fd = open_beneath(&ok, OFlag::O_RDONLY, Mode::empty()).unwrap();
        let st = stat_fd(&fd).unwrap();
        assert!(is_regular(&st) && owned_by(&st, p.owner_uid));
        // A symlinked file, and a symlinked directory on the way.
        std::os::unix::fs::symlink(t.path().join("secret"), t.path().join("state/vms/a/l"))
            .unwrap();
        std::os::unix::fs::symlink(t.path(), t.path().join("state/vms/d")).unwrap();
        for rel in ["state/vms/a/l", "state/vms/d/secret"] {
            let b = p.beneath("t", &t.path().join(rel)).unwrap();
            let e = open_beneath(&b, OFlag::O_RDONLY, Mode::empty()).unwrap_err();
            assert!(
                matches!(open_error("t", &b, e), PrivOpsError::Refused { .. }),
                "{rel}"
            );
        }
        let (dir, name) = open_parent_beneath(&ok).unwrap();
        assert_eq!(name, "root.ext4");
        drop(dir);
    }
}
