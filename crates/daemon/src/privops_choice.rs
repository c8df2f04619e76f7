//! Which adapter of the privileged-operations seam `bangerd` uses.
//!
//! Dev path (no `privileged_helper` in the config): `None`, which makes
//! `Daemon::open` build the in-process `LocalPrivOps`. System path
//! (`--system`, or `privileged_helper` set): `RootHelperClient` of
//! `bangerd-root` at the configured socket (default
//! `banger_config::DEFAULT_HELPER_SOCKET`; the client talks only to a helper running
//! as root). The daemon performs nothing privileged any
//! other way.

use std::sync::Arc;

use banger_config::helper_socket;
use banger_privops::{PrivilegedOps, RootHelperClient};

use crate::config::{Config, Mode};

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
    fn dev_is_in_process() {
        assert!(choose(Mode::Dev, &Config::default()).is_none());
    }
}
