//! NAT for the guest subnet: banger's own nftables table and IPv4
//! forwarding, switched on when the first VM needs them and switched back
//! by `network reset`. The forwarding value found before banger changed it
//! is kept in `<state_dir>/network/ip_forward.previous` so a restarted
//! daemon still restores the right one.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use banger_privops::{NetOps, PrivilegedOps};

use crate::common::privileged;
use crate::host_network::error::NetworkError;
use crate::host_network::service::NetSettings;

/// Whether banger's table is known to be in place.
pub struct NatState {
    applied: AtomicBool,
    /// Serialises the slow path (first apply, teardown) so two first
    /// starts cannot both record a "previous" forwarding value.
    apply: tokio::sync::Mutex<()>,
    previous_file: PathBuf,
}

impl NatState {
    /// Nothing applied yet.
    pub fn new(state_dir: &std::path::Path) -> Self {
        Self {
            applied: AtomicBool::new(false),
            apply: tokio::sync::Mutex::new(()),
            previous_file: state_dir.join("network/ip_forward.previous"),
        }
    }

    /// Make sure guest `guest_ip` behind `tap` can reach the outside: the
    /// table exists and forwarding is on. Cheap once applied.
    pub async fn ensure(
        &self,
        privops: &Arc<dyn PrivilegedOps>,
        s: &NetSettings,
        guest_ip: Ipv4Addr,
        tap: &str,
    ) -> Result<(), NetworkError> {
        if !s.contains(guest_ip) {
            return Err(NetworkError::OutsideNetwork {
                ip: guest_ip,
                tap: tap.to_string(),
                network: s.network,
                prefix: s.prefix,
            });
        }
        if !s.nat || self.applied.load(Ordering::Acquire) {
            return Ok(());
        }
        let _slow = self.apply.lock().await;
        if self.applied.load(Ordering::Acquire) {
            return Ok(());
        }
        let (bridge, network, prefix) = (s.bridge.clone(), s.network, s.prefix);
        let previous = privileged(privops, move |p| {
            let previous = p.set_ip_forward(true)?;
            p.apply_nat(&bridge, network, prefix)?;
            Ok(previous)
        })
        .await?;
        if !self.previous_file.exists() {
            if let Some(dir) = self.previous_file.parent() {
                std::fs::create_dir_all(dir).map_err(NetworkError::io("cannot create", dir))?;
            }
            std::fs::write(&self.previous_file, if previous { "1\n" } else { "0\n" })
                .map_err(NetworkError::io("cannot write", &self.previous_file))?;
        }
        self.applied.store(true, Ordering::Release);
        tracing::info!(%network, prefix, "NAT table applied, IPv4 forwarding on");
        Ok(())
    }

    /// Remove the table and restore forwarding to what it was before
    /// banger. Returns (table existed, forwarding value restored).
    pub async fn teardown(
        &self,
        privops: &Arc<dyn PrivilegedOps>,
    ) -> Result<(bool, Option<bool>), NetworkError> {
        let _slow = self.apply.lock().await;
        let existed = privileged(privops, |p| p.remove_nat()).await?;
        self.applied.store(false, Ordering::Release);
        let restored = match std::fs::read_to_string(&self.previous_file) {
            Ok(v) => {
                let value = v.trim() == "1";
                privileged(privops, move |p| p.set_ip_forward(value)).await?;
                std::fs::remove_file(&self.previous_file)
                    .map_err(NetworkError::io("cannot remove", &self.previous_file))?;
                Some(value)
            }
            Err(_) => None,
        };
        Ok((existed, restored))
    }

    /// Whether this daemon applied the table.
    pub fn applied(&self) -> bool {
        self.applied.load(Ordering::Acquire)
    }
}
