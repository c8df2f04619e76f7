//! `banger system status` and the helper-socket probe shared with doctor:
//! unit states (or why systemd cannot be asked), the socket's owner, group
//! and mode, and whether the helper answers.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use banger_privops::RootHelperClient;
use banger_roothelper::install_meta::InstallMeta;

/// One line of the status.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatusLine {
    /// What.
    pub item: String,
    /// Healthy?
    pub ok: bool,
    /// Detail.
    pub detail: String,
}

/// Check the helper socket at `socket`: a socket, root-owned, group
/// `owner_gid`, not accessible to others, answering a ping.
pub fn socket_health(socket: &Path, owner_gid: Option<u32>) -> StatusLine {
    let item = "helper socket".to_string();
    let m = match socket.symlink_metadata() {
        Ok(m) => m,
        Err(e) => {
            return StatusLine {
                item,
                ok: false,
                detail: format!("{}: {e}; is bangerd-root running?", socket.display()),
            };
        }
    };
    if !m.file_type().is_socket() {
        return StatusLine {
            item,
            ok: false,
            detail: format!("{} is not a socket", socket.display()),
        };
    }
    let mode = m.mode() & 0o777;
    let mut problems = Vec::new();
    if m.uid() != 0 {
        problems.push(format!("owned by uid {} instead of root", m.uid()));
    }
    if let Some(g) = owner_gid
        && m.gid() != g
    {
        problems.push(format!("group {} instead of the owner's {g}", m.gid()));
    }
    if mode & 0o007 != 0 {
        problems.push(format!("mode {mode:o} lets other users connect"));
    }
    let ping = RootHelperClient::new(socket)
        .with_timeout(std::time::Duration::from_secs(5))
        .ping();
    let answer = match &ping {
        Ok((v, uid)) => format!("bangerd-root {v} answers (sees uid {uid})"),
        Err(e) => format!("no answer: {e}"),
    };
    StatusLine {
        item,
        ok: problems.is_empty() && ping.is_ok(),
        detail: format!(
            "{} (uid {}, gid {}, mode {mode:o}){}; {answer}",
            socket.display(),
            m.uid(),
            m.gid(),
            if problems.is_empty() {
                String::new()
            } else {
                format!(": {}", problems.join(", "))
            }
        ),
    }
}

/// Every status line for an install whose metadata is `meta`.
pub fn lines(meta: &InstallMeta, sd: &super::systemd::Systemd) -> Vec<StatusLine> {
    let mut out = vec![StatusLine {
        item: "install".into(),
        ok: true,
        detail: format!(
            "banger {} for {} (uid {}); state {}",
            meta.version,
            meta.owner,
            meta.owner_uid,
            meta.paths.state_dir.display()
        ),
    }];
    for unit in [super::units::HELPER_UNIT, super::units::DAEMON_UNIT] {
        let state = sd.state(unit);
        out.push(StatusLine {
            item: unit.into(),
            ok: state == "active",
            detail: state,
        });
    }
    out.push(socket_health(
        &meta.paths.helper_socket,
        Some(meta.owner_gid),
    ));
    out.push(daemon_health(&meta.paths.runtime_dir.join("bangerd.sock")));
    out
}

/// Whether `bangerd` answers on `socket`.
pub fn daemon_health(socket: &Path) -> StatusLine {
    let item = "daemon socket".to_string();
    let status = crate::client::Client::connect(socket)
        .and_then(|mut c| c.call::<banger_api::DaemonStatus>(banger_api::Request::Status));
    match status {
        Ok(s) => StatusLine {
            item,
            ok: true,
            detail: format!(
                "bangerd {} (pid {}) at {}; {} VM(s), {} running",
                s.version,
                s.pid,
                socket.display(),
                s.vms_total,
                s.vms_running
            ),
        },
        Err(e) => StatusLine {
            item,
            ok: false,
            detail: format!("{}: {e}", socket.display()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_health_flags_mode_group_and_silence() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let missing = socket_health(&t.path().join("none.sock"), None);
        assert!(!missing.ok && missing.detail.contains("is bangerd-root running"));
        let file = t.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(socket_health(&file, None).detail.contains("not a socket"));
        let sock = t.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let s = socket_health(&sock, Some(4242));
        assert!(!s.ok);
        assert!(
            s.detail.contains("lets other users connect"),
            "{}",
            s.detail
        );
        assert!(
            s.detail.contains("instead of the owner's 4242"),
            "{}",
            s.detail
        );
        assert!(s.detail.contains("no answer"), "{}", s.detail);
        assert!(!daemon_health(&t.path().join("none.sock")).ok);
    }
}
