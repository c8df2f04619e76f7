//! The `vm.` DNS server (banger-vmdns) bound to the gateway, and routing of
//! the host's `~vm` queries to it through systemd-resolved where that runs.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use banger_privops::{NetOps, PrivilegedOps};
use banger_vmdns::{DnsServer, Zone};

use crate::common::privileged;
use crate::host_network::error::NetworkError;
use crate::host_network::service::NetSettings;

/// How the host's resolver reaches the `vm.` zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolverRouting {
    /// Per-link DNS + `~vm` on the bridge through systemd-resolved.
    Resolved,
    /// systemd-resolved does not run; the user must route `vm.` themselves.
    Manual,
    /// Setting it up failed.
    Failed(String),
}

/// The zone, the server, the routing.
pub struct DnsRouting {
    /// Records of running VMs.
    pub zone: Arc<Zone>,
    server: Mutex<Option<DnsServer>>,
    routing: Mutex<Option<ResolverRouting>>,
}

impl DnsRouting {
    /// An empty zone for `s`'s subnet, nothing served yet.
    pub fn new(s: &NetSettings) -> Self {
        Self {
            zone: Arc::new(Zone::new((s.network, s.prefix))),
            server: Mutex::new(None),
            routing: Mutex::new(None),
        }
    }

    /// Serve on `gateway:dns_port` (no-op when already serving), then route
    /// the host resolver.
    pub async fn start(
        &self,
        privops: &Arc<dyn PrivilegedOps>,
        s: &NetSettings,
    ) -> Result<(), NetworkError> {
        if self.local_addr().is_none() {
            let addr = SocketAddr::from((s.gateway, s.dns_port));
            let server = DnsServer::bind(addr, Arc::clone(&self.zone))
                .await
                .map_err(|e| NetworkError::Dns(crate::common::error::error_chain(&e)))?;
            *self.server.lock().unwrap_or_else(|p| p.into_inner()) = Some(server);
        }
        let routing = if banger_privops::resolved_running() {
            let (bridge, gw) = (s.bridge.clone(), s.gateway);
            match privileged(privops, move |p| p.resolver_route(&bridge, gw, false)).await {
                Ok(()) => ResolverRouting::Resolved,
                Err(e) => ResolverRouting::Failed(crate::common::error::error_chain(&e)),
            }
        } else {
            ResolverRouting::Manual
        };
        *self.routing.lock().unwrap_or_else(|p| p.into_inner()) = Some(routing);
        Ok(())
    }

    /// Stop serving and undo the resolver routing.
    pub async fn stop(&self, privops: &Arc<dyn PrivilegedOps>, s: &NetSettings) {
        let server = self.server.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(server) = server
            && let Err(e) = server.shutdown().await
        {
            tracing::warn!(error = %e, "cannot stop the DNS server cleanly");
        }
        let routing = self
            .routing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if routing == Some(ResolverRouting::Resolved) {
            let (bridge, gw) = (s.bridge.clone(), s.gateway);
            if let Err(e) = privileged(privops, move |p| p.resolver_route(&bridge, gw, true)).await
            {
                tracing::warn!(error = %e, "cannot revert resolver routing");
            }
        }
        self.zone.replace_all(Vec::new());
    }

    /// Where the server listens.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(DnsServer::local_addr)
    }

    /// The routing found at start.
    pub fn routing(&self) -> Option<ResolverRouting> {
        self.routing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publish `name.vm.`.
    pub fn publish(&self, name: &str, ip: Ipv4Addr) {
        self.zone.publish(name, ip);
    }

    /// Withdraw `name.vm.`.
    pub fn withdraw(&self, name: &str) {
        self.zone.withdraw(name);
    }
}
