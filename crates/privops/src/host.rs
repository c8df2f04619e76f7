//! Host settings outside netlink: `net.ipv4.ip_forward` and
//! systemd-resolved's per-link DNS routing.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::PrivOpsError;

/// The forwarding sysctl.
pub const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Current `net.ipv4.ip_forward`.
pub fn ip_forward() -> Result<bool, PrivOpsError> {
    let v = std::fs::read_to_string(IP_FORWARD).map_err(|source| PrivOpsError::File {
        path: IP_FORWARD.into(),
        source,
    })?;
    Ok(v.trim() == "1")
}

/// Set it; returns the previous value.
pub(crate) fn set_ip_forward(enabled: bool) -> Result<bool, PrivOpsError> {
    let previous = ip_forward()?;
    if previous != enabled {
        std::fs::write(IP_FORWARD, if enabled { "1\n" } else { "0\n" }).map_err(|source| {
            PrivOpsError::File {
                path: IP_FORWARD.into(),
                source,
            }
        })?;
    }
    Ok(previous)
}

/// Whether systemd-resolved runs (its runtime directory holds the stub).
pub fn resolved_running() -> bool {
    Path::new("/run/systemd/resolve/io.systemd.Resolve").exists()
}

/// `resolvectl dns <bridge> <dns>` + `resolvectl domain <bridge> ~vm`, or
/// `resolvectl revert <bridge>`.
pub(crate) fn resolver_route(
    bridge: &str,
    dns: Ipv4Addr,
    revert: bool,
) -> Result<(), PrivOpsError> {
    if !resolved_running() {
        return Err(PrivOpsError::Refused {
            op: "resolver_route",
            reason: format!(
                "systemd-resolved is not running; point your resolver's vm. zone at {dns} instead (e.g. dnsmasq: server=/vm/{dns})"
            ),
        });
    }
    let dns = dns.to_string();
    let steps: Vec<Vec<&str>> = if revert {
        vec![vec!["revert", bridge]]
    } else {
        vec![vec!["dns", bridge, &dns], vec!["domain", bridge, "~vm"]]
    };
    for args in steps {
        let out = Command::new("resolvectl")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| PrivOpsError::Command {
                program: "resolvectl",
                message: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(PrivOpsError::Command {
                program: "resolvectl",
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}
