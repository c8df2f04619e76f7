//! Which adapter of the privileged-operations seam `bangerd` uses.
//!
//! Dev path (no `privileged_helper` in the config): `None`, which makes
//! `Daemon::open` build the in-process `LocalPrivOps`. System path
//! (`--system`, or `privileged_helper` set): `RootHelperClient` of
//! `bangerd-root` at the configured socket (default
//! `/run/banger-root/root.sock`; the client talks only to a helper running
//! as root). The daemon performs nothing privileged any
//! other way.

use std::path::PathBuf;
use std::sync::Arc;

use banger_privops::{DEFAULT_HELPER_SOCKET, PrivilegedOps, RootHelperClient};

use crate::config::{Config, Mode};

/// The helper socket the daemon must use, if any.
pub fn helper_socket(mode: Mode, config: &Config) -> Option<PathBuf> {
    match (&config.privileged_helper, mode) {
        (Some(p), _) => Some(p.clone()),
        (None, Mode::System) => Some(PathBuf::from(DEFAULT_HELPER_SOCKET)),
        (None, Mode::Dev) => None,
    }
}

/// The adapter for `mode` and `config` (`None`: in-process).
pub fn choose(mode: Mode, config: &Config) -> Option<Arc<dyn PrivilegedOps>> {
    let socket = helper_socket(mode, config)?;
    tracing::info!(helper = %socket.display(), "privileged operations go to bangerd-root");
    Some(Arc::new(RootHelperClient::new(socket)))
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
        assert!(choose(Mode::Dev, &Config::default()).is_none());
    }
}
