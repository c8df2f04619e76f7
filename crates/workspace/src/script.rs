//! Guest-side shell scripts, generated on the host and run with `sh -c` over
//! SSH. Every value is single-quoted with [`quote`]; the scripts use only
//! POSIX sh, `tar`, `xargs -0`, `rm`, `head -c`, GNU `find -printf` and `git`.

/// Where the import stream carries its control files inside the checkout
/// (under `.git`, so no work-tree path can collide with it).
pub const IMPORT_DIR: &str = ".git/banger-import";
/// The NUL-separated list of paths the guest deletes after extracting.
pub const DELETE_LIST: &str = ".git/banger-import/delete";
/// The NUL-separated `./<path>` list of files the guest stats after the
/// import (what it just received), reported as the new [`GuestState`].
///
/// [`GuestState`]: crate::GuestState
pub const STAT_LIST: &str = ".git/banger-import/stat";
/// GNU `find -printf` format of one guest stat record (see
/// [`crate::guest_state`]): path, tab, `inode size mtime ctime`, NUL.
pub const STAT_RECORD: &str = r"%p\t%i %s %T@ %C@\0";
/// A marker in the import stream: the guest re-applies the index settings
/// (see [`import_script`]) when it is present, so a script sent before the
/// host knows what the stream holds can still do it.
pub const REFRESH_MARKER: &str = ".git/banger-import/refresh";
/// The first line the import script prints: the guest can take a
/// zstd-compressed stream. The host answers with the format it writes.
pub const HELLO_ZSTD: &str = "banger-import zstd";
/// The first line the import script prints when the guest has no `zstd`.
pub const HELLO_TAR: &str = "banger-import tar";
/// The format line the host sends first: a plain tar stream follows.
pub const FORMAT_TAR: &str = "tar";
/// The format line the host sends first: a zstd frame of the tar follows.
pub const FORMAT_ZSTD: &str = "zstd";
/// The last line the import script prints on success.
pub const IMPORT_OK: &str = "banger-import-ok";

/// Single-quote `s` for POSIX sh (bytes are kept as they are).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The directory expression for `dir`: absolute as given, otherwise relative
/// to the guest user's `$HOME`.
fn dir_expr(dir: &str) -> String {
    if dir.starts_with('/') {
        quote(dir)
    } else {
        format!("\"$HOME\"/{}", quote(dir))
    }
}

/// The sh function `banger_stat`: the stat listing (see
/// [`crate::guest_state`]) of the NUL-separated paths on its stdin, paths
/// the guest lacks left out, ended by an empty record.
pub(crate) fn stat_function() -> String {
    format!(
        r#"banger_stat() {{
  xargs -0r sh -c 'exec find "$@" -maxdepth 0 -printf "{STAT_RECORD}" 2>/dev/null' sh || true
  printf '\0'
}}"#
    )
}

/// Unpack a workspace stream from stdin into `dir`, apply the deletion list,
/// drop the control files and, with `refresh` or when the stream carries
/// [`REFRESH_MARKER`], make the copied index valid on the guest (HEAD,
/// branch, index and remotes came with `.git`).
///
/// The script first says whether the guest can decompress zstd
/// ([`HELLO_ZSTD`] or [`HELLO_TAR`] on stdout). With `check`, it then reads
/// a line with a byte count and that many bytes of a
/// [`check_list`](crate::guest_state::check_list), and prints its stat
/// listing of those paths (see [`crate::guest_state`]). Then it reads one
/// line naming the stream that follows ([`FORMAT_ZSTD`] or [`FORMAT_TAR`];
/// `read` and `head -c` take exactly their bytes, the rest stays for the
/// decoder). After the import it prints the stat listing of the paths in
/// [`STAT_LIST`] (an empty listing without one), then [`IMPORT_OK`].
///
/// A copied index carries the host's inode/ctime/uid data; rather than
/// rehashing the whole tree (`update-index --refresh`, the cost of a full
/// content hash on every full copy), the checkout is told to compare only
/// what the copy preserves: `core.checkStat=minimal` (whole-second mtime
/// and size; tar keeps both) and `core.trustCtime=false`. Changed files
/// still differ in size or mtime and are rehashed by git as usual; racy
/// entries (mtime not older than the index) are rechecked by content. The
/// settings are re-applied on every import since `.git/config` may be
/// re-sent from the host.
pub fn import_script(dir: &str, refresh: bool, check: bool) -> String {
    let settings = "git -c safe.directory='*' config core.checkStat minimal \\\n    \
                    && git -c safe.directory='*' config core.trustCtime false || true";
    let refresh = if refresh {
        format!("if command -v git >/dev/null 2>&1; then\n  {settings}\nfi\n")
    } else {
        format!(
            "if [ -e {marker} ] && command -v git >/dev/null 2>&1; then\n  {settings}\nfi\n",
            marker = quote(REFRESH_MARKER)
        )
    };
    let check = if check {
        r#"IFS= read -r n
case "$n" in ''|*[!0-9]*) echo "bad check list length: $n" >&2; exit 2 ;; esac
head -c "$n" | banger_stat
"#
    } else {
        ""
    };
    format!(
        r#"set -eu
if command -v zstd >/dev/null 2>&1; then echo {hello_zstd}; else echo {hello_tar}; fi
{stat_fn}
dir={dir}
mkdir -p "$dir"
cd "$dir"
{check}IFS= read -r fmt
case "$fmt" in
  {zstd}) zstd -dcq | tar -x --no-same-owner -f - ;;
  {tar}) tar -x --no-same-owner -f - ;;
  *) echo "unknown workspace stream format: $fmt" >&2; exit 2 ;;
esac
if [ -s {del} ]; then xargs -0 rm -f -- < {del}; fi
{refresh}if [ -s {stat} ]; then banger_stat < {stat}; else printf '\0'; fi
rm -rf {imp}
echo {ok}
"#,
        dir = dir_expr(dir),
        del = quote(DELETE_LIST),
        stat = quote(STAT_LIST),
        imp = quote(IMPORT_DIR),
        ok = IMPORT_OK,
        stat_fn = stat_function(),
        hello_zstd = quote(HELLO_ZSTD),
        hello_tar = quote(HELLO_TAR),
        zstd = FORMAT_ZSTD,
        tar = FORMAT_TAR,
    )
}

/// What [`export_script`] writes to stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// A git bundle of `refs/banger/export` minus the base commit.
    Bundle,
    /// `git format-patch --stdout base..export`.
    Patch,
}

/// Exit code of the export script when the guest has nothing new.
pub const EXPORT_NOTHING: i32 = 3;

/// Snapshot the guest checkout at `dir` (commits plus uncommitted changes as
/// one extra commit, through a temporary index so the guest's own index is
/// untouched) into `refs/banger/export`, then write it as `format` relative
/// to `base` on stdout.
pub fn export_script(dir: &str, base: &str, vm: &str, format: ExportFormat) -> String {
    let emit = match format {
        ExportFormat::Bundle => r#"git bundle create -q - refs/banger/export --not "$base""#,
        ExportFormat::Patch => r#"git format-patch --stdout "$base..refs/banger/export""#,
    };
    format!(
        r#"set -eu
cd {dir}
base={base}
export GIT_CONFIG_COUNT=1 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*'
if [ -z "$(git config user.email || true)" ]; then
  export GIT_AUTHOR_NAME=banger GIT_AUTHOR_EMAIL=banger@{vm_q_bare}.vm
  export GIT_COMMITTER_NAME=banger GIT_COMMITTER_EMAIL=banger@{vm_q_bare}.vm
fi
git cat-file -e "$base^{{commit}}" 2>/dev/null || {{ echo "the guest checkout does not contain base commit $base" >&2; exit 4; }}
idx=$(mktemp)
trap 'rm -f "$idx"' EXIT
# -p: the copy keeps the index mtime, so git still treats entries as
# racy (rechecks content) where the original index would.
cp -p .git/index "$idx" 2>/dev/null || true
GIT_INDEX_FILE="$idx" git add -A
tree=$(GIT_INDEX_FILE="$idx" git write-tree)
head=$(git rev-parse HEAD)
if [ "$tree" = "$(git rev-parse "HEAD^{{tree}}")" ]; then
  tip=$head
else
  tip=$(git commit-tree "$tree" -p "$head" -m {msg})
fi
git update-ref refs/banger/export "$tip"
if [ "$tip" = "$base" ]; then exit {nothing}; fi
{emit}
"#,
        dir = dir_expr(dir),
        base = quote(base),
        vm_q_bare = vm
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect::<String>(),
        msg = quote(&format!("banger: uncommitted changes from {vm}")),
        nothing = EXPORT_NOTHING,
        emit = emit,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn quote_survives_sh() {
        for s in ["plain", "with space", "it's", "$HOME `x` \"q\"", "a\nb"] {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn import_script_is_valid_sh_and_relative_dirs_hang_off_home() {
        let s = import_script("work/my repo", true, true);
        assert!(s.contains("core.checkStat minimal"));
        let marked = import_script("w", false, false);
        assert!(marked.contains(&format!("[ -e {} ]", quote(REFRESH_MARKER))));
        assert!(!s.contains(&quote(REFRESH_MARKER)));
        let st = Command::new("sh")
            .args(["-n", "-c", &marked])
            .status()
            .unwrap();
        assert!(st.success());
        assert!(s.contains(r#"dir="$HOME"/'work/my repo'"#));
        let st = Command::new("sh").args(["-n", "-c", &s]).status().unwrap();
        assert!(st.success());
        assert!(import_script("/abs/x", true, false).contains("dir='/abs/x'"));
        let e = export_script("w", "abc", "dev", ExportFormat::Bundle);
        let st = Command::new("sh").args(["-n", "-c", &e]).status().unwrap();
        assert!(st.success());
    }
}

#[cfg(test)]
mod import_tests {
    use super::*;
    use crate::git::{git_dir_files, inspect};
    use crate::manifest::Manifest;
    use crate::tarstream::write_tar;
    use crate::test_repo::{make_repo, run_git};
    use std::io::Write;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};

    fn import(root: &std::path::Path, files: &[PathBuf], delete: &[PathBuf], dest: &str) {
        let mut list = Vec::new();
        for d in delete {
            list.extend_from_slice(d.as_os_str().as_bytes());
            list.push(0);
        }
        let mut buf = format!("{FORMAT_TAR}\n").into_bytes();
        write_tar(root, files, &[(PathBuf::from(DELETE_LIST), list)], &mut buf).unwrap();
        let mut child = Command::new("sh")
            .args(["-c", &import_script(dest, true, false)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&buf).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains(IMPORT_OK));
    }

    #[test]
    fn import_recreates_git_state_and_applies_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        std::fs::write(root.join("sub/deep/a.txt"), "dirty\n").unwrap();
        let info = inspect(&root).unwrap();
        let mut files = info.files.clone();
        files.extend(git_dir_files(&root).unwrap());
        let dest = dir.path().join("guest");
        let dest_s = dest.to_str().unwrap();
        import(&root, &files, &[], dest_s);
        let g = inspect(&dest).unwrap();
        assert_eq!(g.head, info.head);
        assert_eq!(g.branch.as_deref(), Some("main"));
        assert_eq!(g.files, info.files);
        assert!(!dest.join(IMPORT_DIR).exists());
        let st = run_git(&dest, &["status", "--porcelain"]);
        assert_eq!(
            String::from_utf8(st).unwrap(),
            " M sub/deep/a.txt\n?? untracked.txt\n"
        );

        let (m, _) = Manifest::scan(&root, &files, &Manifest::default()).unwrap();
        std::fs::remove_file(root.join("untracked.txt")).unwrap();
        let info = inspect(&root).unwrap();
        let mut files = info.files.clone();
        files.extend(git_dir_files(&root).unwrap());
        let (_, delta) = Manifest::scan(&root, &files, &m).unwrap();
        assert_eq!(delta.delete, vec![PathBuf::from("untracked.txt")]);
        import(&root, &delta.send, &delta.delete, dest_s);
        assert!(!dest.join("untracked.txt").exists());
        assert!(dest.join("run.sh").exists());
    }
}

#[cfg(test)]
mod marker_tests {
    use super::*;
    use crate::git::{git_dir_files, inspect_root, toplevel};
    use crate::manifest::Manifest;
    use crate::tarstream::write_stated;
    use crate::test_repo::{make_repo, run_git};
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    fn import_stated(root: &Path, m: &Manifest, send: &[PathBuf], marker: bool, dest: &Path) {
        let mut extra = vec![(PathBuf::from(DELETE_LIST), Vec::new())];
        if marker {
            extra.push((PathBuf::from(REFRESH_MARKER), Vec::new()));
        }
        let mut buf = format!("{FORMAT_TAR}\n").into_bytes();
        let files = send.iter().map(|p| (p.as_path(), &m.entries[p]));
        write_stated(root, files, &extra, &mut buf).unwrap();
        let mut child = Command::new("sh")
            .args(["-c", &import_script(dest.to_str().unwrap(), false, false)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&buf).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains(IMPORT_OK));
        assert!(!dest.join(IMPORT_DIR).exists());
    }

    fn check_stat(dest: &Path) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dest)
            .args(["config", "core.checkStat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn one_stat_pass_carries_the_checkout_and_the_marker_refreshes() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        // Tracked but deleted: listed by git, dropped by the scan's lstat.
        std::fs::remove_file(root.join("sub/with space.txt")).unwrap();
        let (top, name) = toplevel(&root.join("sub")).unwrap();
        let info = inspect_root(top, name, false).unwrap();
        assert!(info.files.contains(&PathBuf::from("sub/with space.txt")));
        let mut files = info.files.clone();
        files.extend(git_dir_files(&root).unwrap());
        let (m, delta) = Manifest::scan(&root, &files, &Manifest::default()).unwrap();
        assert!(!delta.send.contains(&PathBuf::from("sub/with space.txt")));
        assert_eq!(delta.send.len(), files.len() - 1);

        let dest = dir.path().join("guest");
        import_stated(&root, &m, &delta.send, false, &dest);
        assert_eq!(check_stat(&dest), "", "no marker, no refresh");
        import_stated(&root, &m, &[], true, &dest);
        assert_eq!(check_stat(&dest), "minimal");
        let st = run_git(&dest, &["status", "--porcelain"]);
        assert_eq!(
            String::from_utf8(st).unwrap(),
            " D \"sub/with space.txt\"\n?? untracked.txt\n"
        );
        let g = crate::git::inspect(&dest).unwrap();
        assert_eq!(g.head, info.head);
        assert_eq!(
            std::fs::read_link(dest.join("link")).unwrap(),
            Path::new("sub/deep/a.txt")
        );
    }
}

#[cfg(test)]
mod racy_export_tests {
    use super::*;
    use crate::git::{git_dir_files, inspect};
    use crate::manifest::Manifest;
    use crate::tarstream::write_stated;
    use crate::test_repo::{make_repo, run_git};
    use std::io::Write;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::time::{Duration, SystemTime};

    fn set_mtime(path: &std::path::Path, t: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    /// Host file, host index and the guest's same-size edit all in one
    /// second: with `core.checkStat=minimal` only the racy-entry check can
    /// see the edit, so the export's index copy must keep the index mtime.
    #[test]
    fn same_second_same_size_guest_edit_is_exported() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        let s = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        set_mtime(&root.join("sub/deep/a.txt"), s + Duration::from_millis(100));
        run_git(&root, &["add", "sub/deep/a.txt"]);
        set_mtime(&root.join(".git/index"), s + Duration::from_millis(200));
        let info = inspect(&root).unwrap();
        let mut files = info.files.clone();
        files.extend(git_dir_files(&root).unwrap());
        let (m, delta) = Manifest::scan(&root, &files, &Manifest::default()).unwrap();
        let extra = vec![
            (PathBuf::from(DELETE_LIST), Vec::new()),
            (PathBuf::from(REFRESH_MARKER), Vec::new()),
        ];
        let mut buf = format!("{FORMAT_TAR}\n").into_bytes();
        let sent = delta.send.iter().map(|p| (p.as_path(), &m.entries[p]));
        write_stated(&root, sent, &extra, &mut buf).unwrap();
        let dest = dir.path().join("guest");
        let mut child = Command::new("sh")
            .args(["-c", &import_script(dest.to_str().unwrap(), false, false)])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&buf).unwrap();
        assert!(child.wait().unwrap().success());

        // "a\n" -> "b\n": same size, same second.
        std::fs::write(dest.join("sub/deep/a.txt"), "b\n").unwrap();
        set_mtime(&dest.join("sub/deep/a.txt"), s + Duration::from_millis(700));
        let script = export_script(
            dest.to_str().unwrap(),
            info.head.as_deref().unwrap(),
            "dev",
            ExportFormat::Patch,
        );
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let patch = String::from_utf8_lossy(&out.stdout);
        assert!(
            patch.contains("+b"),
            "edit missing from the export: {patch}"
        );
    }
}
