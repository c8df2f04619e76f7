//! `vm.ports`: the guest's listening TCP and UDP sockets, shown as
//! `<vm>.vm:<port>`. Asked first to banger's guest agent over the VM's
//! hybrid vsock (`PORTS`, see `banger_guest::proto`); when that does not
//! answer (no vsock device, no agent in the image), from `ss -Htulnp` run
//! over SSH.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_api::guest::GuestPort;
use banger_guest::proto::{self, ListenSocket};

use crate::workspace::ready::agent_request;

use crate::common::error::DaemonError;
use crate::workspace::service::{WorkspaceOpError, WorkspaceService};

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

/// How long `CONNECT` may take before `vm ports` falls back to SSH: a
/// running guest's agent answers at once, a VMM without one closes or stays
/// silent.
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the agent may take to walk `/proc`.
const AGENT_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The agent's sockets as `vm.ports` entries.
pub fn from_agent(vm: &str, sockets: Vec<ListenSocket>) -> Vec<GuestPort> {
    let mut out: Vec<GuestPort> = sockets
        .into_iter()
        .map(|s| GuestPort {
            endpoint: format!("{vm}.vm:{}", s.port),
            proto: s.proto,
            address: s.address,
            port: s.port,
            process: s.process,
        })
        .collect();
    out.sort_by(|a, b| (a.port, &a.proto, &a.address).cmp(&(b.port, &b.proto, &b.address)));
    out.dedup();
    out
}

/// Ask the guest agent behind `socket` for its listening sockets.
pub async fn ports_from_agent(
    vm: &str,
    socket: &Path,
    port: u32,
    connect_timeout: Duration,
) -> Result<Vec<GuestPort>, String> {
    let line = agent_request(
        socket,
        port,
        proto::PORTS,
        connect_timeout,
        AGENT_REPLY_TIMEOUT,
    )
    .await?;
    let sockets = proto::parse_ports(&line).map_err(|e| e.to_string())?;
    Ok(from_agent(vm, sockets))
}

/// The vsock sockets whose VMM had no agent to answer: probed once per VMM
/// run, remembered by the socket's device and inode (a restarted VMM binds
/// a new socket, which is probed again). Without it every `vm ports` on a
/// guest without vsock (no vhost-vsock under the QEMU front, no agent in
/// the image) would wait for [`AGENT_CONNECT_TIMEOUT`] before SSH.
#[derive(Debug, Default)]
pub struct NoAgentMemo(Mutex<HashMap<PathBuf, (u64, u64)>>);

impl NoAgentMemo {
    fn identity(socket: &Path) -> Option<(u64, u64)> {
        std::fs::symlink_metadata(socket)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, (u64, u64)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this very socket already failed to reach an agent.
    pub fn known_silent(&self, socket: &Path) -> bool {
        let Some(id) = Self::identity(socket) else {
            return false;
        };
        self.lock().get(socket) == Some(&id)
    }

    /// Remember that `socket`'s VMM had no agent; entries of sockets that
    /// are gone are dropped on the way.
    pub fn remember(&self, socket: &Path) {
        let Some(id) = Self::identity(socket) else {
            return;
        };
        let mut map = self.lock();
        map.retain(|p, old| Self::identity(p) == Some(*old));
        map.insert(socket.to_path_buf(), id);
    }
}

/// [`ports_from_agent`] unless `memo` knows the socket has no agent; a
/// failure is remembered.
pub async fn ports_from_agent_once(
    memo: &NoAgentMemo,
    vm: &str,
    socket: &Path,
    port: u32,
    connect_timeout: Duration,
) -> Result<Vec<GuestPort>, String> {
    if memo.known_silent(socket) {
        return Err("no guest agent answered on this VMM's vsock before".into());
    }
    let result = ports_from_agent(vm, socket, port, connect_timeout).await;
    if result.is_err() {
        memo.remember(socket);
    }
    result
}

impl WorkspaceService {
    /// `vm.ports`: the guest agent over vsock, else `ss` over SSH.
    pub async fn ports(self: &Arc<Self>, vm: &str) -> Result<Vec<GuestPort>, DaemonError> {
        let vm = self.snapshot(vm).await?;
        if let Some(socket) = self.vms.vsock_socket(&vm.id).filter(|p| p.exists()) {
            match ports_from_agent_once(
                &self.no_agent,
                &vm.name,
                &socket,
                self.deps.guest.vsock_port,
                AGENT_CONNECT_TIMEOUT,
            )
            .await
            {
                Ok(ports) => return Ok(ports),
                Err(e) => tracing::debug!(
                    vm = %vm.name,
                    error = %e,
                    "guest agent did not answer PORTS; falling back to ss over SSH"
                ),
            }
        }
        let me = Arc::clone(self);
        let target = self.target(&vm);
        tokio::task::spawn_blocking(move || -> Result<Vec<GuestPort>, WorkspaceOpError> {
            let mut out = Vec::new();
            let run = me.run_guest(&target, "ss -Htulnp", None, &mut out)?;
            if run.code != 0 {
                return Err(WorkspaceOpError::Guest {
                    vm: vm.name.clone(),
                    what: "`ss -Htulnp` (is iproute2 installed in the image?)",
                    code: run.code,
                    stderr: run.stderr.trim().to_string(),
                });
            }
            Ok(parse_ss(&vm.name, &String::from_utf8_lossy(&out)))
        })
        .await
        .map_err(|e| WorkspaceOpError::Internal(format!("ports task: {e}")))?
        .map_err(DaemonError::from)
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

    /// A VMM whose vsock socket accepts and never answers (a guest without
    /// an agent) is waited for once; the next `vm ports` goes straight to
    /// SSH; a new socket (the VMM restarted) is probed again.
    #[tokio::test]
    async fn a_silent_vsock_is_probed_once_per_vmm_run() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vsock.sock");
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let serve = |path: PathBuf| {
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let accepted = Arc::clone(&accepted);
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((s, _)) = listener.accept().await {
                    accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    held.push(s);
                }
            })
        };
        let server = serve(socket.clone());
        let memo = NoAgentMemo::default();
        let wait = Duration::from_millis(200);
        let count = || accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!(
            ports_from_agent_once(&memo, "dev", &socket, 52, wait)
                .await
                .is_err()
        );
        assert_eq!(count(), 1);
        assert!(
            ports_from_agent_once(&memo, "dev", &socket, 52, wait)
                .await
                .is_err()
        );
        assert_eq!(count(), 1, "the second call does not dial the silent VMM");
        // A new VMM binds a new socket at the same path: probed again.
        server.abort();
        std::fs::remove_file(&socket).unwrap();
        let _server = serve(socket.clone());
        assert!(
            ports_from_agent_once(&memo, "dev", &socket, 52, wait)
                .await
                .is_err()
        );
        assert_eq!(count(), 2);
    }
}
