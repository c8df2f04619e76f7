//! banger's configuration, shared by the CLI (`banger`), the daemon
//! (`bangerd`) and the root helper (`bangerd-root`), so that the three
//! agree on it by construction:
//!
//! - [`Config`] (the TOML file, every key optional, [`Config::default`]
//!   holds the defaults, [`EXAMPLE`] documents them) and [`guest`]'s
//!   `[guest]` section;
//! - [`Layout`] and [`Mode`]: the directories and files derived from the
//!   config on the dev or the system path, and [`secure_runtime_dir`];
//! - the constants every process must agree on: [`DEVICE_PREFIX`],
//!   [`DEFAULT_SUBNET`], [`DEFAULT_HELPER_SOCKET`];
//! - [`helper_socket`]: whether privileged operations go to `bangerd-root`;
//! - binary lookup ([`resolve_binary`], [`find_binary`],
//!   [`find_own_binary`], [`beside_current_exe`]): how `firecracker_bin` and banger's own
//!   executables are found;
//! - [`install_meta`]: `/etc/banger/install.toml`, written by `banger system
//!   install` and read by `bangerd-root`, `banger system` and `doctor`.
//!
//! Nothing here talks to another process.
#![warn(missing_docs)]

mod binaries;
mod file;
pub mod guest;
pub mod install_meta;
mod layout;

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

pub use binaries::{
    beside_current_exe, find_binary, find_binary_in, find_own_binary, is_executable, resolve_binary,
};
pub use file::{Config, ConfigError, DaemonConfig, EXAMPLE, NetworkConfig, VmDefaults};
pub use guest::{GuestConfig, Readiness};
pub use install_meta::{INSTALL_META, InstallMeta, InstallMetaError, InstallPaths, JailerConfig};
pub use layout::{
    Layout, MAX_SOCKET_PATH, Mode, RuntimeDirError, SocketPathTooLong, VM_ID_LEN,
    secure_runtime_dir,
};

/// Prefix of every network device and device-mapper name banger creates
/// (bridge `bg0`, TAPs `bgt…`, snapshots `bgroot-…`). The daemon names its
/// devices with it and `bangerd-root` refuses any other name.
pub const DEVICE_PREFIX: &str = "bg";

/// The guest subnet when the config sets none (`[network] subnet`).
pub const DEFAULT_SUBNET: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(172, 30, 0, 0), 24);

/// The VMM binary when the config sets none (`firecracker_bin`).
pub const DEFAULT_FIRECRACKER_BIN: &str = "firecracker";

/// Default socket of the system helper `bangerd-root`, in the helper's own
/// runtime directory (root:root 0755; the socket is the owner's, 0600).
pub const DEFAULT_HELPER_SOCKET: &str = "/run/banger-root/root.sock";

/// Where the system path puts things (`banger system install`, `bangerd
/// --system`), as seen on the installed host.
pub mod system {
    /// The config file.
    pub const CONFIG_FILE: &str = "/etc/banger/config.toml";
    /// The state directory.
    pub const STATE_DIR: &str = "/var/lib/banger";
    /// The daemon's runtime directory (the owner's, 0700).
    pub const RUNTIME_DIR: &str = "/run/banger";
    /// Where `system install` puts the binaries.
    pub const BIN_DIR: &str = "/usr/local/bin";
    /// Where `system install` writes the unit files.
    pub const UNIT_DIR: &str = "/etc/systemd/system";
}

/// The helper socket `bangerd` must send privileged operations to, if any:
/// `privileged_helper` when set, [`DEFAULT_HELPER_SOCKET`] on the system
/// path, none on the dev path (they then run inside `bangerd`).
pub fn helper_socket(mode: Mode, config: &Config) -> Option<PathBuf> {
    match (&config.privileged_helper, mode) {
        (Some(p), _) => Some(p.clone()),
        (None, Mode::System) => Some(PathBuf::from(DEFAULT_HELPER_SOCKET)),
        (None, Mode::Dev) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_is_in_process_system_uses_the_helper() {
        let c = Config::default();
        assert_eq!(helper_socket(Mode::Dev, &c), None);
        assert_eq!(
            helper_socket(Mode::System, &c),
            Some(PathBuf::from("/run/banger-root/root.sock"))
        );
        let c = Config {
            privileged_helper: Some("/tmp/x.sock".into()),
            ..Config::default()
        };
        assert_eq!(
            helper_socket(Mode::Dev, &c),
            Some(PathBuf::from("/tmp/x.sock"))
        );
    }

    #[test]
    fn default_subnet_is_the_documented_one() {
        assert_eq!(DEFAULT_SUBNET.to_string(), "172.30.0.0/24");
        assert!(EXAMPLE.contains("subnet = \"172.30.0.0/24\""));
        assert!(EXAMPLE.contains(&format!("bridge = \"{DEVICE_PREFIX}0\"")));
    }
}
