//! `ForwardError`: what adding, removing or listing forwards fails with.

use std::net::SocketAddr;

use banger_api::ErrorKind;

crate::service_error! {
    /// Why a port-forward operation failed.
    #[derive(Debug, thiserror::Error)]
    pub enum ForwardError {
        /// No VM has this name or id.
        #[error("no VM named {0:?}; see `banger vm list`")]
        NoSuchVm(String),
        /// Another forward of banger's already listens there.
        #[error(
            "host address {endpoint} is already forwarded to VM {vm} port {guest_port}; remove it with `banger vm forward {vm} {host_port}:{guest_port} --remove`, or choose another HOST_PORT",
            host_port = .endpoint.port()
        )]
        Forwarded {
            /// The host address and port.
            endpoint: SocketAddr,
            /// The VM it goes to.
            vm: String,
            /// Its guest port.
            guest_port: u16,
        },
        /// Another program listens there.
        #[error(
            "host address {0} is already in use by another program; choose another HOST_PORT, or give none to let banger pick a free one"
        )]
        InUse(SocketAddr),
        /// A port below the unprivileged start, and bangerd may not bind it.
        #[error(
            "host port {port} is privileged: ports below {start} need root or CAP_NET_BIND_SERVICE, and bangerd runs as uid {uid} without them; choose a port of {start} or above (e.g. {suggest}:GUEST_PORT)",
            suggest = 8000 + u32::from(*.port)
        )]
        Privileged {
            /// The port asked for.
            port: u16,
            /// `net.ipv4.ip_unprivileged_port_start`.
            start: u16,
            /// bangerd's effective uid.
            uid: u32,
        },
        /// The address is not one of the host's.
        #[error(
            "cannot listen on {0}: it is not an address of this host (use 127.0.0.1, 0.0.0.0, ::1 or one of the host's addresses)"
        )]
        NotLocal(std::net::IpAddr),
        /// Listening failed for another reason.
        #[error("cannot listen on {endpoint}: {source}")]
        Bind {
            /// The host address and port.
            endpoint: SocketAddr,
            /// Why.
            #[source]
            source: std::io::Error,
        },
        /// The VM has no forward matching the request.
        #[error("VM {vm} has no forward {what}; see `banger vm ports {vm}`")]
        NoSuchForward {
            /// VM name.
            vm: String,
            /// What was asked for (`to guest port 80`, `127.0.0.1:8080 to guest port 80`).
            what: String,
        },
    }
    through Store;
}

impl ForwardError {
    /// The kind of the forward service's own failures (the shared ones are
    /// answered by `kind()` before this is asked).
    fn own_kind(&self) -> ErrorKind {
        match self {
            ForwardError::NoSuchVm(_) | ForwardError::NoSuchForward { .. } => ErrorKind::NotFound,
            ForwardError::Forwarded { .. } | ForwardError::InUse(_) => ErrorKind::Conflict,
            ForwardError::Privileged { .. } | ForwardError::NotLocal(_) => {
                ErrorKind::InvalidArgument
            }
            // `Bind` (the shared variants never get here).
            _ => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_port_and_the_way_out() {
        let e = ForwardError::Privileged {
            port: 80,
            start: 1024,
            uid: 1000,
        };
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let text = e.to_string();
        assert!(text.contains("host port 80 is privileged"), "{text}");
        assert!(text.contains("uid 1000"), "{text}");
        assert!(text.contains("8080:GUEST_PORT"), "{text}");
        let e = ForwardError::Forwarded {
            endpoint: "127.0.0.1:8080".parse().unwrap(),
            vm: "dev".into(),
            guest_port: 80,
        };
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(
            e.to_string()
                .contains("`banger vm forward dev 8080:80 --remove`"),
            "{e}"
        );
        let e = ForwardError::InUse("127.0.0.1:9000".parse().unwrap());
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.to_string().contains("127.0.0.1:9000 is already in use"));
    }
}
