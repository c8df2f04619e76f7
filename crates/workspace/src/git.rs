//! Git inspection of a host checkout, always through `git` by argv.
//!
//! [`inspect`] finds the top of the work tree, HEAD, the branch, the remotes,
//! whether the tree is dirty, and the files a workspace carries: tracked
//! files plus untracked files that are not ignored
//! (`git ls-files -z --cached --others --exclude-standard`). Paths stay raw
//! bytes so non-UTF-8 names survive.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a checkout could not be inspected.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// `git` could not be started.
    #[error("cannot run git in {dir}: {source}; install git")]
    Spawn {
        /// Where it was run.
        dir: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A git command failed.
    #[error("`git {args}` failed in {dir}: {stderr}")]
    Failed {
        /// The arguments, for the message.
        args: String,
        /// Where it was run.
        dir: PathBuf,
        /// What git said.
        stderr: String,
    },
    /// The path is not inside a git work tree.
    #[error("{0} is not inside a git checkout; pass the path of a repository")]
    NotARepo(PathBuf),
    /// `.git` is a file (a linked worktree or a submodule).
    #[error(
        "{0}/.git is a file (a linked worktree or submodule), which workspaces do not carry yet; \
         prepare from the main checkout instead"
    )]
    GitFile(PathBuf),
}

/// What a workspace knows about a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// Top of the work tree.
    pub root: PathBuf,
    /// Directory name of the root, used as the guest directory name.
    pub name: String,
    /// The commit HEAD points at; `None` in a repository with no commit yet.
    pub head: Option<String>,
    /// The checked-out branch; `None` when HEAD is detached.
    pub branch: Option<String>,
    /// `(name, fetch url)` of each remote.
    pub remotes: Vec<(String, String)>,
    /// Tracked plus untracked-not-ignored files that exist, relative to root.
    pub files: Vec<PathBuf>,
}

/// Run git with `args` in `dir`, returning stdout bytes.
pub fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, GitError> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        // Reading the user's repo must never write to it: `git status`
        // would otherwise refresh (rewrite) the index.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .output()
        .map_err(|source| GitError::Spawn {
            dir: dir.to_path_buf(),
            source,
        })?;
    if !out.status.success() {
        return Err(GitError::Failed {
            args: args.join(" "),
            dir: dir.to_path_buf(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out.stdout)
}

fn git_line(dir: &Path, args: &[&str]) -> Result<String, GitError> {
    Ok(String::from_utf8_lossy(&git(dir, args)?).trim().to_string())
}

/// The top of the work tree containing `path` and its directory name (the
/// guest directory name): one `git rev-parse`, so a caller can start work
/// that depends only on where the checkout lives before the full
/// [`inspect`].
pub fn toplevel(path: &Path) -> Result<(PathBuf, String), GitError> {
    let root = match git(path, &["rev-parse", "--show-toplevel"]) {
        Ok(out) => {
            let mut b = out;
            while b.last() == Some(&b'\n') {
                b.pop();
            }
            PathBuf::from(OsString::from_vec(b))
        }
        Err(GitError::Failed { .. }) => return Err(GitError::NotARepo(path.to_path_buf())),
        Err(e) => return Err(e),
    };
    if root.join(".git").is_file() {
        return Err(GitError::GitFile(root));
    }
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "repo".to_string());
    Ok((root, name))
}

/// Inspect the checkout containing `path`.
pub fn inspect(path: &Path) -> Result<RepoInfo, GitError> {
    let (root, name) = toplevel(path)?;
    inspect_root(root, name, true)
}

/// [`inspect`] of a work-tree top already found by [`toplevel`]. With
/// `check_exists` false, `files` is git's listing as is: a tracked file
/// deleted from the work tree is still listed, and the caller's own `lstat`
/// pass (the manifest scan) drops it, so no file is stat'ed twice.
pub fn inspect_root(root: PathBuf, name: String, check_exists: bool) -> Result<RepoInfo, GitError> {
    let head = git_line(&root, &["rev-parse", "--verify", "-q", "HEAD"]).ok();
    let head = head.filter(|h| !h.is_empty());
    let branch = git_line(&root, &["symbolic-ref", "-q", "--short", "HEAD"])
        .ok()
        .filter(|b| !b.is_empty());
    let mut remotes = Vec::new();
    for name in git_line(&root, &["remote"])?.lines() {
        let url = git_line(&root, &["remote", "get-url", name]).unwrap_or_default();
        remotes.push((name.to_string(), url));
    }
    let listing = git(
        &root,
        &[
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ],
    )?;
    let mut files: Vec<PathBuf> = Vec::new();
    for raw in listing.split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let rel = PathBuf::from(std::ffi::OsStr::from_bytes(raw));
        // Tracked but deleted in the work tree: not carried (the guest sees
        // the deletion, as the host does). Listed twice when unmerged.
        if (!check_exists || root.join(&rel).symlink_metadata().is_ok())
            && files.last() != Some(&rel)
        {
            files.push(rel);
        }
    }
    files.sort();
    files.dedup();
    Ok(RepoInfo {
        root,
        name,
        head,
        branch,
        remotes,
        files,
    })
}

/// Whether the work tree or index differ from HEAD (untracked files
/// included). A separate call: it walks the whole tree, which `inspect`
/// (on the prepare path) does not need. `--no-optional-locks`: no index
/// refresh is written, so `.git/index` does not change (and get re-sent)
/// just because we looked.
pub fn is_dirty(root: &Path) -> Result<bool, GitError> {
    Ok(!git(
        root,
        &["--no-optional-locks", "status", "--porcelain=v1", "-z"],
    )?
    .is_empty())
}

/// Every file and symlink under `root/.git`, relative to `root`, skipping
/// lock files of a git command running right now.
pub fn git_dir_files(root: &Path) -> Result<Vec<PathBuf>, GitError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(".git")];
    while let Some(rel) = stack.pop() {
        let rd = std::fs::read_dir(root.join(&rel)).map_err(|source| GitError::Spawn {
            dir: root.join(&rel),
            source,
        })?;
        for entry in rd.flatten() {
            let child = rel.join(entry.file_name());
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                stack.push(child);
            } else if (ft.is_file() || ft.is_symlink())
                && !entry.file_name().as_bytes().ends_with(b".lock")
            {
                out.push(child);
            }
        }
    }
    out.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_repo::{make_repo, run_git};

    #[test]
    fn inspect_lists_tracked_and_untracked_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        let info = inspect(&root.join("sub")).unwrap();
        assert_eq!(info.root, root);
        assert_eq!(info.branch.as_deref(), Some("main"));
        assert!(info.head.as_ref().is_some_and(|h| h.len() == 40));
        assert!(is_dirty(&root).unwrap());
        run_git(&root, &["add", "-A"]);
        run_git(&root, &["commit", "-q", "-m", "all"]);
        assert!(!is_dirty(&root).unwrap());
        assert_eq!(
            info.remotes,
            vec![(
                "origin".to_string(),
                "https://example.invalid/r.git".to_string()
            )]
        );
        let names: Vec<_> = info
            .files
            .iter()
            .map(|p| p.as_os_str().as_bytes())
            .collect();
        assert!(names.contains(&b"untracked.txt".as_slice()));
        assert!(names.contains(&b"sub/with space.txt".as_slice()));
        assert!(names.contains(&b"bad-\xff-name".as_slice()));
        assert!(!names.contains(&b"ignored.log".as_slice()));
        assert!(!names.iter().any(|n| n.starts_with(b".git/")));
    }

    #[test]
    fn detached_head_has_no_branch_and_not_a_repo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        run_git(&root, &["checkout", "-q", "--detach"]);
        assert_eq!(inspect(&root).unwrap().branch, None);
        let plain = tempfile::tempdir().unwrap();
        assert!(matches!(inspect(plain.path()), Err(GitError::NotARepo(_))));
    }

    #[test]
    fn git_dir_files_skips_locks() {
        let dir = tempfile::tempdir().unwrap();
        let root = make_repo(dir.path());
        std::fs::write(root.join(".git/index.lock"), b"x").unwrap();
        let files = git_dir_files(&root).unwrap();
        assert!(files.iter().any(|p| p == Path::new(".git/HEAD")));
        assert!(!files.iter().any(|p| p.ends_with("index.lock")));
    }
}
