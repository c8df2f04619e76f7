//! `vm.ports`: the guest's listening TCP and UDP sockets, from
//! `ss -Htulnp` run over SSH, shown as `<vm>.vm:<port>`.

use std::sync::Arc;

use banger_api::guest::GuestPort;

use crate::error::DaemonError;
use crate::workspace_service::{WorkspaceOpError, WorkspaceService};

/// Parse `ss -Htulnp` output (`Netid State Recv-Q Send-Q Local Peer [Process]`).
pub fn parse_ss(vm: &str, text: &str) -> Vec<GuestPort> {
    let mut out: Vec<GuestPort> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || !(f[0] == "tcp" || f[0] == "udp") {
            continue;
        }
        let local = f[4];
        let Some((addr, port)) = local.rsplit_once(':') else {
            continue;
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        let process = f[5..]
            .iter()
            .find_map(|w| w.strip_prefix("users:((\""))
            .and_then(|rest| rest.split('"').next())
            .map(str::to_string);
        let entry = GuestPort {
            proto: f[0].to_string(),
            address: addr.to_string(),
            port,
            process,
            endpoint: format!("{vm}.vm:{port}"),
        };
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    out.sort_by(|a, b| (a.port, &a.proto, &a.address).cmp(&(b.port, &b.proto, &b.address)));
    out
}

impl WorkspaceService {
    /// `vm.ports`.
    pub async fn ports(self: &Arc<Self>, vm: &str) -> Result<Vec<GuestPort>, DaemonError> {
        let vm = self.snapshot(vm).await?;
        let me = Arc::clone(self);
        let target = self.target(&vm);
        tokio::task::spawn_blocking(move || -> Result<Vec<GuestPort>, DaemonError> {
            let mut out = Vec::new();
            let run = me.run_guest(&target, "ss -Htulnp", None, &mut out)?;
            if run.code != 0 {
                return Err(WorkspaceOpError::Guest {
                    vm: vm.name.clone(),
                    what: "`ss -Htulnp` (is iproute2 installed in the image?)",
                    code: run.code,
                    stderr: run.stderr.trim().to_string(),
                }
                .into());
            }
            Ok(parse_ss(&vm.name, &String::from_utf8_lossy(&out)))
        })
        .await
        .map_err(|e| DaemonError::Internal(format!("ports task: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_udp_ipv6_and_missing_process() {
        let text = "\
tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:((\"sshd\",pid=81,fd=3))
tcp   LISTEN 0      128             [::]:22           [::]:*    users:((\"sshd\",pid=81,fd=4))
udp   UNCONN 0      0      127.0.0.53%lo:53        0.0.0.0:*    users:((\"systemd-resolve\",pid=9,fd=13))
tcp   LISTEN 0      4096       127.0.0.1:8080      0.0.0.0:*
garbage line
";
        let p = parse_ss("dev", text);
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].port, 22);
        assert_eq!(p[0].process.as_deref(), Some("sshd"));
        assert_eq!(p[0].endpoint, "dev.vm:22");
        assert_eq!(p[2].proto, "udp");
        assert_eq!(p[2].address, "127.0.0.53%lo");
        assert_eq!(p[2].process.as_deref(), Some("systemd-resolve"));
        assert_eq!(p[3].port, 8080);
        assert_eq!(p[3].process, None);
    }
}
