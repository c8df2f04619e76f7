//! Whether a guest address is on a link of the daemon's network namespace
//! (guest access, readiness and port forwards ask it).
//!
//! A VM without a network card (the daemon runs with
//! `network.enabled = false`) still has a stored address; dialing it would
//! follow the host's default route out to the real network. Guest access
//! to such a VM is allowed only when the address is on a directly
//! connected route (a test's namespace, a user's own link), read from
//! `/proc/net/route` (the main table; longest prefix wins).

use std::net::Ipv4Addr;
use std::path::Path;

/// How the namespace would reach an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// On a directly connected link (`dev`).
    Direct { dev: String },
    /// Through a gateway (`dev`, usually the default route).
    Gateway { dev: String, gateway: Ipv4Addr },
    /// No route at all.
    Unreachable,
}

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;

/// Parse `/proc/net/route` and find the route to `ip`. Fields are
/// hexadecimal in host byte order (little-endian on x86_64).
pub fn reach_in(table: &str, ip: Ipv4Addr) -> Reach {
    let target = u32::from_ne_bytes(ip.octets());
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    let mut best: Option<(u32, Reach)> = None;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let (Some(dst), Some(gw), Some(flags), Some(mask)) =
            (hex(f[1]), hex(f[2]), hex(f[3]), hex(f[7]))
        else {
            continue;
        };
        if flags & RTF_UP == 0 || target & mask != dst & mask {
            continue;
        }
        // Host byte order: the prefix length is the number of set bits.
        let len = mask.count_ones();
        if best.as_ref().is_some_and(|(l, _)| *l >= len) {
            continue;
        }
        let dev = f[0].to_string();
        let reach = if flags & RTF_GATEWAY != 0 {
            Reach::Gateway {
                dev,
                gateway: Ipv4Addr::from(gw.to_ne_bytes()),
            }
        } else {
            Reach::Direct { dev }
        };
        best = Some((len, reach));
    }
    best.map_or(Reach::Unreachable, |(_, r)| r)
}

/// [`reach_in`] for the daemon's own namespace.
pub fn reach(ip: Ipv4Addr) -> Reach {
    match std::fs::read_to_string(Path::new("/proc/net/route")) {
        Ok(table) => reach_in(&table, ip),
        Err(_) => Reach::Unreachable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0102000A\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
veth0\t00001EAC\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
down0\t00001FAC\t00000000\t0000\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn longest_prefix_decides_and_the_default_route_is_a_gateway() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            reach_in(TABLE, ip("172.30.0.2")),
            Reach::Direct {
                dev: "veth0".into()
            }
        );
        assert_eq!(
            reach_in(TABLE, ip("10.0.2.15")),
            Reach::Direct { dev: "eth0".into() }
        );
        // A route that is down does not count: the default route wins.
        assert_eq!(
            reach_in(TABLE, ip("172.31.0.2")),
            Reach::Gateway {
                dev: "eth0".into(),
                gateway: ip("10.0.2.1")
            }
        );
        let no_default: String = TABLE
            .lines()
            .filter(|l| !l.contains("0102000A"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(reach_in(&no_default, ip("8.8.8.8")), Reach::Unreachable);
        assert_eq!(
            reach_in("garbage\nx y z\n", ip("8.8.8.8")),
            Reach::Unreachable
        );
    }
}
