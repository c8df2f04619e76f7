//! Host-side names shared by the daemon's parts.

use std::path::PathBuf;

/// Prefix of every network device banger creates (one definition, in
/// `banger-config`).
pub use banger_config::DEVICE_PREFIX;

/// The owner's home directory (`$HOME`, else the passwd entry).
pub fn owner_home() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
        })
        .unwrap_or_else(|| PathBuf::from("/"))
}
