//! Port forwarding: `vm.forward`, `vm.forward_remove` and `vm.forwards`,
//! and the `[HOST_PORT:]GUEST_PORT` spec both sides parse.
//!
//! A forward is a TCP listener in `bangerd` on `address:host_port`
//! (`127.0.0.1` unless another address is given) whose connections are
//! copied to `<guest_ip>:<guest_port>`. It is stored, so it outlives VM and
//! daemon restarts; it goes with `vm.forward_remove` or with the VM.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use crate::UnixMillis;

/// The address a forward listens on unless another is given.
pub const DEFAULT_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `[HOST_PORT:]GUEST_PORT`, parsed. A host port of 0 or none means "pick
/// a free one".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardSpec {
    /// Host port; `None` (or 0 given) picks a free one.
    pub host_port: Option<u16>,
    /// Guest port, 1–65535.
    pub guest_port: u16,
}

impl ForwardSpec {
    /// Parse `GUEST_PORT` or `HOST_PORT:GUEST_PORT`; the message says what
    /// was wrong with `text`.
    pub fn parse(text: &str) -> Result<ForwardSpec, String> {
        let usage = "expected [HOST_PORT:]GUEST_PORT, e.g. 8080:80 or 80";
        let (host, guest) = match text.split_once(':') {
            Some((h, g)) => (Some(h), g),
            None => (None, text),
        };
        let port = |what: &str, s: &str| -> Result<u16, String> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("invalid {what} {s:?} in {text:?}: {usage}"));
            }
            s.parse::<u16>()
                .map_err(|_| format!("{what} {s} in {text:?} is out of range (0-65535)"))
        };
        let guest_port = port("guest port", guest)?;
        if guest_port == 0 {
            return Err(format!(
                "guest port 0 in {text:?} is not a port; give the port the guest service listens on (1-65535)"
            ));
        }
        let host_port = match host {
            None => None,
            Some(h) => Some(port("host port", h)?).filter(|p| *p != 0),
        };
        Ok(ForwardSpec {
            host_port,
            guest_port,
        })
    }
}

impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_port {
            Some(h) => write!(f, "{h}:{}", self.guest_port),
            None => write!(f, "{}", self.guest_port),
        }
    }
}

/// Parse `--address`: an IPv4 or IPv6 address of the daemon's host.
pub fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| {
            format!(
                "invalid address {text:?}: give an IP address such as 127.0.0.1, 0.0.0.0 or ::1"
            )
        })
}

/// `vm.forward` (the forward to add) and `vm.forward_remove` (the VM's
/// forwards to `guest_port`, narrowed by `host_port` and `address` when
/// given).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmForwardParams {
    /// VM name or id.
    pub vm: String,
    /// Guest port (1–65535).
    pub guest_port: u16,
    /// Host port. Adding: a free one is picked when absent or 0.
    /// Removing: only the forward on this port.
    #[serde(default)]
    pub host_port: Option<u16>,
    /// Host address. Adding: [`DEFAULT_ADDRESS`] when absent. Removing:
    /// only the forward on this address.
    #[serde(default)]
    pub address: Option<IpAddr>,
}

/// One forward, as stored plus whether its listener is open now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortForward {
    /// The VM's id.
    pub vm_id: String,
    /// The VM's name.
    pub vm: String,
    /// Host address listened on.
    pub address: IpAddr,
    /// Host port listened on (the picked one when 0 was asked).
    pub host_port: u16,
    /// Guest port connections go to.
    pub guest_port: u16,
    /// When it was added.
    pub created_at: UnixMillis,
    /// Whether bangerd holds the listener now (false after a failed
    /// re-open at daemon start; see `error`).
    #[serde(default)]
    pub listening: bool,
    /// Why the listener could not be re-opened, if it could not.
    #[serde(default)]
    pub error: Option<String>,
}

impl PortForward {
    /// `address:host_port`, IPv6 in brackets.
    pub fn host_endpoint(&self) -> String {
        std::net::SocketAddr::new(self.address, self.host_port).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        let s = |h, g| ForwardSpec {
            host_port: h,
            guest_port: g,
        };
        assert_eq!(ForwardSpec::parse("80"), Ok(s(None, 80)));
        assert_eq!(ForwardSpec::parse("8080:80"), Ok(s(Some(8080), 80)));
        assert_eq!(ForwardSpec::parse("0:80"), Ok(s(None, 80)));
        assert_eq!(ForwardSpec::parse("65535:1"), Ok(s(Some(65535), 1)));
        assert_eq!(
            ForwardSpec::parse("8080:80").unwrap().to_string(),
            "8080:80"
        );
        assert_eq!(ForwardSpec::parse("80").unwrap().to_string(), "80");
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (text, words) in [
            ("", "invalid guest port"),
            ("abc", "invalid guest port \"abc\""),
            ("80:", "invalid guest port \"\""),
            (":80", "invalid host port \"\""),
            ("x:80", "invalid host port \"x\""),
            ("0", "guest port 0"),
            ("8080:0", "guest port 0"),
            ("65536", "guest port 65536 in \"65536\" is out of range"),
            ("70000:80", "host port 70000"),
            ("1:2:3", "invalid guest port \"2:3\""),
            ("-1", "invalid guest port"),
            ("+80", "invalid guest port"),
            (" 80", "invalid guest port"),
        ] {
            let err = ForwardSpec::parse(text).unwrap_err();
            assert!(err.contains(words), "{text:?}: {err}");
        }
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(parse_address("127.0.0.1").unwrap(), DEFAULT_ADDRESS);
        assert_eq!(parse_address("::1").unwrap().to_string(), "::1");
        assert_eq!(parse_address("[::1]").unwrap().to_string(), "::1");
        assert!(
            parse_address("localhost")
                .unwrap_err()
                .contains("invalid address \"localhost\"")
        );
    }

    #[test]
    fn wire_shape() {
        let p: VmForwardParams = serde_json::from_str(r#"{"vm":"dev","guest_port":80}"#).unwrap();
        assert_eq!(p.host_port, None);
        assert_eq!(p.address, None);
        let p: VmForwardParams = serde_json::from_str(
            r#"{"vm":"dev","guest_port":80,"host_port":8080,"address":"0.0.0.0"}"#,
        )
        .unwrap();
        assert_eq!(p.address.unwrap().to_string(), "0.0.0.0");
        assert!(
            serde_json::from_str::<VmForwardParams>(r#"{"vm":"dev","guest_port":0,"x":1}"#)
                .is_err()
        );
        let f = PortForward {
            vm_id: "1".into(),
            vm: "dev".into(),
            address: "::1".parse().unwrap(),
            host_port: 8080,
            guest_port: 80,
            created_at: 0,
            listening: true,
            error: None,
        };
        assert_eq!(f.host_endpoint(), "[::1]:8080");
    }
}
