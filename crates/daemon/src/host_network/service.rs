//! `HostNetwork`, the host network: settings from `[network]`, the
//! bridge, the TAP pool, NAT and DNS, and their setup, reconcile and reset.
//!
//! Every privileged call goes through the `PrivilegedOps` seam on a
//! blocking thread ([`privileged`]): the seam is synchronous and its netlink
//! calls run their own small runtime, which must never nest inside the
//! daemon's.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;

use banger_privops::{NetOps, PrivilegedOps};

use crate::common::privileged;
use crate::config::Config;
use crate::host_network::dns_routing::DnsRouting;
use crate::host_network::error::NetworkError;
use crate::host_network::nat::NatState;
use crate::host_network::tap_pool::{TapPool, is_tap_name, new_tap_name};

/// `[network]`, resolved.
#[derive(Debug, Clone)]
pub struct NetSettings {
    /// Bridge name.
    pub bridge: String,
    /// Subnet address.
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// The host's address on the bridge (first of the subnet).
    pub gateway: Ipv4Addr,
    /// Dotted netmask.
    pub netmask: Ipv4Addr,
    /// Warm TAPs.
    pub tap_pool_size: usize,
    /// DNS port on the gateway.
    pub dns_port: u16,
    /// NAT on.
    pub nat: bool,
    /// Nameserver handed to guests.
    pub guest_dns: Ipv4Addr,
}

impl NetSettings {
    /// From the config (and, for the guest nameserver default, the host's
    /// `/etc/resolv.conf`).
    pub fn from_config(c: &Config) -> Self {
        let n = &c.network;
        let gateway = n.subnet.hosts().next().unwrap_or(n.subnet.network());
        Self {
            bridge: n.bridge.clone(),
            network: n.subnet.network(),
            prefix: n.subnet.prefix_len(),
            gateway,
            netmask: n.subnet.netmask(),
            tap_pool_size: n.tap_pool_size,
            dns_port: n.dns_port,
            nat: n.nat,
            guest_dns: n
                .guest_dns
                .or_else(|| host_nameserver(Path::new("/etc/resolv.conf")))
                .unwrap_or(gateway),
        }
    }

    /// Whether `ip` is in the guest subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.netmask);
        u32::from(ip) & mask == u32::from(self.network) & mask
    }

    /// The kernel's static configuration of the guest's eth0:
    /// `ip=<guest>::<gateway>:<netmask>::eth0:off:<nameserver>`.
    pub fn kernel_ip_arg(&self, guest: Ipv4Addr) -> String {
        format!(
            "ip={guest}::{}:{}::eth0:off:{}",
            self.gateway, self.netmask, self.guest_dns
        )
    }

    /// [`Self::kernel_ip_arg`] with the VM's name in the hostname field
    /// (applied by the kernel's IP_PNP or by `banger-guest init`). A name
    /// that is not a DNS label (never the case for a validated VM name) is
    /// left out rather than put on the kernel command line.
    pub fn kernel_ip_arg_named(&self, guest: Ipv4Addr, hostname: &str) -> String {
        let host = if banger_api::validate::vm_name(hostname).is_ok() {
            hostname
        } else {
            ""
        };
        format!(
            "ip={guest}::{}:{}:{host}:eth0:off:{}",
            self.gateway, self.netmask, self.guest_dns
        )
    }
}

/// The first non-loopback IPv4 `nameserver` of a resolv.conf.
pub fn host_nameserver(path: &Path) -> Option<Ipv4Addr> {
    std::fs::read_to_string(path).ok()?.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some("nameserver"))
            .then(|| w.next()?.parse::<Ipv4Addr>().ok())
            .flatten()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    })
}

/// What `network reset` removed.
#[derive(Debug, Default)]
pub struct ResetReport {
    /// Links deleted.
    pub links: Vec<String>,
    /// The NAT table existed.
    pub nat_table: bool,
    /// The forwarding value restored, when banger had changed it.
    pub ip_forward: Option<bool>,
}

/// Bridge, TAP pool, NAT and DNS of one daemon.
pub struct HostNetwork {
    privops: Arc<dyn PrivilegedOps>,
    /// Settings.
    pub settings: NetSettings,
    /// Warm TAPs (owns its leaf lock).
    pub pool: TapPool,
    /// NAT table and forwarding.
    pub nat: NatState,
    /// The `vm.` server.
    pub dns: DnsRouting,
    up: std::sync::atomic::AtomicBool,
}

impl HostNetwork {
    /// Nothing created yet.
    pub fn new(privops: Arc<dyn PrivilegedOps>, config: &Config, state_dir: &Path) -> Self {
        let settings = NetSettings::from_config(config);
        Self {
            pool: TapPool::new(settings.tap_pool_size),
            nat: NatState::new(state_dir),
            dns: DnsRouting::new(&settings),
            settings,
            privops,
            up: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The seam.
    pub fn privops(&self) -> &Arc<dyn PrivilegedOps> {
        &self.privops
    }

    /// Bridge with the gateway address, then the DNS server and resolver
    /// routing. Idempotent.
    pub async fn setup(&self) -> Result<(), NetworkError> {
        let s = &self.settings;
        let (bridge, gw, prefix) = (s.bridge.clone(), s.gateway, s.prefix);
        privileged(&self.privops, move |p| p.ensure_bridge(&bridge, gw, prefix))
            .await
            .map_err(|e| NetworkError::Bridge {
                bridge: s.bridge.clone(),
                reason: crate::common::error::error_chain(&e),
            })?;
        self.dns.start(&self.privops, s).await?;
        self.up.store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Set up again after a `network reset`.
    pub async fn ensure_up(&self) -> Result<(), NetworkError> {
        if self.up.load(std::sync::atomic::Ordering::Acquire) {
            return Ok(());
        }
        self.setup().await
    }

    /// A TAP for a starting VM: from the pool, else created now. A
    /// background refill follows either way.
    pub async fn take_tap(self: &Arc<Self>) -> Result<String, NetworkError> {
        let tap = match self.pool.take() {
            Some(t) => t,
            None => self.create_tap().await?,
        };
        self.refill();
        Ok(tap)
    }

    async fn create_tap(&self) -> Result<String, NetworkError> {
        let name = new_tap_name();
        let (n, bridge) = (name.clone(), self.settings.bridge.clone());
        privileged(&self.privops, move |p| p.create_tap(&n, &bridge)).await?;
        Ok(name)
    }

    /// Return a VM's TAP: back to the pool, or deleted when it is full.
    pub fn give_back(self: &Arc<Self>, tap: String) {
        if self.pool.give_back(tap.clone()) {
            return;
        }
        let privops = Arc::clone(&self.privops);
        tokio::spawn(async move {
            if let Err(e) = privileged(&privops, move |p| p.delete_link(&tap)).await {
                tracing::warn!(error = %e, "cannot delete a spare TAP; the next daemon start removes it");
            }
        });
    }

    /// Top the pool up in the background (one refill at a time).
    pub fn refill(self: &Arc<Self>) {
        if self.pool.missing() == 0 || !self.pool.begin_refill() {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            while this.pool.missing() > 0 && this.up.load(std::sync::atomic::Ordering::Acquire) {
                match this.create_tap().await {
                    Ok(t) => this.pool.add(t),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot refill the TAP pool");
                        break;
                    }
                }
            }
            this.pool.end_refill();
        });
    }

    /// Delete banger TAPs that neither a VM (`owned`) nor the pool holds;
    /// returns their names.
    pub async fn remove_leaked_taps(
        &self,
        owned: &HashSet<String>,
    ) -> Result<Vec<String>, NetworkError> {
        let pooled: HashSet<String> = self.pool.names().into_iter().collect();
        let links = privileged(&self.privops, |p| p.list_links()).await?;
        let leaked: Vec<String> = links
            .into_iter()
            .filter(|l| {
                is_tap_name(&l.name) && !owned.contains(&l.name) && !pooled.contains(&l.name)
            })
            .map(|l| l.name)
            .collect();
        for tap in &leaked {
            let t = tap.clone();
            privileged(&self.privops, move |p| p.delete_link(&t)).await?;
        }
        if !leaked.is_empty() {
            tracing::info!(?leaked, "removed TAPs no VM owns");
        }
        Ok(leaked)
    }

    /// Remove everything banger created on the host: DNS server and
    /// resolver routing, every banger TAP, the bridge, the NAT table; and
    /// restore IPv4 forwarding. The caller made sure no VM runs.
    pub async fn reset(&self) -> Result<ResetReport, NetworkError> {
        self.up.store(false, std::sync::atomic::Ordering::Release);
        self.dns.stop(&self.privops, &self.settings).await;
        self.pool.drain();
        let mut report = ResetReport::default();
        let links = privileged(&self.privops, |p| p.list_links()).await?;
        // TAPs first, the bridge last.
        let mut names: Vec<String> = links.into_iter().map(|l| l.name).collect();
        names.sort_by_key(|n| *n == self.settings.bridge);
        for name in names {
            let n = name.clone();
            if privileged(&self.privops, move |p| p.delete_link(&n)).await? {
                report.links.push(name);
            }
        }
        let (nat_table, ip_forward) = self.nat.teardown(&self.privops).await?;
        report.nat_table = nat_table;
        report.ip_forward = ip_forward;
        tracing::info!(?report, "host network reset");
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_argument_and_nameserver() {
        let mut c = Config::default();
        c.network.guest_dns = Some(Ipv4Addr::new(192, 0, 2, 53));
        let s = NetSettings::from_config(&c);
        assert_eq!(s.gateway, Ipv4Addr::new(172, 30, 0, 1));
        assert_eq!(
            s.kernel_ip_arg(Ipv4Addr::new(172, 30, 0, 2)),
            "ip=172.30.0.2::172.30.0.1:255.255.255.0::eth0:off:192.0.2.53"
        );
        assert_eq!(
            s.kernel_ip_arg_named(Ipv4Addr::new(172, 30, 0, 2), "dev-1"),
            "ip=172.30.0.2::172.30.0.1:255.255.255.0:dev-1:eth0:off:192.0.2.53"
        );
        assert_eq!(
            s.kernel_ip_arg_named(Ipv4Addr::new(172, 30, 0, 2), "bad name:x"),
            s.kernel_ip_arg(Ipv4Addr::new(172, 30, 0, 2)),
            "a non-label never reaches the command line"
        );
        assert!(s.contains(Ipv4Addr::new(172, 30, 0, 200)));
        assert!(!s.contains(Ipv4Addr::new(172, 31, 0, 2)));
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("resolv.conf");
        std::fs::write(
            &f,
            "# x\nnameserver 127.0.0.53\nnameserver ::1\nnameserver 10.0.0.2\n",
        )
        .unwrap();
        assert_eq!(host_nameserver(&f), Some(Ipv4Addr::new(10, 0, 0, 2)));
        std::fs::write(&f, "nameserver 127.0.0.53\n").unwrap();
        assert_eq!(host_nameserver(&f), None);
    }
}
