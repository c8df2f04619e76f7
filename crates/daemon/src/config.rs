//! The configuration and the directory layout: they live in
//! `banger-config`, shared with the CLI and `bangerd-root`; re-exported here
//! so the daemon's modules keep naming them `crate::config::…`.

pub use banger_config::{
    Config, ConfigError, DaemonConfig, EXAMPLE, Layout, MAX_SOCKET_PATH, Mode, NetworkConfig,
    RuntimeDirError, VM_ID_LEN, VmDefaults, secure_runtime_dir,
};
