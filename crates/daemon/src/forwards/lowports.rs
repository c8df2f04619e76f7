//! Whether bangerd may listen on a privileged port: below
//! `net.ipv4.ip_unprivileged_port_start` only root or a process with
//! `CAP_NET_BIND_SERVICE` may bind.

/// `CAP_NET_BIND_SERVICE`'s bit in the capability sets.
const CAP_NET_BIND_SERVICE: u32 = 10;

/// What decides whether a low port may be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LowPorts {
    /// First port anyone may bind.
    pub start: u16,
    /// Root, or `CAP_NET_BIND_SERVICE` in the effective set.
    pub may_bind_low: bool,
    /// Effective uid, for the message.
    pub uid: u32,
}

impl LowPorts {
    /// This process, now.
    pub fn current() -> LowPorts {
        let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
        let uid = nix::unistd::geteuid();
        let cap = std::fs::read_to_string("/proc/self/status")
            .ok()
            .is_some_and(|s| has_cap(&s, CAP_NET_BIND_SERVICE));
        LowPorts {
            start,
            may_bind_low: uid.is_root() || cap,
            uid: uid.as_raw(),
        }
    }

    /// Whether binding `port` would be refused (0 picks a free, high port).
    pub fn refuses(&self, port: u16) -> bool {
        port != 0 && port < self.start && !self.may_bind_low
    }
}

/// Whether the `CapEff:` line of a `/proc/<pid>/status` text has `bit`.
fn has_cap(status: &str, bit: u32) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|set| set & (1 << bit) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_ports_need_root_or_the_capability() {
        let user = LowPorts {
            start: 1024,
            may_bind_low: false,
            uid: 1000,
        };
        assert!(user.refuses(80));
        assert!(user.refuses(1023));
        assert!(!user.refuses(1024));
        assert!(!user.refuses(0), "0 picks a free port");
        let root = LowPorts {
            may_bind_low: true,
            ..user
        };
        assert!(!root.refuses(80));
        let lowered = LowPorts { start: 80, ..user };
        assert!(!lowered.refuses(80));
        assert!(lowered.refuses(79));
    }

    #[test]
    fn capability_is_read_from_cap_eff() {
        let with = "Name:\tbangerd\nCapInh:\t0000000000000000\nCapEff:\t0000000000000400\n";
        let without = "CapPrm:\t0000000000000400\nCapEff:\t0000000000000000\n";
        assert!(has_cap(with, CAP_NET_BIND_SERVICE));
        assert!(!has_cap(without, CAP_NET_BIND_SERVICE));
        assert!(!has_cap("CapEff:\tzz\n", CAP_NET_BIND_SERVICE));
    }
}
