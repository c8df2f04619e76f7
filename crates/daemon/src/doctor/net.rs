//! `banger doctor`'s host-network checks: bridge, TAP pool, NAT table, IPv4
//! forwarding, resolver routing and the `vm.` DNS server. They only read:
//! links through rtnetlink, `nft -j list tables`, the forward chains of
//! other firewalls (`firewall.rs`), `/proc/sys`, and one DNS
//! query to the gateway (sent only when the bridge carries the gateway, so
//! it never leaves the host).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use banger_privops::LinkInfo;

use crate::common::DEVICE_PREFIX;
use crate::config::Config;
use crate::doctor::Check;
use crate::host_network::NetSettings;
use crate::host_network::is_tap_name;

/// Every network check for `config` on this host.
pub fn checks(config: &Config) -> Vec<Check> {
    if !config.network.enabled {
        return vec![Check::ok(
            "network",
            "guest network disabled (network.enabled = false); VMs boot without a NIC",
        )];
    }
    let s = NetSettings::from_config(config);
    let links = banger_privops::read_links(DEVICE_PREFIX);
    let bridge_up = links
        .as_ref()
        .ok()
        .and_then(|l| l.iter().find(|l| l.name == s.bridge))
        .is_some_and(|b| b.up && b.kind == "bridge");
    let mut out = vec![
        bridge(&s, &links),
        taps(&s, &links),
        nat(&s),
        forwarding(&s),
        crate::doctor::firewall::check(&s.bridge),
    ];
    out.push(resolver(&s));
    out.push(if bridge_up {
        dns_probe(SocketAddr::from((s.gateway, s.dns_port)))
    } else {
        Check::warn(
            "vm dns",
            format!("not probed: bridge {} is not up", s.bridge),
            "start bangerd; it serves vm. on the gateway address",
        )
    });
    out
}

fn bridge(s: &NetSettings, links: &Result<Vec<LinkInfo>, banger_privops::PrivOpsError>) -> Check {
    const NAME: &str = "bridge";
    match links {
        Err(e) => Check::warn(
            NAME,
            format!("cannot list links: {e}"),
            "run doctor on the host bangerd runs on",
        ),
        Ok(l) => match l.iter().find(|l| l.name == s.bridge) {
            Some(b) if b.kind == "bridge" && b.up => Check::ok(
                NAME,
                format!("{} is up ({}/{})", s.bridge, s.gateway, s.prefix),
            ),
            Some(b) if b.kind != "bridge" => Check::fail(
                NAME,
                format!("{} exists but is a {:?}, not a bridge", s.bridge, b.kind),
                format!(
                    "delete it (`ip link del {}`) or choose another network.bridge",
                    s.bridge
                ),
            ),
            Some(_) => Check::warn(
                NAME,
                format!("{} exists but is down", s.bridge),
                "restart bangerd; it brings the bridge up",
            ),
            None => Check::warn(
                NAME,
                format!("{} does not exist", s.bridge),
                "bangerd creates it when it starts (as root, or with CAP_NET_ADMIN)",
            ),
        },
    }
}

fn taps(s: &NetSettings, links: &Result<Vec<LinkInfo>, banger_privops::PrivOpsError>) -> Check {
    const NAME: &str = "tap pool";
    let Ok(l) = links else {
        return Check::warn(NAME, "cannot list links", "see the bridge check");
    };
    let on_bridge: Vec<&LinkInfo> = l
        .iter()
        .filter(|t| is_tap_name(&t.name) && t.controller.as_deref() == Some(s.bridge.as_str()))
        .collect();
    let stray = l
        .iter()
        .filter(|t| is_tap_name(&t.name) && t.controller.as_deref() != Some(s.bridge.as_str()))
        .count();
    if stray > 0 {
        return Check::warn(
            NAME,
            format!("{stray} banger TAP(s) not attached to {}", s.bridge),
            "restart bangerd (its reconcile removes TAPs no VM owns) or run `banger network reset`",
        );
    }
    if on_bridge.is_empty() && s.tap_pool_size > 0 {
        return Check::warn(
            NAME,
            format!("no TAP on {} (pool size {})", s.bridge, s.tap_pool_size),
            "bangerd fills the pool when it starts",
        );
    }
    Check::ok(
        NAME,
        format!(
            "{} TAP(s) on {} (warm pool size {})",
            on_bridge.len(),
            s.bridge,
            s.tap_pool_size
        ),
    )
}

fn nat(s: &NetSettings) -> Check {
    const NAME: &str = "nat table";
    if !s.nat {
        return Check::ok(NAME, "NAT disabled (network.nat = false)");
    }
    match banger_privops::nat_table_present() {
        Ok(true) => Check::ok(NAME, format!("inet {} present", banger_privops::NAT_TABLE)),
        Ok(false) => Check::warn(
            NAME,
            format!("inet {} absent", banger_privops::NAT_TABLE),
            "bangerd applies it when the first VM starts; guests cannot reach the outside until then",
        ),
        Err(e) => Check::warn(
            NAME,
            format!("cannot read the ruleset: {e}"),
            "run `banger doctor` as root to see nftables, and install the nftables package",
        ),
    }
}

fn forwarding(s: &NetSettings) -> Check {
    const NAME: &str = "ip forwarding";
    match banger_privops::ip_forward() {
        Ok(true) => Check::ok(NAME, "net.ipv4.ip_forward = 1"),
        Ok(false) if s.nat => Check::warn(
            NAME,
            "net.ipv4.ip_forward = 0",
            "bangerd enables it when the first VM starts and restores it at `banger network reset`",
        ),
        Ok(false) => Check::ok(NAME, "net.ipv4.ip_forward = 0 (NAT disabled)"),
        Err(e) => Check::warn(NAME, e.to_string(), "check that /proc is mounted"),
    }
}

fn resolver(s: &NetSettings) -> Check {
    const NAME: &str = "resolver routing";
    let target = format!("{}:{}", s.gateway, s.dns_port);
    if banger_privops::resolved_running() {
        return Check::ok(
            NAME,
            format!(
                "systemd-resolved runs; bangerd routes ~vm on {} to {target}",
                s.bridge
            ),
        );
    }
    let port = if s.dns_port == 53 {
        String::new()
    } else {
        format!("#{}", s.dns_port)
    };
    Check::warn(
        NAME,
        "systemd-resolved does not run, so the host does not resolve <name>.vm by itself",
        format!(
            "route the vm. zone to {target}: dnsmasq `server=/vm/{}{port}`, unbound `forward-zone: name: \"vm.\" forward-addr: {}@{}`, or query it directly (`dig @{} -p {} <name>.vm`)",
            s.gateway, s.gateway, s.dns_port, s.gateway, s.dns_port
        ),
    )
}

/// Ask `addr` for a name of the zone that cannot exist; an authoritative
/// NXDOMAIN means the server answers.
pub fn dns_probe(addr: SocketAddr) -> Check {
    const NAME: &str = "vm dns";
    let hint =
        "check bangerd's log; another DNS server may hold the port (change network.dns_port)";
    let query = probe_query(0xb4e6);
    let result = (|| -> std::io::Result<Vec<u8>> {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        sock.set_read_timeout(Some(Duration::from_secs(1)))?;
        sock.send_to(&query, addr)?;
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf)?;
        Ok(buf[..n].to_vec())
    })();
    match result {
        Ok(r) if r.len() >= 12 && r[0..2] == [0xb4, 0xe6] => {
            let aa = r[2] & 0x04 != 0;
            let rcode = r[3] & 0x0f;
            if aa && rcode == 3 {
                Check::ok(NAME, format!("answering for vm. on {addr}"))
            } else {
                Check::warn(
                    NAME,
                    format!("{addr} answered but not as banger's server (aa={aa}, rcode={rcode})"),
                    hint,
                )
            }
        }
        Ok(_) => Check::warn(NAME, format!("{addr} sent a malformed answer"), hint),
        Err(e) => Check::warn(NAME, format!("no answer from {addr}: {e}"), hint),
    }
}

fn probe_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(48);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0]);
    for label in ["banger-doctor-probe", "vm"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::CheckStatus;

    #[test]
    fn disabled_network_is_one_ok_check() {
        let mut c = Config::default();
        c.network.enabled = false;
        let checks = checks(&c);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, CheckStatus::Ok);
    }

    #[tokio::test]
    async fn dns_probe_tells_our_server_from_silence() {
        let zone = std::sync::Arc::new(banger_vmdns::Zone::new((Ipv4Addr::new(172, 30, 0, 0), 24)));
        let server = banger_vmdns::DnsServer::bind("127.0.0.1:0".parse().unwrap(), zone)
            .await
            .unwrap();
        let addr = server.local_addr();
        let c = tokio::task::spawn_blocking(move || dns_probe(addr))
            .await
            .unwrap();
        assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
        server.shutdown().await.unwrap();
        // Nothing listens any more.
        let c = tokio::task::spawn_blocking(move || dns_probe(addr))
            .await
            .unwrap();
        assert_eq!(c.status, CheckStatus::Warn, "{c:?}");
        assert!(c.hint.is_some());
    }

    #[test]
    fn resolver_hint_names_the_gateway_and_port() {
        let mut c = Config::default();
        c.network.dns_port = 5353;
        let check = resolver(&NetSettings::from_config(&c));
        if !banger_privops::resolved_running() {
            assert_eq!(check.status, CheckStatus::Warn);
            assert!(check.hint.unwrap().contains("server=/vm/172.30.0.1#5353"));
        } else {
            assert_eq!(check.status, CheckStatus::Ok);
        }
    }
}
