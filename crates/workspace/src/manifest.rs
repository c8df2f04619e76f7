//! The manifest of a prepared workspace and the delta against the previous
//! prepare.
//!
//! One entry per carried file: path bytes, mode, size, mtime and (once
//! known) a BLAKE3 content hash. A file whose mode, size and mtime match the
//! previous manifest is not read again (the quick check rsync also uses);
//! one whose stat changed is hashed and sent only when the hash differs or
//! was never recorded. Files of the previous manifest that are gone become
//! deletions.
//!
//! On disk a manifest is text, one entry per line:
//! `mode size mtime_ns hash|- hex(path)`.

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a manifest could not be built, read or written.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Reading a file of the checkout failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A stored manifest is damaged.
    #[error("manifest {path} is damaged at line {line}; delete it to send everything again")]
    Damaged {
        /// The manifest file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// The guest's stat listing could not be read.
    #[error("the guest's listing of its checkout is unreadable: {reason}")]
    GuestListing {
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// One carried file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// `st_mode` (type and permission bits).
    pub mode: u32,
    /// Size in bytes (link length for symlinks).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// BLAKE3 of the content (of the link target for symlinks), once computed.
    pub hash: Option<[u8; 32]>,
}

/// All carried files, keyed by path relative to the checkout root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Entries by path (hashed: a lookup per file on every prepare).
    pub entries: HashMap<PathBuf, ManifestEntry, PathHash>,
}

/// The manifest map's hasher: a multiply-rotate hash (as rustc's `FxHash`)
/// instead of SipHash. Keys are the user's own paths, so flooding is no
/// concern, and a re-prepare hashes every path of the checkout three times.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathHash;

impl std::hash::BuildHasher for PathHash {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher(0)
    }
}

/// See [`PathHash`].
#[derive(Debug, Clone, Copy)]
pub struct FxHasher(u64);

impl FxHasher {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::K);
    }
}

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// What a prepare must send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Files to (re)send.
    pub send: Vec<PathBuf>,
    /// Files to delete on the guest.
    pub delete: Vec<PathBuf>,
}

/// `lstat` of `root/rel`; `None` when it is gone (deleted since git listed
/// it, or a tracked file deleted from the work tree): not carried.
fn stat(root: &Path, rel: &Path) -> Result<Option<ManifestEntry>, ManifestError> {
    let path = root.join(rel);
    let md = match path.symlink_metadata() {
        Ok(md) => md,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.kind() == std::io::ErrorKind::NotADirectory =>
        {
            return Ok(None);
        }
        Err(source) => return Err(ManifestError::Read { path, source }),
    };
    Ok(Some(ManifestEntry {
        mode: md.mode(),
        size: md.size(),
        mtime_ns: md.mtime() as i128 * 1_000_000_000 + md.mtime_nsec() as i128,
        hash: None,
    }))
}

/// BLAKE3 of a file's content, or of its link target for a symlink.
pub fn hash_file(path: &Path) -> Result<[u8; 32], ManifestError> {
    let err = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let md = path.symlink_metadata().map_err(err)?;
    let mut hasher = blake3::Hasher::new();
    if md.file_type().is_symlink() {
        let target = std::fs::read_link(path).map_err(err)?;
        hasher.update(target.as_os_str().as_bytes());
    } else {
        let mut f = std::fs::File::open(path).map_err(err)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = f.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(*hasher.finalize().as_bytes())
}

impl Manifest {
    /// Stat `files` under `root` and compare with `previous`: unchanged stats
    /// keep the old entry (and hash); changed ones are hashed and sent unless
    /// the content is provably the same. A listed file that does not exist
    /// is not carried (a deletion when `previous` had it), so `files` may be
    /// git's unchecked listing.
    pub fn scan(
        root: &Path,
        files: &[PathBuf],
        previous: &Manifest,
    ) -> Result<(Manifest, Delta), ManifestError> {
        Self::scan_with(root, files, previous, |_| false)
    }

    /// [`scan`](Self::scan), trusting the previous entry without a `stat`
    /// for paths `immutable` accepts (content-addressed files such as
    /// `.git/objects/**`, whose name changes whenever their content would).
    pub fn scan_with(
        root: &Path,
        files: &[PathBuf],
        previous: &Manifest,
        immutable: impl Fn(&Path) -> bool,
    ) -> Result<(Manifest, Delta), ManifestError> {
        let mut next = Manifest {
            entries: HashMap::with_capacity_and_hasher(files.len(), PathHash),
        };
        let mut delta = Delta::default();
        let mut seen = 0;
        for rel in files {
            let old = previous.entries.get(rel);
            if let Some(old) = old
                && immutable(rel)
            {
                seen += 1;
                next.entries.insert(rel.clone(), old.clone());
                continue;
            }
            let Some(mut entry) = stat(root, rel)? else {
                continue;
            };
            seen += usize::from(old.is_some());
            match old {
                Some(old)
                    if old.mode == entry.mode
                        && old.size == entry.size
                        && old.mtime_ns == entry.mtime_ns =>
                {
                    entry.hash = old.hash;
                }
                Some(old) if old.hash.is_some() && old.mode == entry.mode => {
                    let hash = hash_file(&root.join(rel))?;
                    entry.hash = Some(hash);
                    if old.hash != Some(hash) {
                        delta.send.push(rel.clone());
                    }
                }
                Some(_) => {
                    entry.hash = Some(hash_file(&root.join(rel))?);
                    delta.send.push(rel.clone());
                }
                None => delta.send.push(rel.clone()),
            }
            next.entries.insert(rel.clone(), entry);
        }
        // `files` holds each path once: when every previous path was seen
        // again, nothing was deleted and the check below is skipped.
        if seen != previous.entries.len() {
            for rel in previous.entries.keys() {
                if !next.entries.contains_key(rel) {
                    delta.delete.push(rel.clone());
                }
            }
        }
        delta.delete.sort();
        Ok((next, delta))
    }

    /// Serialize to the text form.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(self.entries.len() * 96);
        let mut sorted: Vec<_> = self.entries.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
        for (path, e) in sorted {
            let hash = e.hash.map(|h| hex(&h)).unwrap_or_else(|| "-".to_string());
            let _ = writeln!(
                out,
                "{:o} {} {} {} {}",
                e.mode,
                e.size,
                e.mtime_ns,
                hash,
                hex(path.as_os_str().as_bytes())
            );
        }
        out
    }

    /// Parse the text form; `origin` names the file in errors.
    pub fn from_text(text: &str, origin: &Path) -> Result<Manifest, ManifestError> {
        // Sized up front: a re-prepare parses tens of thousands of lines,
        // and rehashing while growing cost more than the parse itself.
        let lines = text.bytes().filter(|b| *b == b'\n').count() + 1;
        let mut m = Manifest {
            entries: HashMap::with_capacity_and_hasher(lines, PathHash),
        };
        for (i, line) in text.lines().enumerate() {
            let damaged = || ManifestError::Damaged {
                path: origin.to_path_buf(),
                line: i + 1,
            };
            let mut f = line.split(' ');
            let (Some(mode), Some(size), Some(mtime), Some(hash), Some(path), None) =
                (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
            else {
                return Err(damaged());
            };
            let hash = match hash {
                "-" => None,
                h => {
                    let mut out = [0u8; 32];
                    if !unhex_into(h.as_bytes(), &mut out) {
                        return Err(damaged());
                    }
                    Some(out)
                }
            };
            let entry = ManifestEntry {
                mode: u32::from_str_radix(mode, 8).map_err(|_| damaged())?,
                size: size.parse().map_err(|_| damaged())?,
                mtime_ns: mtime.parse().map_err(|_| damaged())?,
                hash,
            };
            let mut raw = vec![0u8; path.len() / 2];
            if !unhex_into(path.as_bytes(), &mut raw) {
                return Err(damaged());
            }
            m.entries
                .insert(PathBuf::from(std::ffi::OsString::from_vec(raw)), entry);
        }
        Ok(m)
    }

    /// Load from `path`; a missing file is an empty manifest.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        load_text(path, Manifest::from_text)
    }
}

/// Parse the record file at `path` with `parse`; a missing file is the
/// empty record.
pub(crate) fn load_text<T: Default>(
    path: &Path,
    parse: impl FnOnce(&str, &Path) -> Result<T, ManifestError>,
) -> Result<T, ManifestError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(source) => Err(ManifestError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(DIGITS[(x >> 4) as usize] as char);
        s.push(DIGITS[(x & 15) as usize] as char);
    }
    s
}

/// Decode hex `s` into exactly `out.len()` bytes; false on a bad digit or
/// length.
pub(crate) fn unhex_into(s: &[u8], out: &mut [u8]) -> bool {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    if s.len() != out.len() * 2 {
        return false;
    }
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => *o = h << 4 | l,
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::inspect;
    use crate::test_repo::make_repo;

    #[test]
    fn second_scan_sends_only_changes_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        let info = inspect(&root).unwrap();
        let (first, d1) = Manifest::scan(&root, &info.files, &Manifest::default()).unwrap();
        assert_eq!(d1.send.len(), info.files.len());
        assert!(d1.delete.is_empty());

        let (_, same) = Manifest::scan(&root, &info.files, &first).unwrap();
        assert_eq!(same, Delta::default());

        std::fs::write(root.join("sub/deep/a.txt"), "changed\n").unwrap();
        std::fs::remove_file(root.join("untracked.txt")).unwrap();
        std::fs::write(root.join("fresh.txt"), "x").unwrap();
        let info = inspect(&root).unwrap();
        let (second, d2) = Manifest::scan(&root, &info.files, &first).unwrap();
        assert_eq!(
            d2.send,
            vec![PathBuf::from("fresh.txt"), PathBuf::from("sub/deep/a.txt")]
        );
        assert_eq!(d2.delete, vec![PathBuf::from("untracked.txt")]);

        // Touch without change: hashed once, then not sent the next time.
        let (third, _) = Manifest::scan(&root, &info.files, &second).unwrap();
        let f = std::fs::File::options()
            .append(true)
            .open(root.join("run.sh"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
            .unwrap();
        let (fourth, d3) = Manifest::scan(&root, &info.files, &third).unwrap();
        assert_eq!(d3.send, vec![PathBuf::from("run.sh")], "no hash known yet");
        let f = std::fs::File::options()
            .append(true)
            .open(root.join("run.sh"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(9))
            .unwrap();
        let (_, d4) = Manifest::scan(&root, &info.files, &fourth).unwrap();
        assert!(d4.send.is_empty(), "same content, known hash: {d4:?}");
    }

    #[test]
    fn listed_but_vanished_file_becomes_a_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        let files = vec![PathBuf::from("run.sh"), PathBuf::from("untracked.txt")];
        let (first, _) = Manifest::scan(&root, &files, &Manifest::default()).unwrap();
        std::fs::remove_file(root.join("untracked.txt")).unwrap();
        // Still listed (git's unchecked listing): gone on disk, so deleted.
        let (next, d) = Manifest::scan(&root, &files, &first).unwrap();
        assert_eq!(d.delete, vec![PathBuf::from("untracked.txt")]);
        assert!(d.send.is_empty());
        assert_eq!(next.entries.len(), 1);
    }

    #[test]
    fn immutable_paths_are_not_stated_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        let files = vec![PathBuf::from("run.sh"), PathBuf::from("sub/deep/a.txt")];
        let (first, _) = Manifest::scan(&root, &files, &Manifest::default()).unwrap();
        std::fs::write(root.join("run.sh"), "changed, but declared immutable").unwrap();
        std::fs::write(root.join("sub/deep/a.txt"), "changed").unwrap();
        let (next, d) =
            Manifest::scan_with(&root, &files, &first, |p| p == Path::new("run.sh")).unwrap();
        assert_eq!(d.send, vec![PathBuf::from("sub/deep/a.txt")]);
        assert_eq!(
            next.entries[Path::new("run.sh")],
            first.entries[Path::new("run.sh")]
        );
    }

    #[test]
    fn text_round_trip_keeps_non_utf8_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        let info = inspect(&root).unwrap();
        let (mut m, _) = Manifest::scan(&root, &info.files, &Manifest::default()).unwrap();
        m.entries.values_mut().next().unwrap().hash = Some([7; 32]);
        let back = Manifest::from_text(&m.to_text(), Path::new("m")).unwrap();
        assert_eq!(back, m);
        assert!(matches!(
            Manifest::from_text("garbage\n", Path::new("m")),
            Err(ManifestError::Damaged { line: 1, .. })
        ));
        assert_eq!(
            Manifest::load(&dir.path().join("none")).unwrap(),
            Manifest::default()
        );
    }
}
