//! What the guest holds of a prepared checkout, in the guest's own terms.
//!
//! The host's [`Manifest`](crate::Manifest) says what was sent; it cannot
//! see a file changed or deleted inside the guest afterwards. So after each
//! import the guest reports `inode size mtime ctime` of every file it just
//! received (GNU `find -printf '%i %s %T@ %C@'`, nanosecond times), and the
//! host keeps that as the [`GuestState`] of the checkout. The next prepare
//! sends the guest the list of paths it should hold ([`check_list`]); the
//! guest answers with the same four values for each one it still has, and
//! every path whose answer differs from the record, or that is missing, is
//! sent again ([`GuestState::changed`]). The inode change time moves on
//! every write, `chmod` or rename, even one that restores the mtime, and a
//! file replaced by a new one has a new inode.
//!
//! The guest writes records as `./<path>\t<stat>\0` (paths are raw bytes,
//! the stat part holds no tab), and ends a listing with an empty record (a
//! lone NUL). On disk the state is text, one entry per line:
//! `hex(path) <stat>`.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::manifest::{ManifestError, PathHash, hex, load_text, unhex_into};

/// The guest's `stat` of each file of a checkout, as the guest printed it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestState {
    /// `inode size mtime ctime` by path relative to the checkout root.
    pub entries: HashMap<PathBuf, Box<str>, PathHash>,
}

/// The NUL-separated `./<path>` list the guest stats: `./` keeps a name
/// that starts with `-` or `(` from reading as a `find` option.
pub fn check_list<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(b"./");
        out.extend_from_slice(p.as_os_str().as_bytes());
        out.push(0);
    }
    out
}

impl GuestState {
    /// Parse one listing at the start of `bytes`, up to and including its
    /// terminating empty record; returns the state and the bytes consumed.
    /// A listing without its terminator (the guest was cut off) is an
    /// error, never a partial state.
    pub fn parse_listing(bytes: &[u8]) -> Result<(GuestState, usize), ManifestError> {
        let bad = |reason| ManifestError::GuestListing { reason };
        let mut state = GuestState::default();
        let mut at = 0;
        loop {
            let Some(len) = bytes[at..].iter().position(|b| *b == 0) else {
                return Err(bad("it ends before its terminator"));
            };
            let record = &bytes[at..at + len];
            at += len + 1;
            if record.is_empty() {
                return Ok((state, at));
            }
            let Some(tab) = record.iter().rposition(|b| *b == b'\t') else {
                return Err(bad("a record has no tab"));
            };
            let (path, stat) = (&record[..tab], &record[tab + 1..]);
            let Some(path) = path.strip_prefix(b"./").filter(|p| !p.is_empty()) else {
                return Err(bad("a path does not start with ./"));
            };
            let Ok(stat) = std::str::from_utf8(stat) else {
                return Err(bad("a stat is not text"));
            };
            if stat.split(' ').count() != 4 {
                return Err(bad("a stat does not have four fields"));
            }
            state.entries.insert(
                PathBuf::from(OsString::from_vec(path.to_vec())),
                stat.into(),
            );
        }
    }

    /// The paths among `expected` whose stat in `now` (the guest's answer)
    /// differs from this record, or that either side lacks: the files the
    /// guest changed, replaced or deleted since the last import (or that
    /// were never recorded), sorted.
    pub fn changed<'a>(
        &self,
        now: &GuestState,
        expected: impl IntoIterator<Item = &'a PathBuf>,
    ) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = expected
            .into_iter()
            .filter(|p| match (self.entries.get(*p), now.entries.get(*p)) {
                (Some(was), Some(is)) => was != is,
                _ => true,
            })
            .cloned()
            .collect();
        out.sort();
        out
    }

    /// Serialize to the text form.
    pub fn to_text(&self) -> String {
        let mut sorted: Vec<_> = self.entries.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.as_os_str().cmp(b.0.as_os_str()));
        let mut out = String::with_capacity(self.entries.len() * 96);
        for (path, stat) in sorted {
            out.push_str(&hex(path.as_os_str().as_bytes()));
            out.push(' ');
            out.push_str(stat);
            out.push('\n');
        }
        out
    }

    /// Parse the text form; `origin` names the file in errors.
    pub fn from_text(text: &str, origin: &Path) -> Result<GuestState, ManifestError> {
        let mut state = GuestState::default();
        for (i, line) in text.lines().enumerate() {
            let damaged = || ManifestError::Damaged {
                path: origin.to_path_buf(),
                line: i + 1,
            };
            let (path, stat) = line.split_once(' ').ok_or_else(damaged)?;
            if stat.split(' ').count() != 4 {
                return Err(damaged());
            }
            let mut raw = vec![0u8; path.len() / 2];
            if !unhex_into(path.as_bytes(), &mut raw) || raw.is_empty() {
                return Err(damaged());
            }
            state
                .entries
                .insert(PathBuf::from(OsString::from_vec(raw)), stat.into());
        }
        Ok(state)
    }

    /// Load from `path`; a missing file is an empty state (every path is
    /// then checked as changed, so the next prepare resends it).
    pub fn load(path: &Path) -> Result<GuestState, ManifestError> {
        load_text(path, GuestState::from_text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::stat_function;
    use std::process::{Command, Stdio};

    /// The guest's own `find`, through the script's stat command, over
    /// `list` in `dir`.
    fn guest_stat(dir: &Path, list: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let script = format!("{}\nbanger_stat", stat_function());
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(list).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    }

    #[test]
    fn guest_listing_round_trips_and_sees_changes_replacements_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let names = [
            "plain.txt",
            "-dash",
            "with\ttab",
            "new\nline",
            "sub/deep.rs",
            "gone",
            "touched",
        ];
        std::fs::create_dir(d.join("sub")).unwrap();
        for n in names {
            std::fs::write(d.join(n), n).unwrap();
        }
        let paths: Vec<PathBuf> = names.iter().map(PathBuf::from).collect();
        let list = check_list(paths.iter().map(PathBuf::as_path));
        let out = guest_stat(d, &list);
        let (before, used) = GuestState::parse_listing(&out).unwrap();
        assert_eq!(used, out.len());
        assert_eq!(before.entries.len(), names.len(), "{before:?}");
        assert!(before.changed(&before, &paths).is_empty());

        // Text form on disk.
        let text = before.to_text();
        assert_eq!(
            GuestState::from_text(&text, Path::new("x")).unwrap(),
            before
        );

        // Same content, mtime put back: the ctime still moves.
        let mtime = std::fs::metadata(d.join("touched"))
            .unwrap()
            .modified()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(d.join("touched"), "touched").unwrap();
        std::fs::File::options()
            .write(true)
            .open(d.join("touched"))
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        std::fs::remove_file(d.join("gone")).unwrap();
        std::fs::write(d.join("sub/deep.rs"), "changed").unwrap();
        // Replaced by a new file of the same content (an editor's rename).
        std::fs::write(d.join("tmp"), "-dash").unwrap();
        std::fs::rename(d.join("tmp"), d.join("-dash")).unwrap();
        let out = guest_stat(d, &list);
        let (after, _) = GuestState::parse_listing(&out).unwrap();
        assert_eq!(
            before.changed(&after, &paths),
            ["-dash", "gone", "sub/deep.rs", "touched"]
                .map(PathBuf::from)
                .to_vec()
        );
        // Never recorded: checked as changed.
        assert_eq!(
            GuestState::default().changed(&after, &paths[..1]),
            vec![PathBuf::from("plain.txt")]
        );
    }

    #[test]
    fn cut_or_damaged_listings_are_errors() {
        for bad in [
            &b""[..],
            b"./a\t1 2 3 4\0",
            b"a\t1 2 3 4\0\0",
            b"./a 1 2 3 4\0\0",
            b"./a\t1 2 3\0\0",
            b"./\t1 2 3 4\0\0",
        ] {
            assert!(GuestState::parse_listing(bad).is_err(), "{bad:?}");
        }
        let (s, used) = GuestState::parse_listing(b"./a\tb\t1 2 3 4\0\0rest").unwrap();
        assert_eq!(used, 15);
        assert_eq!(&*s.entries[Path::new("a\tb")], "1 2 3 4");
        assert!(GuestState::from_text("zz 1 2 3 4\n", Path::new("x")).is_err());
        assert!(GuestState::from_text("61 1 2\n", Path::new("x")).is_err());
    }
}
