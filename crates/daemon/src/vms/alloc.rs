//! Guest address allocation: the lowest free host address of the subnet
//! after the gateway, and a MAC derived from it.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The host side of the subnet (its first usable address).
pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    subnet.hosts().next().unwrap_or(subnet.network())
}

/// The lowest address of `subnet` that is neither the gateway nor in `used`.
pub fn next_guest_ip(subnet: Ipv4Net, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let gw = gateway(subnet);
    subnet.hosts().find(|ip| *ip != gw && !used.contains(ip))
}

/// A locally administered unicast MAC carrying the IPv4 address, as
/// Firecracker's own examples do: `06:00:AC:1E:00:02` for 172.30.0.2.
pub fn mac_for(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("06:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_lowest_free() {
        let net: Ipv4Net = "172.30.0.0/24".parse().unwrap();
        assert_eq!(gateway(net), Ipv4Addr::new(172, 30, 0, 1));
        let mut used = HashSet::new();
        assert_eq!(
            next_guest_ip(net, &used),
            Some(Ipv4Addr::new(172, 30, 0, 2))
        );
        used.insert(Ipv4Addr::new(172, 30, 0, 2));
        used.insert(Ipv4Addr::new(172, 30, 0, 4));
        assert_eq!(
            next_guest_ip(net, &used),
            Some(Ipv4Addr::new(172, 30, 0, 3))
        );
        let tiny: Ipv4Net = "10.0.0.0/30".parse().unwrap();
        let used: HashSet<_> = [Ipv4Addr::new(10, 0, 0, 2)].into();
        assert_eq!(next_guest_ip(tiny, &used), None);
        assert_eq!(mac_for(Ipv4Addr::new(172, 30, 0, 2)), "06:00:ac:1e:00:02");
    }
}
