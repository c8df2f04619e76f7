//! Editing an ext4 image file without mounting it: `debugfs` (e2fsprogs)
//! by argv. [`Ext4Edit`] collects changes (directories, files, symlinks,
//! each with owner and mode) into one `debugfs -w` script, runs it once and
//! checks the result, because debugfs exits 0 even when a request fails.
//! [`read_file`] and [`exists`] read without writing; [`dump_dir`] copies a
//! directory out of an image; [`build_ext4_from_dir`] makes a small image
//! from a host directory with every entry owned by one user.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{ImageMgrError, io_err};

const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// Owner and permission bits of an entry written by [`Ext4Edit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

impl Owner {
    /// root:root.
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

enum Check {
    File(String, Vec<u8>),
    Symlink(String),
    Dir(String),
}

/// A batch of changes to one ext4 image, applied by [`Ext4Edit::commit`].
pub struct Ext4Edit {
    disk: PathBuf,
    tmp: tempfile::TempDir,
    script: String,
    /// Directories known to exist (or to be created by this script).
    known_dirs: Vec<String>,
    checks: Vec<Check>,
}

impl Ext4Edit {
    /// Start editing `disk` (an ext4 image file the caller may write).
    pub fn new(disk: &Path) -> Result<Self, ImageMgrError> {
        if !disk.is_file() {
            return Err(ImageMgrError::Io {
                path: disk.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let tmp = tempfile::tempdir().map_err(io_err(Path::new("temporary directory")))?;
        Ok(Self {
            disk: disk.to_path_buf(),
            tmp,
            script: String::new(),
            known_dirs: vec!["/".into()],
            checks: Vec::new(),
        })
    }

    /// Create `path` and its missing parents (like `mkdir -p`). Directories
    /// this creates get `mode` and `owner`; existing ones are left alone.
    pub fn mkdir_p(&mut self, path: &str, mode: u32, owner: Owner) -> Result<(), ImageMgrError> {
        let path = normalize(path)?;
        let mut cur = String::new();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(comp);
            if self.known_dirs.contains(&cur) {
                continue;
            }
            if !exists(&self.disk, &cur)? {
                let q = quote(&cur)?;
                writeln!(self.script, "mkdir {q}").ok();
                self.set_inode(&q, S_IFDIR | (mode & 0o7777), owner);
            }
            self.checks.push(Check::Dir(cur.clone()));
            self.known_dirs.push(cur.clone());
        }
        Ok(())
    }

    /// Set mode and owner of the existing directory `path` (or of one this
    /// batch creates).
    pub fn chown_dir(&mut self, path: &str, mode: u32, owner: Owner) -> Result<(), ImageMgrError> {
        let q = quote(&normalize(path)?)?;
        self.set_inode(&q, S_IFDIR | (mode & 0o7777), owner);
        Ok(())
    }

    /// Write (or replace) the regular file `path` with `data`, `mode` and
    /// `owner`. Missing parents are created 0755 with the same owner.
    pub fn write_file(
        &mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        owner: Owner,
    ) -> Result<(), ImageMgrError> {
        let path = normalize(path)?;
        self.parents(&path, owner)?;
        let src = self.tmp.path().join(format!("f{}", self.checks.len()));
        std::fs::write(&src, data).map_err(io_err(&src))?;
        let q = quote(&path)?;
        let srcq = quote(&src.display().to_string())?;
        writeln!(self.script, "rm {q}\nwrite {srcq} {q}").ok();
        self.set_inode(&q, S_IFREG | (mode & 0o7777), owner);
        self.checks.push(Check::File(path, data.to_vec()));
        Ok(())
    }

    /// Make (or replace) the symbolic link `path` → `target`.
    pub fn symlink(&mut self, path: &str, target: &str, owner: Owner) -> Result<(), ImageMgrError> {
        let path = normalize(path)?;
        self.parents(&path, owner)?;
        let q = quote(&path)?;
        let t = quote(target)?;
        writeln!(self.script, "rm {q}\nsymlink {q} {t}").ok();
        writeln!(
            self.script,
            "sif {q} uid {}\nsif {q} gid {}",
            owner.uid, owner.gid
        )
        .ok();
        self.checks.push(Check::Symlink(path));
        Ok(())
    }

    /// Run the batch and check that every entry is there with the content
    /// asked for.
    pub fn commit(self) -> Result<(), ImageMgrError> {
        if self.script.is_empty() {
            return Ok(());
        }
        let cmds = self.tmp.path().join("cmds");
        std::fs::write(&cmds, &self.script).map_err(io_err(&cmds))?;
        let out = Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&cmds)
            .arg(&self.disk)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| tool_missing(&self.disk, e))?;
        // `rm` of a missing entry complains harmlessly; judge by the result.
        let complaint = || String::from_utf8_lossy(&out.stderr).trim().to_string();
        if !out.status.success() {
            return Err(self.tool_error(complaint()));
        }
        for c in &self.checks {
            let ok = match c {
                Check::File(p, data) => read_file(&self.disk, p)?.as_deref() == Some(data),
                Check::Symlink(p) | Check::Dir(p) => exists(&self.disk, p)?,
            };
            if !ok {
                let p = match c {
                    Check::File(p, _) | Check::Symlink(p) | Check::Dir(p) => p,
                };
                return Err(self.tool_error(format!("{p} was not written: {}", complaint())));
            }
        }
        Ok(())
    }

    fn parents(&mut self, path: &str, owner: Owner) -> Result<(), ImageMgrError> {
        if let Some(parent) = Path::new(path).parent() {
            let p = parent.display().to_string();
            if p != "/" && !p.is_empty() {
                self.mkdir_p(&p, 0o755, owner)?;
            }
        }
        Ok(())
    }

    fn set_inode(&mut self, q: &str, mode: u32, owner: Owner) {
        writeln!(
            self.script,
            "sif {q} mode 0{mode:o}\nsif {q} uid {}\nsif {q} gid {}",
            owner.uid, owner.gid
        )
        .ok();
    }

    fn tool_error(&self, message: String) -> ImageMgrError {
        ImageMgrError::Tool {
            program: "debugfs",
            path: self.disk.clone(),
            message,
        }
    }
}

/// Whether `path` exists in the image (without following a final symlink).
pub fn exists(disk: &Path, path: &str) -> Result<bool, ImageMgrError> {
    let out = debugfs_read(disk, &format!("stat {}", quote(&normalize(path)?)?))?;
    Ok(String::from_utf8_lossy(&out).contains("Inode:"))
}

/// The content of the regular file `path` in the image, `None` when there
/// is no such file.
pub fn read_file(disk: &Path, path: &str) -> Result<Option<Vec<u8>>, ImageMgrError> {
    let path = normalize(path)?;
    if !exists(disk, &path)? {
        return Ok(None);
    }
    debugfs_read(disk, &format!("cat {}", quote(&path)?)).map(Some)
}

/// Copy directory `path` of the image into the host directory `dest`
/// (created; ends up as `dest/<basename of path>`). Returns that directory.
pub fn dump_dir(disk: &Path, path: &str, dest: &Path) -> Result<PathBuf, ImageMgrError> {
    let path = normalize(path)?;
    std::fs::create_dir_all(dest).map_err(io_err(dest))?;
    let base = Path::new(&path)
        .file_name()
        .map(|b| dest.join(b))
        .unwrap_or_else(|| dest.join("root"));
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!(
            "rdump {} {}",
            quote(&path)?,
            quote(&dest.display().to_string())?
        ))
        .arg(disk)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_missing(disk, e))?;
    if !out.status.success() || !base.is_dir() {
        return Err(ImageMgrError::Tool {
            program: "debugfs",
            path: disk.to_path_buf(),
            message: format!(
                "cannot dump {path}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(base)
}

/// Build the ext4 image `image` (must not exist) from host directory `dir`
/// with `mkfs.ext4 -d`, `headroom` bytes of free space over the content,
/// and every entry, the root directory included, owned by `owner`. The root
/// directory gets `root_mode`. On error the image is removed.
pub fn build_ext4_from_dir(
    dir: &Path,
    image: &Path,
    headroom: u64,
    owner: Owner,
    root_mode: u32,
) -> Result<(), ImageMgrError> {
    if image.exists() {
        return Err(ImageMgrError::Io {
            path: image.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        });
    }
    let result = (|| {
        crate::create_private_file(image)?;
        let (bytes, entries) = tree_size(dir)?;
        let size = (bytes + entries * 4096 + headroom).next_multiple_of(1 << 20);
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-E"])
            .arg(format!(
                "root_owner={}:{},lazy_itable_init=1,lazy_journal_init=1",
                owner.uid, owner.gid
            ))
            .arg("-d")
            .arg(dir)
            .arg(image)
            .arg(format!("{}k", size / 1024))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| ImageMgrError::Tool {
                program: "mkfs.ext4",
                path: image.to_path_buf(),
                message: format!("cannot run mkfs.ext4 (install e2fsprogs): {e}"),
            })?;
        if !out.status.success() {
            return Err(ImageMgrError::Tool {
                program: "mkfs.ext4",
                path: image.to_path_buf(),
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let mut edit = Ext4Edit::new(image)?;
        edit.chown_dir("/", root_mode, owner)?;
        chown_tree(&mut edit, dir, "", owner)?;
        edit.commit()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(image);
    }
    result
}

fn chown_tree(
    edit: &mut Ext4Edit,
    host: &Path,
    rel: &str,
    owner: Owner,
) -> Result<(), ImageMgrError> {
    let rd = std::fs::read_dir(host.join(rel.trim_start_matches('/'))).map_err(io_err(host))?;
    for e in rd {
        let e = e.map_err(io_err(host))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let child = format!("{rel}/{name}");
        let md = e.path().symlink_metadata().map_err(io_err(&e.path()))?;
        let q = quote(&child)?;
        writeln!(
            edit.script,
            "sif {q} uid {}\nsif {q} gid {}",
            owner.uid, owner.gid
        )
        .ok();
        if md.is_dir() {
            chown_tree(edit, host, &child, owner)?;
        }
    }
    Ok(())
}

fn tree_size(dir: &Path) -> Result<(u64, u64), ImageMgrError> {
    let mut bytes = 0;
    let mut entries = 1;
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let md = e.path().symlink_metadata().map_err(io_err(&e.path()))?;
        entries += 1;
        if md.is_dir() {
            let (b, n) = tree_size(&e.path())?;
            bytes += b;
            entries += n;
        } else {
            bytes += md.len().next_multiple_of(4096);
        }
    }
    Ok((bytes, entries))
}

fn debugfs_read(disk: &Path, request: &str) -> Result<Vec<u8>, ImageMgrError> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(request)
        .arg(disk)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_missing(disk, e))?;
    if !out.status.success() {
        return Err(ImageMgrError::Tool {
            program: "debugfs",
            path: disk.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

/// An absolute path without `.`/`..`/empty components.
fn normalize(path: &str) -> Result<String, ImageMgrError> {
    if !path.starts_with('/') {
        return Err(ImageMgrError::Unsupported {
            what: format!("a relative path in an image ({path:?})"),
        });
    }
    let mut out = String::new();
    for c in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
        if c == ".." {
            return Err(ImageMgrError::Unsupported {
                what: format!("a path with `..` in an image ({path:?})"),
            });
        }
        out.push('/');
        out.push_str(c);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// `"s"` for debugfs; quotes and newlines cannot be expressed.
fn quote(s: &str) -> Result<String, ImageMgrError> {
    if s.contains('"') || s.contains('\n') {
        return Err(ImageMgrError::Unsupported {
            what: format!("a path with a quote or newline ({s:?})"),
        });
    }
    Ok(format!("\"{s}\""))
}

fn tool_missing(disk: &Path, e: std::io::Error) -> ImageMgrError {
    ImageMgrError::Tool {
        program: "debugfs",
        path: disk.to_path_buf(),
        message: format!("cannot run debugfs (install e2fsprogs): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_testsupport::ext4::fsck_clean;

    /// A 16 MiB image made from a small tree, or `None` (with a SKIP line)
    /// without e2fsprogs.
    fn image(dir: &Path) -> Option<PathBuf> {
        let img = dir.join("fs.ext4");
        let made = banger_testsupport::ext4::Mkfs::new()
            .file("etc/fstab", "# fstab\n")
            .build(&img, "16M");
        if let Err(why) = made {
            banger_testsupport::skip!(return None; "ext4edit", "{why}");
        }
        if Command::new("debugfs").arg("-V").output().is_err() {
            banger_testsupport::skip!(return None; "ext4edit", "debugfs missing (install e2fsprogs)");
        }
        Some(img)
    }

    fn stat(img: &Path, p: &str) -> String {
        String::from_utf8(debugfs_read(img, &format!("stat \"{p}\"")).unwrap()).unwrap()
    }

    #[test]
    fn writes_dirs_files_and_symlinks_with_owner_and_mode() {
        let t = tempfile::tempdir().unwrap();
        let Some(img) = image(t.path()) else { return };
        let dev = Owner {
            uid: 1000,
            gid: 1001,
        };
        let mut e = Ext4Edit::new(&img).unwrap();
        e.mkdir_p("/home/dev/.ssh", 0o700, dev).unwrap();
        e.write_file(
            "/home/dev/.ssh/authorized_keys",
            b"ssh-ed25519 AAAA k\n",
            0o600,
            dev,
        )
        .unwrap();
        e.write_file("/usr/local/bin/tool", b"\x7fELF....", 0o755, Owner::ROOT)
            .unwrap();
        e.symlink("/etc/link", "/usr/local/bin/tool", Owner::ROOT)
            .unwrap();
        e.commit().unwrap();

        assert!(stat(&img, "/home/dev/.ssh").contains("Mode:  0700"));
        assert!(stat(&img, "/home/dev/.ssh").contains("User:  1000"));
        let k = stat(&img, "/home/dev/.ssh/authorized_keys");
        assert!(
            k.contains("Mode:  0600") && k.contains("Group:  1001"),
            "{k}"
        );
        assert!(stat(&img, "/usr/local/bin/tool").contains("Mode:  0755"));
        assert!(stat(&img, "/etc/link").contains("Type: symlink"));
        // The existing /etc kept its mode and owner.
        assert!(stat(&img, "/etc").contains("Mode:  0755"));
        assert_eq!(
            read_file(&img, "/home/dev/.ssh/authorized_keys")
                .unwrap()
                .unwrap(),
            b"ssh-ed25519 AAAA k\n"
        );
        assert_eq!(read_file(&img, "/nope").unwrap(), None);
        assert_eq!(
            read_file(&img, "/etc/fstab").unwrap().unwrap(),
            b"# fstab\n"
        );

        // Replacing works, and the result is a clean filesystem.
        let mut e = Ext4Edit::new(&img).unwrap();
        e.write_file(
            "/etc/fstab",
            b"# fstab\n/dev/vdb /root ext4 defaults 0 2\n",
            0o644,
            Owner::ROOT,
        )
        .unwrap();
        e.symlink("/etc/link", "/elsewhere", Owner::ROOT).unwrap();
        e.commit().unwrap();
        assert!(
            String::from_utf8(read_file(&img, "/etc/fstab").unwrap().unwrap())
                .unwrap()
                .contains("/dev/vdb")
        );
        fsck_clean(&img);
    }

    #[test]
    fn refuses_relative_dotdot_and_quotes() {
        let t = tempfile::tempdir().unwrap();
        let Some(img) = image(t.path()) else { return };
        let mut e = Ext4Edit::new(&img).unwrap();
        assert!(e.write_file("etc/x", b"", 0o644, Owner::ROOT).is_err());
        assert!(e.write_file("/etc/../x", b"", 0o644, Owner::ROOT).is_err());
        assert!(e.write_file("/etc/\"x", b"", 0o644, Owner::ROOT).is_err());
        assert!(Ext4Edit::new(&t.path().join("missing")).is_err());
    }

    #[test]
    fn dumps_a_dir_and_builds_an_owned_image_from_it() {
        let t = tempfile::tempdir().unwrap();
        let Some(img) = image(t.path()) else { return };
        let dev = Owner {
            uid: 1000,
            gid: 1000,
        };
        let mut e = Ext4Edit::new(&img).unwrap();
        e.write_file("/home/dev/.profile", b"export A=1\n", 0o644, dev)
            .unwrap();
        e.write_file("/home/dev/sub/file", b"x", 0o600, dev)
            .unwrap();
        e.commit().unwrap();
        let dumped = dump_dir(&img, "/home/dev", &t.path().join("dump")).unwrap();
        assert_eq!(
            std::fs::read(dumped.join(".profile")).unwrap(),
            b"export A=1\n"
        );
        let work = t.path().join("work.ext4");
        build_ext4_from_dir(&dumped, &work, 8 << 20, dev, 0o750).unwrap();
        assert!(stat(&work, "/").contains("Mode:  0750"));
        assert!(stat(&work, "/").contains("User:  1000"));
        assert!(stat(&work, "/sub/file").contains("User:  1000"));
        assert_eq!(read_file(&work, "/sub/file").unwrap().unwrap(), b"x");
        fsck_clean(&work);
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&work).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o600, "the work seed is private, not {mode:o}");
        }
        assert!(build_ext4_from_dir(&dumped, &work, 0, dev, 0o755).is_err());
        assert!(work.exists(), "an existing image is left alone");
    }
}
