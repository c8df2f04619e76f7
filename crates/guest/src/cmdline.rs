//! The kernel's `ip=` argument (Documentation/admin-guide/nfs/nfsroot.rst):
//! `ip=<client>:<server>:<gw>:<netmask>:<hostname>:<device>:<autoconf>:<dns0>:<dns1>:<ntp0>`.
//! banger passes `ip=<client>::<gw>:<netmask>:<hostname>:<device>:off[:<dns0>]`;
//! `banger-guest init` applies it when the kernel (built without `IP_PNP`)
//! did not.

use std::fmt;
use std::net::Ipv4Addr;

/// A static `ip=` configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// The guest's address.
    pub client: Ipv4Addr,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Prefix length from the netmask (24 when no netmask was given).
    pub prefix: u8,
    /// Host name, if any.
    pub hostname: Option<String>,
    /// Device, if any (`eth0`).
    pub device: Option<String>,
    /// First DNS server, if any.
    pub dns0: Option<Ipv4Addr>,
    /// Second DNS server, if any.
    pub dns1: Option<Ipv4Addr>,
}

/// Why an `ip=` value was not usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpArgError {
    /// The argument.
    pub arg: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for IpArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot use kernel argument `ip={}`: {}",
            self.arg, self.reason
        )
    }
}

impl std::error::Error for IpArgError {}

/// The value of the last `ip=` word of a kernel command line.
pub fn ip_arg(cmdline: &str) -> Option<&str> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("ip="))
        .next_back()
}

/// Prefix length of a contiguous netmask.
pub fn prefix_len(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    let ones = m.leading_ones();
    (m.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Parse an `ip=` value. `Ok(None)` for the dynamic forms (`dhcp`, `off`,
/// …) and for values without a client address: there is nothing static
/// to apply.
pub fn parse_ip(arg: &str) -> Result<Option<IpConfig>, IpArgError> {
    let err = |reason: String| IpArgError {
        arg: arg.to_string(),
        reason,
    };
    let f: Vec<&str> = arg.split(':').collect();
    if f.len() == 1 || f[0].is_empty() {
        return Ok(None);
    }
    let field = |i: usize| f.get(i).copied().filter(|s| !s.is_empty());
    let addr = |i: usize, what: &str| -> Result<Option<Ipv4Addr>, IpArgError> {
        field(i)
            .map(|s| {
                s.parse::<Ipv4Addr>()
                    .map_err(|_| err(format!("{what} {s:?} is not an IPv4 address")))
            })
            .transpose()
    };
    let client = addr(0, "client address")?.expect("non-empty");
    let gateway = addr(2, "gateway")?;
    let prefix = match addr(3, "netmask")? {
        Some(m) => prefix_len(m).ok_or_else(|| err(format!("netmask {m} is not contiguous")))?,
        None => 24,
    };
    let hostname = field(4).map(str::to_string);
    let device = field(5).map(str::to_string);
    if let Some(d) = &device
        && (d.len() > 15 || d.contains('/'))
    {
        return Err(err(format!(
            "device name {d:?} is not a valid interface name"
        )));
    }
    Ok(Some(IpConfig {
        client,
        gateway,
        prefix,
        hostname,
        device,
        dns0: addr(7, "dns0")?,
        dns1: addr(8, "dns1")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bangers_argument_parses() {
        let line = "console=ttyS0 reboot=k ip=172.30.0.2::172.30.0.1:255.255.255.0:dev:eth0:off:192.0.2.53 quiet";
        let c = parse_ip(ip_arg(line).unwrap()).unwrap().unwrap();
        assert_eq!(c.client, Ipv4Addr::new(172, 30, 0, 2));
        assert_eq!(c.gateway, Some(Ipv4Addr::new(172, 30, 0, 1)));
        assert_eq!(c.prefix, 24);
        assert_eq!(c.hostname.as_deref(), Some("dev"));
        assert_eq!(c.device.as_deref(), Some("eth0"));
        assert_eq!(c.dns0, Some(Ipv4Addr::new(192, 0, 2, 53)));
        assert_eq!(c.dns1, None);
    }

    #[test]
    fn short_forms_empty_fields_and_errors() {
        let c = parse_ip("10.0.0.5::::::off").unwrap().unwrap();
        assert_eq!(
            (c.gateway, c.prefix, c.hostname, c.device),
            (None, 24, None, None)
        );
        assert_eq!(parse_ip("dhcp").unwrap(), None);
        assert_eq!(parse_ip("off").unwrap(), None);
        assert_eq!(parse_ip(":::::eth0:dhcp").unwrap(), None);
        assert_eq!(
            parse_ip("10.0.0.5::10.0.0.1:255.255.0.0")
                .unwrap()
                .unwrap()
                .prefix,
            16
        );
        let e = parse_ip("10.0.0.5::10.0.0.1:255.0.255.0").unwrap_err();
        assert!(e.to_string().contains("not contiguous"), "{e}");
        let e = parse_ip("10.0.0.x::").unwrap_err();
        assert!(e.to_string().contains("client address"), "{e}");
        assert_eq!(ip_arg("root=/dev/vda"), None);
        assert_eq!(ip_arg("ip=dhcp ip=1.2.3.4::"), Some("1.2.3.4::"));
        assert_eq!(prefix_len(Ipv4Addr::new(255, 255, 255, 255)), Some(32));
        assert_eq!(prefix_len(Ipv4Addr::new(0, 0, 0, 0)), Some(0));
    }
}
