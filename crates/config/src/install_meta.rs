//! `/etc/banger/install.toml`: what `banger system install` set up — the
//! owner, the version and every path. `bangerd-root` takes its policy from
//! this file (never from a request); `banger system status|uninstall` and
//! `doctor` read it too.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default location of the install metadata.
pub const INSTALL_META: &str = "/etc/banger/install.toml";

/// Errors reading or writing the install metadata.
#[derive(Debug, thiserror::Error)]
pub enum InstallMetaError {
    /// The file could not be read.
    #[error("cannot read install metadata {path}; is banger installed (`banger system install`)?")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid install metadata {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// The install metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallMeta {
    /// banger version that wrote the file.
    pub version: String,
    /// Owner user name.
    pub owner: String,
    /// Owner uid: the only non-root uid the helper serves.
    pub owner_uid: u32,
    /// Owner's primary gid (of the daemon's runtime directory, via the
    /// tmpfiles.d line).
    pub owner_gid: u32,
    /// Paths.
    pub paths: InstallPaths,
    /// Optional Firecracker jailer (its argv: `bangerd-root`'s `jailer.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailer: Option<JailerConfig>,
    /// Every file and directory the install created (as installed-host
    /// paths, in creation order); `uninstall` removes exactly these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<PathBuf>,
}

/// `[jailer]` in the install metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailerConfig {
    /// The `jailer` binary.
    pub binary: PathBuf,
    /// `--chroot-base-dir`.
    pub chroot_base: PathBuf,
}

/// Every path of a system install (as seen on the installed host).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallPaths {
    /// The daemon config file (`firecracker_bin`, `[network] subnet`).
    pub config: PathBuf,
    /// banger's state directory.
    pub state_dir: PathBuf,
    /// The daemon's runtime directory (`/run/banger`: the owner's, 0700).
    pub runtime_dir: PathBuf,
    /// The helper socket (`/run/banger-root/root.sock`), in the helper's
    /// own directory; its lock file is beside it (`root.lock`).
    pub helper_socket: PathBuf,
    /// Where the binaries were installed.
    pub bin_dir: PathBuf,
    /// Where the unit files were written.
    pub unit_dir: PathBuf,
}

impl InstallMeta {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<InstallMeta, InstallMetaError> {
        let text = std::fs::read_to_string(path).map_err(|source| InstallMetaError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parse `text` (read from `path`).
    pub fn parse(path: &Path, text: &str) -> Result<InstallMeta, InstallMetaError> {
        toml::from_str(text).map_err(|e| InstallMetaError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        format!(
            "# Written by `banger system install`; read by bangerd-root, `banger system` and doctor.\n{}",
            toml::to_string_pretty(self).unwrap_or_default()
        )
    }
}
