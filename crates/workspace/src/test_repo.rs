//! A small repository with the awkward cases, shared by the unit tests.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use banger_testsupport::git_bytes as run_git;

/// `dir/repo`: nested dirs, a symlink, an executable, a space, a non-UTF-8
/// name, an ignored and an untracked file, a remote; branch `main`.
pub fn make_repo(dir: &Path) -> PathBuf {
    let root = dir.join("repo");
    std::fs::create_dir_all(root.join("sub/deep")).unwrap();
    run_git(&root, &["init", "-q", "-b", "main"]);
    run_git(
        &root,
        &["remote", "add", "origin", "https://example.invalid/r.git"],
    );
    std::fs::write(root.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(root.join("sub/deep/a.txt"), "a\n").unwrap();
    std::fs::write(root.join("sub/with space.txt"), "space\n").unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sub/deep/a.txt", root.join("link")).unwrap();
    std::fs::write(
        root.join(std::ffi::OsStr::from_bytes(b"bad-\xff-name")),
        "bytes\n",
    )
    .unwrap();
    run_git(&root, &["add", "-A"]);
    run_git(&root, &["commit", "-q", "-m", "init"]);
    std::fs::write(root.join("ignored.log"), "noise\n").unwrap();
    std::fs::write(root.join("untracked.txt"), "new\n").unwrap();
    root
}
