//! `NetworkError`: what the host network fails with, and its kind.

use std::path::PathBuf;

use banger_api::ErrorKind;

use crate::common::PrivCallError;
use crate::common::error::DaemonError;

/// Why a host-network operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A privileged call (bridge, TAP, NAT, forwarding, resolver) failed.
    #[error(transparent)]
    Privileged(#[from] PrivCallError),
    /// The bridge could not be set up (no privilege, most often).
    #[error(
        "cannot set up bridge {bridge}: {reason}; bangerd needs root (or CAP_NET_ADMIN) for the guest network, or set network.enabled = false in the config"
    )]
    Bridge {
        /// The bridge.
        bridge: String,
        /// Why.
        reason: String,
    },
    /// The `.vm` DNS server could not start.
    #[error("internal error: {0}")]
    Dns(String),
    /// A guest address outside the guest network.
    #[error("internal error: guest address {ip} of {tap} is outside {network}/{prefix}")]
    OutsideNetwork {
        /// The address.
        ip: std::net::Ipv4Addr,
        /// The VM's TAP.
        tap: String,
        /// The guest network.
        network: std::net::Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
    },
    /// A state file (the forwarding value before banger) failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl NetworkError {
    /// An `Io` error maker for `map_err`.
    pub fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| NetworkError::Io { what, path, source }
    }

    /// The RPC kind (and so the CLI exit code) this error answers with.
    pub fn kind(&self) -> ErrorKind {
        match self {
            NetworkError::Bridge { .. } => ErrorKind::Conflict,
            NetworkError::Privileged(PrivCallError::Failed(
                banger_privops::PrivOpsError::Refused { .. },
            )) => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        }
    }
}

impl From<NetworkError> for DaemonError {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::Privileged(e) => e.into(),
            e @ NetworkError::Bridge { .. } => DaemonError::Conflict(e.to_string()),
            NetworkError::Dns(m) => DaemonError::Internal(m),
            NetworkError::OutsideNetwork {
                ip,
                tap,
                network,
                prefix,
            } => DaemonError::Internal(format!(
                "guest address {ip} of {tap} is outside {network}/{prefix}"
            )),
            NetworkError::Io { what, path, source } => DaemonError::Io { what, path, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::error::to_rpc;

    /// Through `DaemonError` the message and the kind stay those of the
    /// network error.
    #[test]
    fn converts_with_its_message_and_kind() {
        let refused = banger_privops::PrivOpsError::Refused {
            op: "create_tap",
            reason: "not a banger device".into(),
        };
        let cases = [
            NetworkError::Bridge {
                bridge: "bg0".into(),
                reason: "Operation not permitted".into(),
            },
            NetworkError::Dns("cannot bind 172.30.0.1:53".into()),
            NetworkError::OutsideNetwork {
                ip: "10.0.0.2".parse().unwrap(),
                tap: "bgtap1".into(),
                network: "172.30.0.0".parse().unwrap(),
                prefix: 24,
            },
            NetworkError::Privileged(PrivCallError::Failed(refused)),
            NetworkError::Privileged(PrivCallError::Panicked("boom".into())),
            NetworkError::io("cannot write", std::path::Path::new("/x"))(std::io::Error::from(
                std::io::ErrorKind::PermissionDenied,
            )),
        ];
        for e in cases {
            let (message, kind) = (crate::common::error::error_chain(&e), e.kind());
            let rpc = to_rpc(&DaemonError::from(e));
            assert_eq!(rpc.kind, kind, "{message}");
            assert_eq!(rpc.message, message);
        }
    }
}
