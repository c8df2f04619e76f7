//! What a privileged operation may touch: banger's device-name prefix, its
//! state and runtime directories, its subnet. Every [`PrivOp`](crate::PrivOp)
//! is checked against a [`Policy`] before anything happens, by the
//! in-process adapter and by `bangerd-root` alike, so both paths refuse the
//! same requests. These are the checks on the request; execution then
//! checks the objects themselves (files opened beneath the state directory
//! with no symlink following, see [`crate::beneath`]; loop, dm and link
//! identities, see `disk_op` and `netlink`).

use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::PrivOpsError;

/// Longest Linux interface name (IFNAMSIZ - 1).
pub const MAX_IFNAME: usize = 15;

/// The limits privileged operations are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Every device banger creates starts with this (e.g. `bg`).
    pub device_prefix: String,
    /// banger's state directory: disks, images, logs.
    pub state_dir: PathBuf,
    /// banger's runtime directory: sockets.
    pub runtime_dir: PathBuf,
    /// The guest subnet as `(network, prefix length)`.
    pub subnet: (Ipv4Addr, u8),
    /// The uid that owns VMs (TAP owner, socket owner).
    pub owner_uid: u32,
    /// The only VMM binary `spawn_vmm` may start (from the helper's own
    /// configuration, never from a request).
    pub vmm_binary: PathBuf,
}

impl Policy {
    /// Refuse `name` unless it carries the prefix, fits the kernel's limit
    /// and uses only `[a-z0-9-]` after the prefix.
    pub fn check_device(&self, op: &'static str, name: &str) -> Result<(), PrivOpsError> {
        let ok = name.starts_with(&self.device_prefix)
            && name.len() > self.device_prefix.len()
            && name.len() <= MAX_IFNAME
            && name[self.device_prefix.len()..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(())
        } else {
            Err(refused(
                op,
                format!(
                    "device name {name:?} must start with {:?}, be at most {MAX_IFNAME} characters and use only a-z, 0-9 and '-'",
                    self.device_prefix
                ),
            ))
        }
    }

    /// Refuse `path` unless it is absolute, has no `..`, and — after
    /// resolving symlinks in its existing part — lies inside the state or
    /// runtime directory. Returns the resolved path, which the operation
    /// must use (so a symlink swapped in later cannot redirect it).
    pub fn check_path(&self, op: &'static str, path: &Path) -> Result<PathBuf, PrivOpsError> {
        if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(refused(
                op,
                format!("path {} must be absolute without '..'", path.display()),
            ));
        }
        if let Some(link) = dangling_symlink(path) {
            return Err(refused(
                op,
                format!(
                    "path {} goes through the dangling symlink {}",
                    path.display(),
                    link.display()
                ),
            ));
        }
        let resolved = resolve_existing_prefix(path);
        let roots = [&self.state_dir, &self.runtime_dir].map(|r| resolve_existing_prefix(r));
        if roots
            .iter()
            .any(|r| resolved.starts_with(r) && resolved != *r)
        {
            Ok(resolved)
        } else {
            Err(refused(
                op,
                format!(
                    "path {} is outside banger's directories ({} and {})",
                    path.display(),
                    self.state_dir.display(),
                    self.runtime_dir.display()
                ),
            ))
        }
    }

    /// Refuse an address outside the guest subnet.
    pub fn check_addr(&self, op: &'static str, ip: Ipv4Addr) -> Result<(), PrivOpsError> {
        let (net, len) = self.subnet;
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len.min(32)))
        };
        if u32::from(ip) & mask == u32::from(net) & mask {
            Ok(())
        } else {
            Err(refused(
                op,
                format!("address {ip} is outside the guest subnet {net}/{len}"),
            ))
        }
    }
}

fn refused(op: &'static str, reason: String) -> PrivOpsError {
    PrivOpsError::Refused { op, reason }
}

/// The first of `p` and its ancestors that is a symlink whose target does
/// not exist: following it would create a file wherever it points, which
/// resolving the existing prefix cannot see.
fn dangling_symlink(p: &Path) -> Option<PathBuf> {
    p.ancestors()
        .find(|a| {
            a.symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
                && a.canonicalize().is_err()
        })
        .map(Path::to_path_buf)
}

/// Canonicalise the longest existing ancestor of `p` and append the rest.
fn resolve_existing_prefix(p: &Path) -> PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (
            existing.file_name().map(|f| f.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(root: &Path) -> Policy {
        Policy {
            device_prefix: "bg".into(),
            state_dir: root.join("state"),
            runtime_dir: root.join("run"),
            subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
            owner_uid: 1000,
            vmm_binary: PathBuf::from("/usr/bin/firecracker"),
        }
    }

    #[test]
    fn devices() {
        let p = policy(Path::new("/x"));
        assert!(p.check_device("t", "bg0").is_ok());
        assert!(p.check_device("t", "bgtap-1a2b").is_ok());
        for bad in [
            "eth0",
            "bg",
            "bgtap-0123456789ab",
            "bg/../x",
            "BG0",
            "bgTAP",
        ] {
            assert!(p.check_device("t", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paths() {
        let t = tempfile::tempdir().unwrap();
        let p = policy(t.path());
        std::fs::create_dir_all(t.path().join("state/vms")).unwrap();
        std::fs::create_dir_all(t.path().join("run")).unwrap();
        assert!(
            p.check_path("t", &t.path().join("state/vms/a/root.ext4"))
                .is_ok()
        );
        assert!(p.check_path("t", &t.path().join("run/x.sock")).is_ok());
        assert!(
            p.check_path("t", &t.path().join("state")).is_err(),
            "the root itself"
        );
        assert!(p.check_path("t", &t.path().join("state/../etc")).is_err());
        assert!(p.check_path("t", Path::new("/etc/passwd")).is_err());
        assert!(p.check_path("t", Path::new("relative")).is_err());
        std::os::unix::fs::symlink("/etc", t.path().join("state/vms/evil")).unwrap();
        assert!(
            p.check_path("t", &t.path().join("state/vms/evil/passwd"))
                .is_err()
        );
    }

    #[test]
    fn addresses() {
        let p = policy(Path::new("/x"));
        assert!(p.check_addr("t", Ipv4Addr::new(172, 30, 0, 9)).is_ok());
        assert!(p.check_addr("t", Ipv4Addr::new(172, 30, 1, 9)).is_err());
        assert!(p.check_addr("t", Ipv4Addr::new(8, 8, 8, 8)).is_err());
    }

    #[test]
    fn dangling_symlinks_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let p = policy(t.path());
        std::fs::create_dir_all(t.path().join("state/vms")).unwrap();
        std::os::unix::fs::symlink("/etc/banger-nonexistent", t.path().join("state/vms/log"))
            .unwrap();
        let err = p
            .check_path("t", &t.path().join("state/vms/log"))
            .unwrap_err();
        assert!(err.to_string().contains("refused"), "{err}");
        std::os::unix::fs::symlink("/nonexistent-dir", t.path().join("state/d")).unwrap();
        assert!(p.check_path("t", &t.path().join("state/d/x")).is_err());
        // A symlink to an existing place inside is fine.
        std::os::unix::fs::symlink(t.path().join("state/vms"), t.path().join("state/v2")).unwrap();
        assert!(p.check_path("t", &t.path().join("state/v2/x")).is_ok());
    }
}
