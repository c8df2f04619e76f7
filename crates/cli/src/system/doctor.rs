//! Doctor checks of the system path: the install metadata and its owner
//! against the user running doctor, both units, and the helper socket
//! (owner, mode, directory, answer from root). Run when `--system` is given or the
//! config names a `privileged_helper`.

use std::path::Path;

use banger_api::doctor::Check;
use banger_config::helper_socket;
use banger_config::install_meta::{INSTALL_META, InstallMeta};
use banger_config::{Config, Mode};

use super::status::socket_health;
use super::systemd::Systemd;
use super::units::{DAEMON_UNIT, HELPER_UNIT};

/// The checks, or none on the dev path without a helper.
pub fn checks(mode: Mode, config: &Config) -> Vec<Check> {
    let Some(socket) = helper_socket(mode, config) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let me = nix::unistd::getuid().as_raw();
    let meta = InstallMeta::load(Path::new(INSTALL_META));
    let owner_uid = match &meta {
        Ok(m) => {
            out.push(owner_check(m, me));
            Some(m.owner_uid)
        }
        Err(e) => {
            out.push(Check::fail(
                "install",
                e.to_string(),
                "install the system path with `sudo banger system install --owner USER`",
            ));
            None
        }
    };
    if mode == Mode::System || meta.is_ok() {
        let sd = Systemd::probe();
        for unit in [HELPER_UNIT, DAEMON_UNIT] {
            out.push(match sd.unusable() {
                Some(why) => Check::warn(
                    unit,
                    format!("cannot ask systemd: {why}"),
                    "start bangerd-root (as root) and bangerd (as the owner) by hand",
                ),
                None => {
                    let state = sd
                        .show(unit)
                        .map_err(|why| format!("unknown ({why})"));
                    match state {
                        Ok(s) if s.ready() => Check::ok(unit, s.describe()),
                        other => Check::fail(
                            unit,
                            other.map_or_else(|why| why, |s| s.describe()),
                            format!("`sudo systemctl start {unit}`; `journalctl -u {unit}` says why it stopped"),
                        ),
                    }
                }
            });
        }
    }
    let s = socket_health(&socket, owner_uid);
    out.push(if s.ok {
        Check::ok("helper socket", s.detail)
    } else {
        Check::fail(
            "helper socket",
            s.detail,
            "start bangerd-root (`sudo banger system restart`); it recreates the socket in its root-owned directory (/run/banger-root), owned by the owner, mode 0600",
        )
    });
    out
}

fn owner_check(m: &InstallMeta, me: u32) -> Check {
    if me == m.owner_uid || me == 0 {
        Check::ok(
            "install",
            format!(
                "banger {} installed for {} (uid {})",
                m.version, m.owner, m.owner_uid
            ),
        )
    } else {
        Check::fail(
            "install",
            format!(
                "installed for {} (uid {}) but you are uid {me}: bangerd-root serves only its owner",
                m.owner, m.owner_uid
            ),
            format!(
                "run banger as {}, or reinstall with `sudo banger system install --owner $USER`",
                m.owner
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_api::doctor::CheckStatus;

    #[test]
    fn owner_mismatch_fails_and_dev_path_adds_nothing() {
        let m = crate::system::install::meta_for("alice", 1000, 1000);
        assert_eq!(owner_check(&m, 1000).status, CheckStatus::Ok);
        assert_eq!(owner_check(&m, 0).status, CheckStatus::Ok);
        let c = owner_check(&m, 1001);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("uid 1001"));
        assert!(checks(Mode::Dev, &Config::default()).is_empty());
        let t = tempfile::tempdir().unwrap();
        let cfg = Config {
            privileged_helper: Some(t.path().join("none.sock")),
            ..Config::default()
        };
        let got = checks(Mode::Dev, &cfg);
        let sock = got.iter().find(|c| c.name == "helper socket").unwrap();
        assert_eq!(sock.status, CheckStatus::Fail);
    }
}
