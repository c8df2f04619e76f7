//! `banger system status` and the helper-socket probe shared with doctor:
//! unit states (or why systemd cannot be asked), the helper socket's owner,
//! mode and directory, the daemon's runtime directory, and whether the
//! helper and the daemon answer (each checked to run as who it should).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use banger_config::install_meta::InstallMeta;
use banger_privops::RootHelperClient;

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

/// Check the helper socket at `socket`: a socket, owned by `owner_uid`
/// (or root), no group/other bits, in a root-owned directory that group
/// and others cannot write, answering a ping as root.
pub fn socket_health(socket: &Path, owner_uid: Option<u32>) -> StatusLine {
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
    if let Some(o) = owner_uid
        && m.uid() != o
        && m.uid() != 0
    {
        problems.push(format!(
            "owned by uid {} instead of the owner's {o}",
            m.uid()
        ));
    }
    if mode & 0o077 != 0 {
        problems.push(format!("mode {mode:o} lets group or other users connect"));
    }
    if let Some(dir) = socket.parent()
        && let Ok(d) = std::fs::metadata(dir)
    {
        if d.uid() != 0 {
            problems.push(format!(
                "its directory {} belongs to uid {}, not root",
                dir.display(),
                d.uid()
            ));
        }
        if d.mode() & 0o022 != 0 {
            problems.push(format!(
                "its directory {} is writable by group or others (mode {:o})",
                dir.display(),
                d.mode() & 0o7777
            ));
        }
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

/// Check the daemon's runtime directory: owned by `owner_uid`, no group or
/// other bits (systemd creates it so; others could replace sockets in it
/// otherwise).
pub fn runtime_dir_health(dir: &Path, owner_uid: u32) -> StatusLine {
    let item = "runtime dir".to_string();
    let m = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) => {
            return StatusLine {
                item,
                ok: false,
                detail: format!(
                    "{}: {e}; `sudo systemd-tmpfiles --create /etc/tmpfiles.d/banger.conf` creates it",
                    dir.display()
                ),
            };
        }
    };
    let mode = m.mode() & 0o7777;
    let mut problems = Vec::new();
    if !m.is_dir() {
        problems.push("not a directory".to_string());
    }
    if m.uid() != owner_uid {
        problems.push(format!(
            "owned by uid {} instead of the owner's {owner_uid}",
            m.uid()
        ));
    }
    if mode & 0o077 != 0 {
        problems.push(format!("mode {mode:o} instead of 700"));
    }
    StatusLine {
        item,
        ok: problems.is_empty(),
        detail: format!(
            "{} (uid {}, mode {mode:o}){}",
            dir.display(),
            m.uid(),
            if problems.is_empty() {
                String::new()
            } else {
                format!(
                    ": {}; `sudo systemd-tmpfiles --create /etc/tmpfiles.d/banger.conf` fixes it",
                    problems.join(", ")
                )
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
        // Readiness as systemd knows it (Type=notify: READY=1 received).
        let (ok, detail) = match sd.show(unit) {
            Ok(s) => (s.ready(), s.describe()),
            Err(why) => (false, format!("unknown ({why})")),
        };
        out.push(StatusLine {
            item: unit.into(),
            ok,
            detail,
        });
    }
    out.push(socket_health(
        &meta.paths.helper_socket,
        Some(meta.owner_uid),
    ));
    out.push(runtime_dir_health(&meta.paths.runtime_dir, meta.owner_uid));
    out.push(daemon_health(
        &meta.paths.runtime_dir.join("bangerd.sock"),
        Some(meta.owner_uid),
    ));
    out
}

/// Whether `bangerd` answers on `socket`, served by this user, root or
/// `owner_uid`.
pub fn daemon_health(socket: &Path, owner_uid: Option<u32>) -> StatusLine {
    let item = "daemon socket".to_string();
    let peers = crate::client::TrustedPeers::with_owner(owner_uid);
    let status = crate::client::Client::connect_with(socket, &peers)
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
            s.detail.contains("lets group or other users connect"),
            "{}",
            s.detail
        );
        let me = nix::unistd::geteuid().as_raw();
        if me != 0 {
            assert!(
                s.detail.contains("instead of the owner's 4242"),
                "{}",
                s.detail
            );
        }
        assert!(s.detail.contains("no answer"), "{}", s.detail);
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o770)).unwrap();
        let s = socket_health(&sock, Some(me));
        assert!(
            s.detail.contains("is writable by group or others"),
            "{}",
            s.detail
        );
        assert!(!daemon_health(&t.path().join("none.sock"), None).ok);
        // The daemon's runtime dir: the owner's and 0700.
        let run = t.path().join("run");
        std::fs::create_dir(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o770)).unwrap();
        let r = runtime_dir_health(&run, me);
        assert!(!r.ok && r.detail.contains("instead of 700"), "{}", r.detail);
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(runtime_dir_health(&run, me).ok);
        assert!(!runtime_dir_health(&run, me + 1).ok);
        assert!(!runtime_dir_health(&t.path().join("none"), me).ok);
    }
}
