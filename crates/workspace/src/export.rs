//! Host side of `workspace export`: bring a bundle made on the guest into
//! the host repository as a branch, with `git fetch` into a ref only. The
//! user's checked-out branch, index and working tree are never touched
//! (no checkout, no merge, no reset).

use std::path::{Path, PathBuf};

use crate::git::{GitError, git};

/// Why an export could not land in the host repository.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The branch name is not a valid git branch name.
    #[error("{0:?} is not a valid branch name; pass another --branch")]
    BadBranch(String),
    /// The target branch is the one checked out on the host.
    #[error(
        "branch {0} is checked out in {1}; export never touches the checked-out branch, pass another --branch"
    )]
    CheckedOut(String, PathBuf),
    /// The host repository no longer has the commit the workspace started from.
    #[error(
        "the host repository {repo} no longer contains commit {base} the workspace was prepared from \
         (history rewritten or garbage-collected); export with --patch FILE instead, or prepare again"
    )]
    BaseMissing {
        /// Host repository.
        repo: PathBuf,
        /// The base commit.
        base: String,
    },
    /// The branch exists and the guest's work does not extend it.
    #[error(
        "branch {branch} already exists in {repo} and does not lead to the guest's work; \
         delete it (`git branch -D {branch}`) or pass another --branch"
    )]
    NotFastForward {
        /// The branch.
        branch: String,
        /// Host repository.
        repo: PathBuf,
    },
    /// A git command failed.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Refuse a branch name git would not accept, and the checked-out branch.
pub fn check_branch(repo: &Path, branch: &str) -> Result<String, ExportError> {
    if branch.starts_with('-') || git(repo, &["check-ref-format", "--branch", branch]).is_err() {
        return Err(ExportError::BadBranch(branch.to_string()));
    }
    let current = git(repo, &["symbolic-ref", "-q", "HEAD"]).unwrap_or_default();
    let full = format!("refs/heads/{branch}");
    if String::from_utf8_lossy(&current).trim() == full {
        return Err(ExportError::CheckedOut(
            branch.to_string(),
            repo.to_path_buf(),
        ));
    }
    Ok(full)
}

/// Refuse when the host repository cannot represent the guest's history:
/// the base commit is gone.
pub fn check_base(repo: &Path, base: &str) -> Result<(), ExportError> {
    let spec = format!("{base}^{{commit}}");
    git(repo, &["cat-file", "-e", &spec]).map_err(|_| ExportError::BaseMissing {
        repo: repo.to_path_buf(),
        base: base.to_string(),
    })?;
    Ok(())
}

/// Fetch `refs/banger/export` from `bundle` into `refs/heads/<branch>`.
/// Returns the commit the branch now points at.
pub fn fetch_bundle(repo: &Path, bundle: &Path, branch: &str) -> Result<String, ExportError> {
    let full = check_branch(repo, branch)?;
    let bundle_s = bundle.to_string_lossy().into_owned();
    let refspec = format!("refs/banger/export:{full}");
    match git(
        repo,
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            &bundle_s,
            &refspec,
        ],
    ) {
        Ok(_) => {}
        Err(GitError::Failed { stderr, .. })
            if stderr.contains("non-fast-forward") || stderr.contains("rejected") =>
        {
            return Err(ExportError::NotFastForward {
                branch: branch.to_string(),
                repo: repo.to_path_buf(),
            });
        }
        Err(e) => return Err(e.into()),
    }
    let tip = git(repo, &["rev-parse", &full])?;
    Ok(String::from_utf8_lossy(&tip).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::{EXPORT_NOTHING, ExportFormat, export_script};
    use crate::test_repo::{make_repo, run_git};
    use banger_testsupport::tree_snapshot;
    use std::process::Command;

    #[test]
    fn guest_commit_and_edit_come_back_as_a_branch_without_touching_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let host = make_repo(dir.path());
        let base = String::from_utf8(run_git(&host, &["rev-parse", "HEAD"])).unwrap();
        let base = base.trim();
        // The "guest": a copy of the checkout.
        let guest = dir.path().join("guest");
        let st = Command::new("cp")
            .arg("-a")
            .arg(&host)
            .arg(&guest)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::write(guest.join("new.txt"), "from guest\n").unwrap();
        run_git(&guest, &["add", "new.txt"]);
        run_git(&guest, &["commit", "-q", "-m", "guest commit"]);
        std::fs::write(guest.join("sub/deep/a.txt"), "edited in guest\n").unwrap();

        let before = tree_snapshot(&host);
        let script = export_script(guest.to_str().unwrap(), base, "dev", ExportFormat::Bundle);
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bundle = dir.path().join("b.bundle");
        std::fs::write(&bundle, &out.stdout).unwrap();

        check_base(&host, base).unwrap();
        let tip = fetch_bundle(&host, &bundle, "banger/dev").unwrap();
        assert_eq!(tree_snapshot(&host), before, "host working tree changed");
        let log = run_git(&host, &["log", "--format=%s", "banger/dev"]);
        let log = String::from_utf8(log).unwrap();
        assert!(
            log.starts_with("banger: uncommitted changes from dev\nguest commit\ninit"),
            "{log}"
        );
        let a = run_git(&host, &["show", &format!("{tip}:sub/deep/a.txt")]);
        assert_eq!(a, b"edited in guest\n");
        let head = String::from_utf8(run_git(&host, &["symbolic-ref", "HEAD"])).unwrap();
        assert_eq!(head.trim(), "refs/heads/main");

        // Exporting onto the checked-out branch is refused; a bad name too.
        assert!(matches!(
            fetch_bundle(&host, &bundle, "main"),
            Err(ExportError::CheckedOut(..))
        ));
        assert!(matches!(
            check_branch(&host, "a..b"),
            Err(ExportError::BadBranch(_))
        ));
        // A base the host never had is refused.
        assert!(matches!(
            check_base(&host, "0123456789012345678901234567890123456789"),
            Err(ExportError::BaseMissing { .. })
        ));
        // Patch format, and nothing-to-export.
        let p = export_script(guest.to_str().unwrap(), base, "dev", ExportFormat::Patch);
        let out = Command::new("sh").args(["-c", &p]).output().unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("Subject: [PATCH 1/2] guest commit"));
        let clean = dir.path().join("clean");
        Command::new("cp")
            .arg("-a")
            .arg(&host)
            .arg(&clean)
            .status()
            .unwrap();
        std::fs::remove_file(clean.join("untracked.txt")).unwrap();
        let n = export_script(clean.to_str().unwrap(), base, "dev", ExportFormat::Bundle);
        let out = Command::new("sh").args(["-c", &n]).output().unwrap();
        assert_eq!(out.status.code(), Some(EXPORT_NOTHING));
    }
}
