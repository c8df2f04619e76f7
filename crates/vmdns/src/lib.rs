//! `banger-vmdns`: an in-process DNS server authoritative for the `vm.`
//! zone — an `A` record `<name>.vm.` and a `PTR` record in `in-addr.arpa.`
//! for every running VM, `NXDOMAIN` for unknown names of the zone (and for
//! unknown addresses of the guest subnet), `REFUSED` for everything else. It
//! forwards nothing.
//!
//! A leaf crate: it knows names and addresses, not VMs. The daemon publishes
//! a record when a VM becomes running and withdraws it when the VM stops.
//! Records live in a [`Zone`] behind a `RwLock` that is held only for a map
//! lookup or insert (a leaf lock), so publishing while serving is safe and
//! answers change at once.
#![warn(missing_docs)]

mod handler;
mod tcp;
mod udp;
mod wire;
mod zone;

pub use handler::answer;
pub use tcp::{TCP_MAX_CONNECTIONS, TCP_MESSAGE_TIMEOUT};
pub use udp::respond;
pub use zone::{TTL, Zone};

use std::net::SocketAddr;
use std::sync::Arc;

/// Why the DNS server could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum VmDnsError {
    /// Binding the UDP or TCP socket failed.
    #[error(
        "cannot bind the vm. DNS server to {addr} (is another DNS server using it? change network.dns_port)"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Shutting the server down failed.
    #[error("cannot shut the vm. DNS server on {addr} down: {message}")]
    Shutdown {
        /// The address.
        addr: SocketAddr,
        /// Why.
        message: String,
    },
}

/// A running server. Dropping it without [`shutdown`](Self::shutdown)
/// leaves its tasks to end with the runtime.
pub struct DnsServer {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn reuseport_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, setsockopt, socket,
        sockopt,
    };
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    match addr {
        SocketAddr::V4(a) => bind(raw, &SockaddrIn::from(a))?,
        SocketAddr::V6(a) => bind(raw, &SockaddrIn6::from(a))?,
    }
    tokio::net::UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

impl DnsServer {
    /// Serve `zone` over UDP and TCP on `addr` (port 0 picks a free port;
    /// [`local_addr`](Self::local_addr) tells which). Must run inside a
    /// tokio runtime.
    pub async fn bind(addr: SocketAddr, zone: Arc<Zone>) -> Result<DnsServer, VmDnsError> {
        // One UDP socket per core (SO_REUSEPORT): the kernel spreads
        // queries over them and each has its own receive loop.
        let first = reuseport_udp(addr).map_err(|source| VmDnsError::Bind { addr, source })?;
        let local = first
            .local_addr()
            .map_err(|source| VmDnsError::Bind { addr, source })?;
        let mut udp = vec![first];
        let extra = std::thread::available_parallelism().map_or(1, |n| n.get().min(8)) - 1;
        for _ in 0..extra {
            udp.push(reuseport_udp(local).map_err(|source| VmDnsError::Bind {
                addr: local,
                source,
            })?);
        }
        let tcp = tokio::net::TcpListener::bind(local)
            .await
            .map_err(|source| VmDnsError::Bind {
                addr: local,
                source,
            })?;
        let soa = handler::soa_record();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks: Vec<_> = udp
            .into_iter()
            .map(|sock| {
                tokio::spawn(udp::serve(
                    sock,
                    Arc::clone(&zone),
                    soa.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        tasks.push(tokio::spawn(tcp::serve(tcp, zone, soa, stop_rx)));
        tracing::info!(addr = %local, "vm. DNS server listening");
        Ok(DnsServer {
            addr: local,
            stop,
            tasks,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving and wait for the server's tasks.
    pub async fn shutdown(mut self) -> Result<(), VmDnsError> {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            t.await.map_err(|e| VmDnsError::Shutdown {
                addr: self.addr,
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}
