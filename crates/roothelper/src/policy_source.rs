//! Builds the helper's [`Policy`] from its own configuration: the install
//! metadata (owner uid, state and runtime directories) plus the daemon
//! config's `firecracker_bin` and `[network] subnet`, read, defaulted and
//! looked up by `banger-config` exactly as `bangerd` does. Nothing in a
//! request can change it.

use banger_config::{Config, ConfigError, DEVICE_PREFIX, resolve_binary};
use banger_privops::Policy;

use banger_config::install_meta::InstallMeta;

/// The policy for `meta`, reading the daemon config it names with the
/// daemon's own loader (a missing file gives the defaults; a file
/// `bangerd` would refuse is refused here too).
pub fn policy(meta: &InstallMeta) -> Result<Policy, ConfigError> {
    let config = Config::load(&meta.paths.config)?;
    let subnet = config.network.subnet;
    Ok(Policy {
        device_prefix: DEVICE_PREFIX.into(),
        state_dir: meta.paths.state_dir.clone(),
        runtime_dir: meta.paths.runtime_dir.clone(),
        subnet: (subnet.network(), subnet.prefix_len()),
        owner_uid: meta.owner_uid,
        vmm_binary: resolve_binary(&config.firecracker_bin),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_config::install_meta::InstallPaths;
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

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
        assert_eq!(p.subnet, (Ipv4Addr::new(172, 30, 0, 0), 24));
        assert_eq!(p.device_prefix, "bg");
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
