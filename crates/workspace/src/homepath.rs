//! File-sync path validation: a dotfile may be copied into a guest only if
//! it resolves inside the owner's home. `..` components are refused outright,
//! absolute paths must lie under home, and a symlink anywhere on the way
//! (or the file itself) must resolve inside home too.

use std::path::{Component, Path, PathBuf};

/// Why a file-sync path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HomePathError {
    /// The path has a `..` component.
    #[error("file sync path {0} contains `..`; name files inside your home directly")]
    DotDot(PathBuf),
    /// An absolute path outside home.
    #[error("file sync path {path} is outside your home {home}; only files under home are synced")]
    Outside {
        /// The path.
        path: PathBuf,
        /// The home.
        home: PathBuf,
    },
    /// The path (or a directory on the way) is a symlink leading out of home.
    #[error(
        "file sync path {path} resolves to {target}, outside your home; symlinks out of home are refused"
    )]
    EscapingLink {
        /// The path.
        path: PathBuf,
        /// Where it resolves.
        target: PathBuf,
    },
    /// The path does not exist (or home cannot be resolved).
    #[error("file sync path {0} does not exist; fix the list in [workspace] sync_files")]
    Missing(PathBuf),
}

/// A validated file-sync path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HomePath {
    /// The file on the host, fully resolved.
    pub source: PathBuf,
    /// Where it goes, relative to the guest user's home.
    pub relative: PathBuf,
}

/// Validate `requested` (relative to `home`, or absolute under it).
pub fn resolve(home: &Path, requested: &Path) -> Result<HomePath, HomePathError> {
    if requested.components().any(|c| c == Component::ParentDir) {
        return Err(HomePathError::DotDot(requested.to_path_buf()));
    }
    let relative = if requested.is_absolute() {
        requested
            .strip_prefix(home)
            .map_err(|_| HomePathError::Outside {
                path: requested.to_path_buf(),
                home: home.to_path_buf(),
            })?
            .to_path_buf()
    } else {
        requested
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect()
    };
    if relative.as_os_str().is_empty() {
        return Err(HomePathError::Outside {
            path: requested.to_path_buf(),
            home: home.to_path_buf(),
        });
    }
    let real_home = home
        .canonicalize()
        .map_err(|_| HomePathError::Missing(home.to_path_buf()))?;
    let joined = home.join(&relative);
    let source = joined
        .canonicalize()
        .map_err(|_| HomePathError::Missing(joined.clone()))?;
    if !source.starts_with(&real_home) || source == real_home {
        return Err(HomePathError::EscapingLink {
            path: joined,
            target: source,
        });
    }
    Ok(HomePath { source, relative })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_paths_pass_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".config/app")).unwrap();
        std::fs::write(home.join(".gitconfig"), "x").unwrap();
        std::fs::write(home.join(".config/app/rc"), "x").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), home.join(".out")).unwrap();
        std::os::unix::fs::symlink(dir.path(), home.join(".outdir")).unwrap();
        std::os::unix::fs::symlink(".gitconfig", home.join(".in")).unwrap();

        let ok = resolve(&home, Path::new(".gitconfig")).unwrap();
        assert_eq!(ok.relative, Path::new(".gitconfig"));
        let abs = resolve(&home, &home.join(".config/app/rc")).unwrap();
        assert_eq!(abs.relative, Path::new(".config/app/rc"));
        assert!(resolve(&home, Path::new(".in")).is_ok(), "link inside home");

        assert!(matches!(
            resolve(&home, Path::new("../secret")),
            Err(HomePathError::DotDot(_))
        ));
        assert!(matches!(
            resolve(&home, Path::new(".config/../../secret")),
            Err(HomePathError::DotDot(_))
        ));
        assert!(matches!(
            resolve(&home, Path::new("/etc/passwd")),
            Err(HomePathError::Outside { .. })
        ));
        assert!(matches!(
            resolve(&home, Path::new(".out")),
            Err(HomePathError::EscapingLink { .. })
        ));
        assert!(matches!(
            resolve(&home, Path::new(".outdir/secret")),
            Err(HomePathError::EscapingLink { .. })
        ));
        assert!(matches!(
            resolve(&home, Path::new(".nope")),
            Err(HomePathError::Missing(_))
        ));
        assert!(resolve(&home, Path::new(".")).is_err());
    }
}
