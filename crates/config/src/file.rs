//! The configuration file (TOML): `bangerd` runs by it, `bangerd-root`
//! takes `firecracker_bin` and `[network] subnet` from it, the CLI shows it.
//!
//! Every key is optional; [`Config::default`] holds the documented defaults
//! and `banger config show` prints the effective values. The file is
//! `$XDG_CONFIG_HOME/banger/config.toml` on the dev path and
//! `/etc/banger/config.toml` on the system path. Unknown keys are refused so
//! a typo never silently falls back to a default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_api::ByteSize;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Errors loading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or bad values.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value parsed but is out of range.
    #[error("invalid config value {key}: {message}")]
    Invalid {
        /// Dotted key.
        key: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// No home/state directory could be determined.
    #[error(
        "cannot determine a state directory: set $HOME or $XDG_STATE_HOME, or pass --state-dir"
    )]
    NoStateDir,
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Path (or name on `$PATH`) of the `firecracker` binary. Any program
    /// speaking Firecracker's API with Firecracker's flags works (the test
    /// simulator `banger-fcsim` does). Default: `firecracker`.
    pub firecracker_bin: String,
    /// Where VMs, images and the database live. Default: dev path
    /// `$XDG_STATE_HOME/banger` (`~/.local/state/banger`); system path
    /// `/var/lib/banger`.
    pub state_dir: Option<PathBuf>,
    /// Where sockets live. Default: dev path `$XDG_RUNTIME_DIR/banger`, or
    /// `<state_dir>/run` when that is unset; system path `/run/banger`
    /// (the owner's, 0700; `bangerd` refuses one that others may change,
    /// see [`secure_runtime_dir`](crate::secure_runtime_dir)).
    pub runtime_dir: Option<PathBuf>,
    /// Defaults for `vm create`.
    pub vm: VmDefaults,
    /// Guest network.
    pub network: NetworkConfig,
    /// Timeouts and background loops.
    pub daemon: DaemonConfig,
    /// Socket of `bangerd-root`. When set (and always on the system path,
    /// default `/run/banger-root/root.sock`, in the helper's own root-owned
    /// directory) every privileged operation goes to that helper, which
    /// must run as root; unset on the dev path, they run in-process.
    pub privileged_helper: Option<PathBuf>,
    /// Guest access and workspaces ([`crate::guest`]).
    pub guest: crate::guest::GuestConfig,
    /// Kernel catalog file (TOML, see the daemon's `kernel_catalog.rs`) read by `banger
    /// kernel pull`. Unset: the catalog shipped with banger.
    pub kernel_catalog: Option<PathBuf>,
}

/// `[vm]`: defaults for new VMs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VmDefaults {
    /// vCPUs. Default 2.
    pub vcpus: u32,
    /// Guest memory. Default `1G`.
    pub memory: ByteSize,
    /// Root disk size. Unset (the default): the image's own size, which
    /// makes a new root disk a pure copy. When set and larger than the
    /// image, the disk file grows and its ext4 filesystem is resized.
    pub disk: Option<ByteSize>,
    /// Image used when `vm create` names none. Default `default`.
    pub image: String,
    /// Kernel command line (banger appends the network arguments).
    /// Default `console=ttyS0 reboot=k panic=1`.
    pub kernel_args: String,
    /// Size of each VM's persistent work disk (`work.ext4`, sparse, made
    /// from the image's work seed at first start). Default `8G`.
    pub work_disk: ByteSize,
    /// VM that `banger shell` opens when it names none (created from
    /// `image` when missing). Default `primary`.
    pub default_name: String,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Guest subnet; the first address is the host's gateway, guests get
    /// the following ones. Default `172.30.0.0/24`.
    pub subnet: Ipv4Net,
    /// Bridge name; must start with banger's device prefix `bg`.
    /// Default `bg0`.
    pub bridge: String,
    /// Give VMs a network at all (bridge, TAPs, NAT, DNS). Default true.
    /// When false, VMs boot without a network interface and the daemon
    /// needs no network privilege.
    pub enabled: bool,
    /// Warm TAP devices kept ready for the next VM start. Default 2.
    pub tap_pool_size: usize,
    /// UDP/TCP port of the `vm.` DNS server on the gateway address.
    /// Default 53.
    pub dns_port: u16,
    /// Masquerade the guest subnet out of the host's other interfaces and
    /// enable IPv4 forwarding while VMs run. Default true.
    pub nat: bool,
    /// Nameserver handed to guests on the kernel command line. Default:
    /// the host's first non-loopback nameserver in `/etc/resolv.conf`, else
    /// the gateway (which answers only `vm.` names).
    pub guest_dns: Option<std::net::Ipv4Addr>,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Seconds `vm stop` waits after Ctrl-Alt-Del before SIGKILL. Default 10.
    pub stop_timeout_secs: u64,
    /// Milliseconds to wait for a new VMM's API socket. Default 5000.
    pub socket_timeout_ms: u64,
    /// Stop a VM whose VMM used (almost) no CPU for this many seconds;
    /// 0 disables. Default 0.
    pub idle_stop_secs: u64,
    /// CPU time (ms) per stats interval under which a VM counts as idle.
    /// Default 5.
    pub idle_cpu_ms: u64,
    /// Seconds between stats samples of running VMs. Default 10.
    pub stats_interval_secs: u64,
    /// Finished operations are forgotten after this many seconds. Default 3600.
    pub operation_retention_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            firecracker_bin: crate::DEFAULT_FIRECRACKER_BIN.into(),
            state_dir: None,
            runtime_dir: None,
            vm: VmDefaults::default(),
            network: NetworkConfig::default(),
            daemon: DaemonConfig::default(),
            privileged_helper: None,
            guest: Default::default(),
            kernel_catalog: None,
        }
    }
}

impl Default for VmDefaults {
    fn default() -> Self {
        Self {
            vcpus: 2,
            memory: ByteSize::gib(1),
            disk: None,
            image: "default".into(),
            kernel_args: "console=ttyS0 reboot=k panic=1".into(),
            work_disk: ByteSize::gib(8),
            default_name: "primary".into(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            subnet: crate::DEFAULT_SUBNET,
            bridge: "bg0".into(),
            enabled: true,
            tap_pool_size: 2,
            dns_port: 53,
            nat: true,
            guest_dns: None,
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            stop_timeout_secs: 10,
            socket_timeout_ms: 5000,
            idle_stop_secs: 0,
            idle_cpu_ms: 5,
            stats_interval_secs: 10,
            operation_retention_secs: 3600,
        }
    }
}

impl Config {
    /// Load `path`; a missing file gives the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// Range checks that serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key, e: banger_api::RpcError| ConfigError::Invalid {
            key,
            message: e.message,
        };
        banger_api::validate::vcpus(self.vm.vcpus).map_err(|e| invalid("vm.vcpus", e))?;
        banger_api::validate::memory(self.vm.memory).map_err(|e| invalid("vm.memory", e))?;
        let prefix = self.network.subnet.prefix_len();
        if !(16..=29).contains(&prefix) {
            return Err(ConfigError::Invalid {
                key: "network.subnet",
                message: format!("prefix /{prefix} is not between /16 and /29"),
            });
        }
        let prefix = crate::DEVICE_PREFIX;
        let bridge = &self.network.bridge;
        if bridge.len() <= prefix.len()
            || bridge.len() > 15
            || !bridge.starts_with(prefix)
            || !bridge[prefix.len()..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::Invalid {
                key: "network.bridge",
                message: format!(
                    "{bridge:?} must start with {prefix:?}, be at most 15 characters and use only a-z, 0-9 and '-' (e.g. \"bg0\")"
                ),
            });
        }
        // Durations: bounded so that `now + d` and `secs * 1000` cannot
        // overflow (and a zero interval cannot spin).
        let ranges: [(&'static str, u64, u64, u64); 9] = [
            (
                "daemon.stop_timeout_secs",
                self.daemon.stop_timeout_secs,
                0,
                banger_api::validate::MAX_STOP_TIMEOUT_SECS,
            ),
            (
                "daemon.socket_timeout_ms",
                self.daemon.socket_timeout_ms,
                1,
                600_000,
            ),
            (
                "daemon.idle_stop_secs",
                self.daemon.idle_stop_secs,
                0,
                30 * 86_400,
            ),
            ("daemon.idle_cpu_ms", self.daemon.idle_cpu_ms, 0, 86_400_000),
            (
                "daemon.stats_interval_secs",
                self.daemon.stats_interval_secs,
                1,
                86_400,
            ),
            (
                "daemon.operation_retention_secs",
                self.daemon.operation_retention_secs,
                0,
                365 * 86_400,
            ),
            (
                "guest.connect_timeout_secs",
                self.guest.connect_timeout_secs,
                1,
                3600,
            ),
            (
                "guest.readiness_timeout_secs",
                self.guest.readiness_timeout_secs,
                1,
                3600,
            ),
            (
                "network.tap_pool_size",
                self.network.tap_pool_size as u64,
                0,
                64,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::Invalid {
                    key,
                    message: format!("{value} is not between {min} and {max}"),
                });
            }
        }
        banger_api::validate::disk_size("work disk", self.vm.work_disk)
            .map_err(|e| invalid("vm.work_disk", e))?;
        if let Some(d) = self.vm.disk {
            banger_api::validate::disk_size("disk", d).map_err(|e| invalid("vm.disk", e))?;
        }
        banger_api::validate::vm_name(&self.vm.default_name)
            .map_err(|e| invalid("vm.default_name", e))?;
        if self.firecracker_bin.is_empty() {
            return Err(ConfigError::Invalid {
                key: "firecracker_bin",
                message: "must not be empty".into(),
            });
        }
        Ok(())
    }

    /// The file with every key at its default, commented, for `config show`.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// Time `vm stop` waits before SIGKILL.
    pub fn stop_timeout(&self) -> Duration {
        Duration::from_secs(self.daemon.stop_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let c = Config::default();
        let text = c.to_toml();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        c.check().unwrap();
    }

    #[test]
    fn parses_sizes_and_refuses_unknown_keys() {
        let c: Config = toml::from_str("[vm]\nmemory = \"2G\"\ndisk = \"20G\"\n").unwrap();
        assert_eq!(c.vm.disk, Some(ByteSize::gib(20)));
        assert_eq!(c.vm.memory, ByteSize::gib(2));
        assert_eq!(c.vm.vcpus, 2);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[vm]\nvcpu = 4\n").unwrap();
        let err = Config::load(&f).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
        std::fs::write(&f, "[vm]\nvcpus = 99\n").unwrap();
        let err = Config::load(&f).unwrap_err().to_string();
        assert!(err.contains("vm.vcpus"), "{err}");
        assert_eq!(
            Config::load(&dir.path().join("none")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn durations_and_sizes_are_range_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        for (text, key) in [
            (
                "[daemon]\nstop_timeout_secs = 18446744073709551615\n",
                "daemon.stop_timeout_secs",
            ),
            (
                "[daemon]\nsocket_timeout_ms = 0\n",
                "daemon.socket_timeout_ms",
            ),
            (
                "[daemon]\nstats_interval_secs = 18446744073709551615\n",
                "daemon.stats_interval_secs",
            ),
            (
                "[daemon]\noperation_retention_secs = 18446744073709551615\n",
                "daemon.operation_retention_secs",
            ),
            (
                "[guest]\nreadiness_timeout_secs = 18446744073709551615\n",
                "guest.readiness_timeout_secs",
            ),
            (
                "[guest]\nconnect_timeout_secs = 0\n",
                "guest.connect_timeout_secs",
            ),
            ("[vm]\nwork_disk = \"17T\"\n", "vm.work_disk"),
            ("[vm]\ndisk = \"0\"\n", "vm.disk"),
            ("[vm]\ndefault_name = \"Not A Label\"\n", "vm.default_name"),
            ("[network]\ntap_pool_size = 65\n", "network.tap_pool_size"),
        ] {
            std::fs::write(&f, text).unwrap();
            let err = Config::load(&f).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
        std::fs::write(&f, "[daemon]\nstop_timeout_secs = 3600\n").unwrap();
        Config::load(&f).unwrap();
    }
}

/// An annotated config file with every key at its default; `banger config
/// default` prints it and `docs/configuration.md` documents the same keys (checked by `tests/config_docs.rs`).
pub const EXAMPLE: &str = r#"# banger configuration. Every key is optional; the values shown are the defaults.

# Path (or name on $PATH) of the firecracker binary. Any program that speaks
# Firecracker's API and flags works, e.g. the test simulator `banger-fcsim`.
firecracker_bin = "firecracker"

# Where VMs, images and the database live. Unset: ~/.local/state/banger
# (dev path, or $XDG_STATE_HOME/banger) or /var/lib/banger (system path).
# state_dir = "/var/lib/banger"

# Where sockets live. Unset: $XDG_RUNTIME_DIR/banger, else <state_dir>/run
# (dev path), or /run/banger (system path). bangerd keeps it 0700 and
# refuses one that other users may change.
# runtime_dir = "/run/banger"

# Socket of the root helper bangerd-root. Set (or --system, where it
# defaults to /run/banger-root/root.sock): privileged operations go to the
# helper (which must run as root). Unset on the dev path: they run inside
# bangerd.
# privileged_helper = "/run/banger-root/root.sock"

# TOML kernel catalog read by `banger kernel pull`. Unset: the built-in catalog.
# kernel_catalog = "/etc/banger/kernels.toml"

[vm]
# Defaults for `banger vm create`.
vcpus = 2
memory = "1G"
# Root disk size. Unset: the image's own size (the root disk is then a pure
# copy of the image; `vm create --disk` and `vm set --disk` grow it).
# disk = "8G"
# Image used when `vm create` names none.
image = "default"
# Kernel command line; banger appends the guest network arguments.
kernel_args = "console=ttyS0 reboot=k panic=1"
# Size of each VM's persistent work disk (sparse; at least the image's work seed).
work_disk = "8G"
# VM `banger shell` opens when it names none (created from `image` if missing).
default_name = "primary"

[network]
# Guest subnet: the first address is the host side (gateway), guests get the rest.
subnet = "172.30.0.0/24"
# Bridge the guests' TAP devices attach to (must start with "bg").
bridge = "bg0"
# Give VMs a network (bridge, TAPs, NAT, DNS); needs root or CAP_NET_ADMIN.
enabled = true
# Warm TAP devices kept ready for the next VM start.
tap_pool_size = 2
# Port of the vm. DNS server on the gateway address.
dns_port = 53
# Masquerade the guest subnet out of the host's other interfaces.
nat = true
# Nameserver given to guests. Unset: the host's first non-loopback
# nameserver in /etc/resolv.conf, else the gateway (vm. names only).
# guest_dns = "192.0.2.53"

[daemon]
# Seconds `vm stop` waits after Ctrl-Alt-Del before it kills the VMM.
stop_timeout_secs = 10
# Milliseconds to wait for a new VMM's API socket to appear.
socket_timeout_ms = 5000
# Stop VMs whose VMM used less than idle_cpu_ms of CPU per stats interval for
# this many seconds; 0 disables idle stop.
idle_stop_secs = 0
idle_cpu_ms = 5
# Seconds between stats samples of running VMs.
stats_interval_secs = 10
# Finished operations (e.g. creates) are forgotten after this many seconds.
operation_retention_secs = 3600

[guest]
# User banger logs into guests as.
user = "root"
# Guest SSH port.
ssh_port = 22
# OpenSSH client.
ssh_bin = "ssh"
# banger's private key. Unset: ~/.config/banger/ssh/id_ed25519, on the system path
# /var/lib/banger/ssh/id_ed25519 (created on first use).
# ssh_key = "/home/me/.config/banger/ssh/id_ed25519"
# SSH connect timeout in seconds.
connect_timeout_secs = 10
# Where checkouts go: relative to the guest user's home, or absolute.
work_dir = "work"
# zstd-compress `workspace prepare` streams when the guest has zstd.
compress_stream = false
# Files under your home copied by `workspace sync-files`.
sync_files = []
# How a new VM's readiness is detected: "none", "ssh", "vsock" or "auto".
readiness = "auto"
# Seconds to wait for readiness; then the VM goes to `error`.
readiness_timeout_secs = 60
# Every image carries the guest agent, so "auto" waits for it alone.
guest_hook = false
# The guest agent's vsock port.
vsock_port = 52
# Write keys and git identity into the VM's disk before each boot.
sync_identity = true
# Agent that image seeding installs. Unset: banger-guest next to bangerd.
# agent = "/usr/local/bin/banger-guest"
"#;

#[cfg(test)]
mod example_tests {
    #[test]
    fn example_is_the_default() {
        let parsed: super::Config = toml::from_str(super::EXAMPLE).unwrap();
        assert_eq!(parsed, super::Config::default());
    }
}
