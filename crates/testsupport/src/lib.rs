//! Test support shared by the workspace's tests; a dev-dependency only,
//! never a dependency of a binary or library target.
//!
//! - [`skip!`]: a test that cannot run on this machine says why, loudly,
//!   and passes.
//! - [`ext4`]: small ext4 images made with `mkfs.ext4`, optionally filled
//!   from a few files.
//! - [`git()`]: `git` run with a fixed identity in a test's repositories.
//! - [`http`]: a tiny HTTP server on 127.0.0.1 for tests that download.
//! - [`RecordingOps`]: a [`PrivilegedOps`](banger_privops::PrivilegedOps)
//!   that records every operation before another one answers it.

pub mod ext4;
mod git;
pub mod http;
mod recording;

pub use git::{git, git_bytes};
pub use recording::RecordingOps;

/// Print `SKIP <test>: <reason>` straight to the process's stderr, past the
/// test harness's output capture, then `return` from the calling function.
///
/// `skip!("test_name", "reason {}", x)` returns `()`;
/// `skip!(return VALUE; "test_name", "reason")` returns `VALUE` (for a
/// helper that answers `None` or `false` to a test that cannot run).
#[macro_export]
macro_rules! skip {
    (return $ret:expr; $test:expr, $($why:tt)+) => {{
        $crate::print_skip($test, ::std::format_args!($($why)+));
        return $ret;
    }};
    ($test:expr, $($why:tt)+) => {{
        $crate::print_skip($test, ::std::format_args!($($why)+));
        return;
    }};
}

/// The line [`skip!`] prints: `SKIP <test>: <why>` on stderr, unbuffered
/// and not captured by the test harness.
pub fn print_skip(test: &str, why: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
}

/// The workspace crates (names starting with `banger`) under
/// `[dependencies]` of the Cargo manifest `manifest` (its text), sorted:
/// what a crate links of the workspace, for the tests that keep a crate
/// away from another.
pub fn banger_dependencies(manifest: &str) -> Vec<String> {
    let manifest: toml::Table = toml::from_str(manifest).expect("Cargo.toml parses");
    let mut ours: Vec<String> = manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|deps| {
            deps.keys()
                .filter(|k| k.starts_with("banger"))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    ours.sort_unstable();
    ours
}

/// Run `argv` (program, then its arguments) with stdin closed and require
/// success; its stdout as text. Panics with its output otherwise.
pub fn run(argv: &[&str]) -> String {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago (bound,
/// then released): for "the server does not answer" cases.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Every entry of the tree at `root` except `.git`, sorted: (path relative
/// to `root`, kind and mode, content). A symlink is `0o120000` and its
/// target; a file, its permission bits and its bytes. Two trees with the
/// same snapshot hold the same files, links and modes.
pub fn tree_snapshot(root: &std::path::Path) -> Vec<(Vec<u8>, u32, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            let md = p.symlink_metadata().unwrap();
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .to_vec();
            if md.is_dir() {
                stack.push(p);
            } else if md.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                out.push((rel, 0o120000, t.as_os_str().as_bytes().to_vec()));
            } else {
                out.push((
                    rel,
                    md.permissions().mode() & 0o777,
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Whether `program` is an executable file in a directory of `$PATH`.
pub fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    fn maybe_skip(skip_it: bool, ran: &mut bool) {
        if skip_it {
            skip!("maybe_skip", "reason {}", 1);
        }
        *ran = true;
    }

    fn value_skip() -> Option<u32> {
        skip!(return None; "value_skip", "no {}", "tool");
    }

    #[test]
    fn skip_returns_from_the_caller() {
        let mut ran = false;
        maybe_skip(true, &mut ran);
        assert!(!ran);
        maybe_skip(false, &mut ran);
        assert!(ran);
        assert_eq!(value_skip(), None);
    }

    #[test]
    fn banger_dependencies_lists_only_ours_under_dependencies() {
        let manifest = "[package]\nname = \"x\"\n\n[dependencies]\nserde = \"1\"\nbanger-b.workspace = true\nbanger-a = { path = \"../a\" }\n\n[dev-dependencies]\nbanger-testsupport.workspace = true\n";
        assert_eq!(
            super::banger_dependencies(manifest),
            ["banger-a", "banger-b"]
        );
        assert!(super::banger_dependencies("[package]\nname = \"x\"\n").is_empty());
    }

    #[test]
    fn run_gives_stdout_and_panics_on_failure() {
        assert_eq!(super::run(&["sh", "-c", "echo hi"]), "hi\n");
        assert!(std::panic::catch_unwind(|| super::run(&["sh", "-c", "exit 3"])).is_err());
    }

    #[test]
    fn free_port_is_not_listening() {
        let port = super::free_port();
        assert_ne!(port, 0);
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    }

    #[test]
    fn tree_snapshot_sees_content_modes_and_links_not_git() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("a/.git")).unwrap();
        std::fs::write(t.path().join("a/.git/HEAD"), "x").unwrap();
        std::fs::write(t.path().join("a/f"), "one").unwrap();
        std::os::unix::fs::symlink("a/f", t.path().join("l")).unwrap();
        let before = super::tree_snapshot(t.path());
        assert_eq!(before.len(), 2, "{before:?}");
        assert!(before.contains(&(b"l".to_vec(), 0o120000, b"a/f".to_vec())));
        let f = t.path().join("a/f");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_ne!(
            super::tree_snapshot(t.path()),
            before,
            "a mode change shows"
        );
    }

    #[test]
    fn in_path_finds_sh_and_not_nonsense() {
        assert!(super::in_path("sh"));
        assert!(!super::in_path("no-such-program-banger-testsupport"));
    }
}
