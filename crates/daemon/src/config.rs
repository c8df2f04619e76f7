//! The configuration and the directory layout: they live in
//! `banger-config`, shared with the CLI and `bangerd-root`; re-exported here
//! so the daemon's modules keep naming them `crate::config::…`.

pub use banger_config::{
    Config, ConfigError, DaemonConfig, EXAMPLE, Layout, Mode, NetworkConfig, RuntimeDirError,
    VmDefaults, secure_runtime_dir,
};
