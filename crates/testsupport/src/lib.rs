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
    fn in_path_finds_sh_and_not_nonsense() {
        assert!(super::in_path("sh"));
        assert!(!super::in_path("no-such-program-banger-testsupport"));
    }
}
