//! The tar stream a guest unpacks with `tar -x`.
//!
//! Regular files keep their permission bits (so exec bits survive) and mtime;
//! symlinks stay symlinks (never followed); names are raw bytes, so spaces
//! and non-UTF-8 names pass, and long names use GNU long-name records.
//! Owners are written as 0 and the guest extracts with `--no-same-owner`.

use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a written stream contained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TarStats {
    /// Entries written.
    pub entries: u64,
    /// Content bytes written (headers excluded).
    pub bytes: u64,
}

/// Reads exactly `left` bytes: the file's, then zeros if it shrank since it
/// was stat'ed (a file changing under a prepare is re-sent next time).
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

/// Write `files` (relative to `root`) and then the in-memory `extra` files
/// as one tar stream into `out`.
pub fn write_tar<W: Write>(
    root: &Path,
    files: &[PathBuf],
    extra: &[(PathBuf, Vec<u8>)],
    out: W,
) -> io::Result<TarStats> {
    let pairs = files.iter().map(|rel| (rel.clone(), root.join(rel)));
    write_pairs(pairs, false, extra, out)
}

/// Write `(name in the archive, source file)` pairs; with `follow`, a
/// symlink source is stored as the file it points to.
pub fn write_pairs<W: Write>(
    pairs: impl IntoIterator<Item = (PathBuf, PathBuf)>,
    follow: bool,
    extra: &[(PathBuf, Vec<u8>)],
    out: W,
) -> io::Result<TarStats> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut stats = TarStats::default();
    for (rel, path) in pairs {
        let md = if follow {
            path.metadata()
        } else {
            path.symlink_metadata()
        };
        let md = match md {
            Ok(md) => md,
            // Vanished since the listing: the next prepare deletes it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let kind = if md.file_type().is_symlink() {
            Kind::Symlink
        } else if md.file_type().is_file() {
            Kind::Regular
        } else {
            continue;
        };
        let stat = Stat {
            kind,
            mode: md.mode(),
            size: md.size(),
            mtime: md.mtime(),
        };
        append(&mut b, &mut stats, &rel, &path, &stat)?;
    }
    finish(b, stats, extra)
}

/// Write `files` (relative to `root`) with the `lstat` results the caller
/// already holds (`mode` with its type bits, `size`, `mtime_ns`: a
/// [`ManifestEntry`](crate::ManifestEntry) from the scan), then `extra`: no
/// file is stat'ed again. A file that grew since is cut at the stated size,
/// one that shrank is padded with zeros, one that vanished is skipped; its
/// changed stat makes the next prepare send it again.
pub fn write_stated<'a, W: Write>(
    root: &Path,
    files: impl IntoIterator<Item = (&'a Path, &'a crate::ManifestEntry)>,
    extra: &[(PathBuf, Vec<u8>)],
    out: W,
) -> io::Result<TarStats> {
    const S_IFMT: u32 = 0o170000;
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut stats = TarStats::default();
    for (rel, e) in files {
        let kind = match e.mode & S_IFMT {
            0o120000 => Kind::Symlink,
            0o100000 => Kind::Regular,
            _ => continue,
        };
        let stat = Stat {
            kind,
            mode: e.mode,
            size: e.size,
            mtime: e.mtime_ns.div_euclid(1_000_000_000) as i64,
        };
        append(&mut b, &mut stats, rel, &root.join(rel), &stat)?;
    }
    finish(b, stats, extra)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Regular,
    Symlink,
}

/// What a tar header needs of a file's `lstat`.
struct Stat {
    kind: Kind,
    mode: u32,
    size: u64,
    mtime: i64,
}

fn append<W: Write>(
    b: &mut tar::Builder<W>,
    stats: &mut TarStats,
    rel: &Path,
    path: &Path,
    st: &Stat,
) -> io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.mode & 0o7777);
    h.set_mtime(st.mtime.max(0) as u64);
    h.set_uid(0);
    h.set_gid(0);
    let located = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    match st.kind {
        Kind::Symlink => {
            let target = match std::fs::read_link(path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(located(e)),
            };
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, rel, &target)?;
        }
        Kind::Regular => {
            let f = match std::fs::File::open(path) {
                Ok(f) => f,
                // Vanished since the listing: the next prepare deletes it.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(located(e)),
            };
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(st.size);
            b.append_data(
                &mut h,
                rel,
                Exact {
                    inner: f,
                    left: st.size,
                },
            )?;
            stats.bytes += st.size;
        }
    }
    stats.entries += 1;
    Ok(())
}

fn finish<W: Write>(
    mut b: tar::Builder<W>,
    mut stats: TarStats,
    extra: &[(PathBuf, Vec<u8>)],
) -> io::Result<TarStats> {
    for (rel, data) in extra {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o600);
        h.set_size(data.len() as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, rel, data.as_slice())?;
        stats.entries += 1;
        stats.bytes += data.len() as u64;
    }
    b.into_inner()?.flush()?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::inspect;
    use crate::test_repo::make_repo;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    use std::process::Command;

    #[test]
    fn gnu_tar_extracts_modes_links_and_odd_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        let long = "d/".repeat(70) + "long-name-file.txt";
        std::fs::create_dir_all(root.join(&long).parent().unwrap()).unwrap();
        std::fs::write(root.join(&long), "deep").unwrap();
        let mut files = inspect(&root).unwrap().files;
        files.push(PathBuf::from(&long));
        let mut buf = Vec::new();
        let stats = write_tar(
            &root,
            &files,
            &[(PathBuf::from(".git/banger-import/delete"), b"x\0".to_vec())],
            &mut buf,
        )
        .unwrap();
        assert_eq!(stats.entries, files.len() as u64 + 1);

        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let tar = dir.path().join("s.tar");
        std::fs::write(&tar, &buf).unwrap();
        let st = Command::new("tar")
            .arg("-x")
            .arg("--no-same-owner")
            .arg("-f")
            .arg(&tar)
            .arg("-C")
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        let mode = std::fs::metadata(out.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("sub/deep/a.txt")
        );
        assert_eq!(
            std::fs::read(out.join("sub/with space.txt")).unwrap(),
            b"space\n"
        );
        let odd = out.join(std::ffi::OsStr::from_bytes(b"bad-\xff-name"));
        assert_eq!(std::fs::read(odd).unwrap(), b"bytes\n");
        assert_eq!(std::fs::read(out.join(&long)).unwrap(), b"deep");
        assert!(!out.join("ignored.log").exists());
        assert_eq!(
            std::fs::read(out.join(".git/banger-import/delete")).unwrap(),
            b"x\0"
        );
    }

    #[test]
    fn shrunk_file_is_padded_not_corrupting_the_stream() {
        let mut r = Exact {
            inner: &b"ab"[..],
            left: 4,
        };
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"ab\0\0");
    }
}
