//! The records: VM name ↔ IPv4 address.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::RwLock;

/// TTL of every answer, in seconds: low, because VMs come and go.
pub const TTL: u32 = 5;

/// The `vm.` zone's content. Names are stored lower-case without the zone
/// suffix (`dev` for `dev.vm.`).
#[derive(Debug)]
pub struct Zone {
    /// Guest subnet `(network, prefix)`: reverse queries inside it are
    /// ours (NXDOMAIN when unknown), outside it refused.
    subnet: (Ipv4Addr, u8),
    maps: RwLock<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    by_name: HashMap<String, Ipv4Addr>,
    by_addr: HashMap<Ipv4Addr, String>,
}

impl Zone {
    /// An empty zone for guests of `subnet`.
    pub fn new(subnet: (Ipv4Addr, u8)) -> Zone {
        Zone {
            subnet,
            maps: RwLock::new(Maps::default()),
        }
    }

    /// Publish `name.vm.` → `ip` (replacing what either had before).
    pub fn publish(&self, name: &str, ip: Ipv4Addr) {
        let name = name.to_ascii_lowercase();
        let mut m = self.maps.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = m.by_name.insert(name.clone(), ip) {
            m.by_addr.remove(&old);
        }
        if let Some(old_name) = m.by_addr.insert(ip, name.clone())
            && old_name != name
        {
            m.by_name.remove(&old_name);
        }
    }

    /// Withdraw `name.vm.`; returns whether it was published.
    pub fn withdraw(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        let mut m = self.maps.write().unwrap_or_else(|p| p.into_inner());
        match m.by_name.remove(&name) {
            Some(ip) => {
                m.by_addr.remove(&ip);
                true
            }
            None => false,
        }
    }

    /// Replace every record with `records` (reconcile).
    pub fn replace_all(&self, records: impl IntoIterator<Item = (String, Ipv4Addr)>) {
        let mut fresh = Maps::default();
        for (name, ip) in records {
            let name = name.to_ascii_lowercase();
            fresh.by_addr.insert(ip, name.clone());
            fresh.by_name.insert(name, ip);
        }
        *self.maps.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    }

    /// The address of `name` (lower-case, no zone suffix).
    pub fn addr_of(&self, name: &str) -> Option<Ipv4Addr> {
        self.maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .get(name)
            .copied()
    }

    /// The name at `ip`.
    pub fn name_of(&self, ip: Ipv4Addr) -> Option<String> {
        self.maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_addr
            .get(&ip)
            .cloned()
    }

    /// Number of published records.
    pub fn len(&self) -> usize {
        self.maps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_name
            .len()
    }

    /// No record published.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `ip` lies in the guest subnet.
    pub fn in_subnet(&self, ip: Ipv4Addr) -> bool {
        let (net, len) = self.subnet;
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len.min(32)))
        };
        u32::from(ip) & mask == u32::from(net) & mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_withdraw_replace() {
        let z = Zone::new((Ipv4Addr::new(172, 30, 0, 0), 24));
        let a = Ipv4Addr::new(172, 30, 0, 2);
        let b = Ipv4Addr::new(172, 30, 0, 3);
        z.publish("Dev", a);
        assert_eq!(z.addr_of("dev"), Some(a));
        assert_eq!(z.name_of(a).as_deref(), Some("dev"));
        // Re-publishing a name at a new address drops the old reverse record.
        z.publish("dev", b);
        assert_eq!(z.name_of(a), None);
        assert_eq!(z.name_of(b).as_deref(), Some("dev"));
        // An address taken by another name drops the old name.
        z.publish("other", b);
        assert_eq!(z.addr_of("dev"), None);
        assert!(z.withdraw("other"));
        assert!(!z.withdraw("other"));
        assert!(z.is_empty());
        z.replace_all([("x".to_string(), a)]);
        assert_eq!(z.len(), 1);
        assert!(z.in_subnet(a));
        assert!(!z.in_subnet(Ipv4Addr::new(10, 0, 0, 1)));
    }
}
