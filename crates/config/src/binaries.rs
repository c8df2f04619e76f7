//! Binary lookup, one rule for every process: a name containing `/` is a
//! path, used as given; a bare name is the first *executable* file of that
//! name on `$PATH`. `bangerd` runs `firecracker_bin` by it, `bangerd-root`
//! checks spawned VMMs against it, `doctor` reports it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// What to execute for `bin`: a path as given, else the executable found
/// on `$PATH`, else `bin` itself (executing it then reports that it is
/// missing).
pub fn resolve_binary(bin: &str) -> PathBuf {
    if bin.contains('/') {
        return PathBuf::from(bin);
    }
    find_binary(bin).unwrap_or_else(|| PathBuf::from(bin))
}

/// `bin` when it is a path that exists, else the first executable file of
/// that name on `$PATH`; `None` when there is none.
pub fn find_binary(bin: &str) -> Option<PathBuf> {
    find_binary_in(bin, std::env::var_os("PATH").as_deref())
}

/// [`find_binary`] with an explicit search path (`$PATH` syntax).
pub fn find_binary_in(bin: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return p.exists().then_some(p);
    }
    if bin.is_empty() {
        return None;
    }
    std::env::split_paths(path?)
        .map(|dir| dir.join(bin))
        .find(|candidate| is_executable(candidate))
}

/// Whether `p` is a regular file (after symlinks) with an execute bit.
pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// banger's executable `name` (e.g. `banger-guest`) in the directory of the
/// running executable, where banger installs its binaries together; `name`
/// alone when that directory is unknown.
pub fn beside_current_exe(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// banger's own executable `name` (`bangerd`, `bangerd-root`,
/// `banger-guest`, `banger-fcsim`): beside the running executable when it
/// is there, else on `$PATH`; `None` when neither has it.
pub fn find_own_binary(name: &str) -> Option<PathBuf> {
    let beside = beside_current_exe(name);
    if beside.is_absolute() && is_executable(&beside) {
        return Some(beside);
    }
    find_binary(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(p: &Path, mode: u32) {
        std::fs::write(p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn bare_names_skip_non_executables_and_paths_are_kept() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        // A plain file first on the path, the executable after it: the
        // executable wins (the helper used to take the plain file).
        file(&a.join("fc"), 0o644);
        file(&b.join("fc"), 0o755);
        let path = std::env::join_paths([&a, &b]).unwrap();
        assert_eq!(find_binary_in("fc", Some(&path)), Some(b.join("fc")));
        assert_eq!(find_binary_in("none", Some(&path)), None);
        assert_eq!(find_binary_in("fc", None), None);
        assert_eq!(find_binary_in("", Some(&path)), None);
        // A directory of that name is not a binary.
        std::fs::create_dir(a.join("dir")).unwrap();
        assert_eq!(find_binary_in("dir", Some(&path)), None);
        // Paths: kept as given, found only when they exist.
        let p = a.join("fc");
        assert_eq!(find_binary_in(p.to_str().unwrap(), None), Some(p.clone()));
        assert_eq!(find_binary_in("/nonexistent/fc", Some(&path)), None);
        assert_eq!(
            resolve_binary("/nonexistent/fc"),
            PathBuf::from("/nonexistent/fc")
        );
        assert_eq!(
            resolve_binary("banger-no-such-binary"),
            PathBuf::from("banger-no-such-binary")
        );
    }

    #[test]
    fn own_binaries_sit_beside_the_running_executable() {
        let dir = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        assert_eq!(beside_current_exe("banger-guest"), dir.join("banger-guest"));
        // The test binary itself is beside itself.
        let me = std::env::current_exe().unwrap();
        let name = me.file_name().unwrap().to_str().unwrap();
        assert_eq!(find_own_binary(name), Some(me.clone()));
        assert_eq!(find_own_binary("banger-no-such-binary"), None);
    }
}
