//! Builds the helper's [`Policy`] from its own configuration: the install
//! metadata (owner uid, state and runtime directories) plus the daemon
//! config's `firecracker_bin` and `[network] subnet`. Nothing in a request
//! can change it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use banger_privops::Policy;

use crate::install_meta::InstallMeta;

/// Prefix of every device banger creates (the daemon uses the same).
pub const DEVICE_PREFIX: &str = "bg";

/// Default guest subnet when the daemon config sets none.
const DEFAULT_SUBNET: (Ipv4Addr, u8) = (Ipv4Addr::new(172, 30, 0, 0), 24);

/// Errors deriving the policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicySourceError {
    /// The daemon config could not be read.
    #[error("cannot read daemon config {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A value the helper needs is invalid.
    #[error("invalid daemon config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The policy for `meta`, reading the daemon config it names.
pub fn policy(meta: &InstallMeta) -> Result<Policy, PolicySourceError> {
    let path = &meta.paths.config;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(PolicySourceError::Read {
                path: path.clone(),
                source,
            });
        }
    };
    let invalid = |message: String| PolicySourceError::Invalid {
        path: path.clone(),
        message,
    };
    let table: toml::Table = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let fc = match table.get("firecracker_bin") {
        None => "firecracker".to_string(),
        Some(toml::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(invalid("firecracker_bin must be a non-empty string".into())),
    };
    let subnet = match table.get("network").and_then(|n| n.get("subnet")) {
        None => DEFAULT_SUBNET,
        Some(toml::Value::String(s)) => parse_subnet(s)
            .ok_or_else(|| invalid(format!("network.subnet {s:?} is not a.b.c.d/len")))?,
        Some(_) => return Err(invalid("network.subnet must be a string".into())),
    };
    Ok(Policy {
        device_prefix: DEVICE_PREFIX.into(),
        state_dir: meta.paths.state_dir.clone(),
        runtime_dir: meta.paths.runtime_dir.clone(),
        subnet,
        owner_uid: meta.owner_uid,
        vmm_binary: resolve_binary(&fc),
    })
}

fn parse_subnet(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some(())?;
    Some((ip.parse().ok()?, len))
}

/// A bare name is looked up on `$PATH` (as the daemon does); paths are kept.
fn resolve_binary(bin: &str) -> PathBuf {
    if bin.contains('/') {
        return PathBuf::from(bin);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(bin))
                .find(|p| Path::new(p).is_file())
        })
        .unwrap_or_else(|| PathBuf::from(bin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install_meta::InstallPaths;

    fn meta(config: PathBuf) -> InstallMeta {
        InstallMeta {
            version: "0.1.0".into(),
            owner: "alice".into(),
            owner_uid: 1000,
            owner_gid: 1000,
            paths: InstallPaths {
                config,
                state_dir: "/var/lib/banger".into(),
                runtime_dir: "/run/banger".into(),
                helper_socket: "/run/banger-root/root.sock".into(),
                bin_dir: "/usr/local/bin".into(),
                unit_dir: "/etc/systemd/system".into(),
            },
            jailer: None,
            created: Vec::new(),
        }
    }

    #[test]
    fn policy_comes_from_meta_and_daemon_config() {
        let t = tempfile::tempdir().unwrap();
        let cfg = t.path().join("config.toml");
        let p = policy(&meta(cfg.clone())).unwrap();
        assert_eq!(p.subnet, DEFAULT_SUBNET);
        assert_eq!(p.owner_uid, 1000);
        std::fs::write(
            &cfg,
            "firecracker_bin = \"/opt/fc\"\n[network]\nsubnet = \"10.9.0.0/16\"\n[vm]\nvcpus = 1\n",
        )
        .unwrap();
        let p = policy(&meta(cfg.clone())).unwrap();
        assert_eq!(p.vmm_binary, PathBuf::from("/opt/fc"));
        assert_eq!(p.subnet, (Ipv4Addr::new(10, 9, 0, 0), 16));
        std::fs::write(&cfg, "[network]\nsubnet = \"10.9.0.0/40\"\n").unwrap();
        assert!(policy(&meta(cfg)).is_err());
    }
}
