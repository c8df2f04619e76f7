//! Running `git` in a test's repositories.

use std::path::Path;
use std::process::Command;

/// Run `git -C dir ARGS` with a fixed identity (`T <t@example.invalid>`)
/// and no optional locks (looking at a repository does not rewrite its
/// index, so it stays as the code under test left it); its stdout. Panics
/// with git's stderr when git fails.
pub fn git_bytes(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=T", "-c", "user.email=t@example.invalid"])
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// [`git_bytes`], its stdout as text.
pub fn git(dir: &Path, args: &[&str]) -> String {
    String::from_utf8_lossy(&git_bytes(dir, args)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_with_the_fixed_identity_and_panics_on_failure() {
        if !crate::in_path("git") {
            crate::skip!(
                "commits_with_the_fixed_identity_and_panics_on_failure",
                "git is not installed"
            );
        }
        let t = tempfile::tempdir().unwrap();
        git(t.path(), &["init", "-q", "-b", "main"]);
        std::fs::write(t.path().join("f"), "x\n").unwrap();
        git(t.path(), &["add", "f"]);
        git(t.path(), &["commit", "-q", "-m", "one"]);
        assert_eq!(
            git(t.path(), &["log", "--format=%an <%ae> %s"]),
            "T <t@example.invalid> one\n"
        );
        let failed = std::panic::catch_unwind(|| git(t.path(), &["no-such-subcommand"]));
        let msg = failed.expect_err("a failing git panics");
        assert!(
            msg.downcast_ref::<String>()
                .unwrap()
                .contains("no-such-subcommand"),
            "names the command"
        );
    }
}
