//! `banger system install` and `uninstall`: the files of the system path
//! under an optional prefix (`--root DIR`, for packaging and tests).
//!
//! Install writes the binaries, both units, the tmpfiles.d line of the
//! daemon's runtime directory, the daemon config (when missing), the state
//! directory (owned by the owner) and `/etc/banger/install.toml`,
//! recording every path it created there, so
//! uninstall removes exactly those and leaves the prefix as it was. On the
//! real root with systemd running it also reloads, enables and starts the
//! units (and stops and disables them on uninstall).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use banger_config::install_meta::{INSTALL_META, InstallMeta, InstallPaths};

use super::SystemError;
use super::systemd::Systemd;
use super::units::{DAEMON_UNIT, HELPER_UNIT, TMPFILES, daemon_unit, helper_unit, tmpfiles};

/// Where a system install puts things (installed-host paths; the same
/// `banger-config` resolves for `--system`).
pub const CONFIG: &str = banger_config::system::CONFIG_FILE;
/// Unit directory.
pub const UNIT_DIR: &str = banger_config::system::UNIT_DIR;
/// Binary directory.
pub const BIN_DIR: &str = banger_config::system::BIN_DIR;
/// State directory.
pub const STATE_DIR: &str = banger_config::system::STATE_DIR;
/// The daemon's runtime directory (the owner's, 0700).
pub const RUNTIME_DIR: &str = banger_config::system::RUNTIME_DIR;
/// The binaries installed: the CLI, both daemons and the guest agent
/// (`banger-guest`, which the daemon finds beside itself and seeds into
/// images: without it images get no agent, and kernels that rely on it
/// for the guest network boot without one).
pub const BINARIES: [&str; 4] = ["banger", "bangerd", "bangerd-root", "banger-guest"];

/// The daemon config written by install when none exists.
pub const DEFAULT_CONFIG: &str = "# banger system configuration (`banger config default` lists every key).\n\
firecracker_bin = \"firecracker\"\n\
privileged_helper = \"/run/banger-root/root.sock\"\n";

/// The daemon config earlier versions wrote (helper socket in the then
/// group-writable `/run/banger`): replaced by [`DEFAULT_CONFIG`] on
/// install when unedited.
const OLD_DEFAULT_CONFIG: &str = "# banger system configuration (`banger config default` lists every key).\n\
firecracker_bin = \"firecracker\"\n\
privileged_helper = \"/run/banger/root.sock\"\n";

/// What `install` needs.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Prefix (`/` for a real install).
    pub root: PathBuf,
    /// Owner user name.
    pub owner: String,
    /// Directory holding the binaries to install.
    pub bin_src: PathBuf,
}

/// `root` + installed-host path `p`.
pub fn under(root: &Path, p: &Path) -> PathBuf {
    root.join(p.strip_prefix("/").unwrap_or(p))
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SystemError {
    let path = path.to_path_buf();
    move |source| SystemError::Io {
        action,
        path,
        source,
    }
}

/// The metadata of an install for `owner` with the default paths.
pub fn meta_for(owner: &str, uid: u32, gid: u32) -> InstallMeta {
    InstallMeta {
        version: banger_api::BANGER_VERSION.to_string(),
        owner: owner.to_string(),
        owner_uid: uid,
        owner_gid: gid,
        paths: InstallPaths {
            config: CONFIG.into(),
            state_dir: STATE_DIR.into(),
            runtime_dir: RUNTIME_DIR.into(),
            helper_socket: banger_config::DEFAULT_HELPER_SOCKET.into(),
            bin_dir: BIN_DIR.into(),
            unit_dir: UNIT_DIR.into(),
        },
        jailer: None,
        created: Vec::new(),
    }
}

/// Records what install creates (installed-host paths).
struct Creator<'a> {
    root: &'a Path,
    created: Vec<PathBuf>,
}

impl Creator<'_> {
    fn dir(&mut self, p: &Path) -> Result<(), SystemError> {
        let mut missing = Vec::new();
        let mut cur = Some(p);
        while let Some(c) = cur {
            if under(self.root, c).exists() {
                break;
            }
            missing.push(c.to_path_buf());
            cur = c.parent();
        }
        for m in missing.into_iter().rev() {
            let real = under(self.root, &m);
            std::fs::create_dir(&real).map_err(io("create", &real))?;
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755))
                .map_err(io("chmod", &real))?;
            self.created.push(m);
        }
        Ok(())
    }

    fn file(&mut self, p: &Path, content: &[u8], mode: u32) -> Result<(), SystemError> {
        if let Some(parent) = p.parent() {
            self.dir(parent)?;
        }
        let real = under(self.root, p);
        let existed = real.symlink_metadata().is_ok();
        let tmp = real.with_extension("banger-new");
        std::fs::write(&tmp, content).map_err(io("write", &tmp))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
            .map_err(io("chmod", &tmp))?;
        std::fs::rename(&tmp, &real).map_err(io("replace", &real))?;
        if !existed {
            self.created.push(p.to_path_buf());
        }
        Ok(())
    }
}

/// Install; returns the metadata written and what was done.
pub fn install(
    opts: &InstallOptions,
    sd: &Systemd,
) -> Result<(InstallMeta, Vec<String>), SystemError> {
    let real_root = opts.root == Path::new("/");
    let euid_root = nix::unistd::geteuid().is_root();
    if real_root && !euid_root {
        return Err(SystemError::NeedRoot("install"));
    }
    let user = nix::unistd::User::from_name(&opts.owner)
        .ok()
        .flatten()
        .ok_or_else(|| SystemError::NoSuchUser(opts.owner.clone()))?;
    if user.uid.is_root() {
        return Err(SystemError::RootOwner);
    }
    for b in BINARIES {
        let src = opts.bin_src.join(b);
        if !src.is_file() {
            return Err(SystemError::MissingBinary(src));
        }
    }
    let meta_path = Path::new(INSTALL_META);
    let previous = InstallMeta::load(&under(&opts.root, meta_path)).ok();
    let mut meta = meta_for(&opts.owner, user.uid.as_raw(), user.gid.as_raw());
    let mut c = Creator {
        root: &opts.root,
        created: previous.map(|m| m.created).unwrap_or_default(),
    };
    let mut done = Vec::new();
    for b in BINARIES {
        let src = opts.bin_src.join(b);
        let bytes = std::fs::read(&src).map_err(io("read", &src))?;
        c.file(&meta.paths.bin_dir.join(b), &bytes, 0o755)?;
    }
    done.push(format!(
        "installed {} into {}",
        BINARIES.join(", "),
        meta.paths.bin_dir.display()
    ));
    let unit_dir = meta.paths.unit_dir.clone();
    c.file(
        &unit_dir.join(HELPER_UNIT),
        helper_unit(&meta, INSTALL_META).as_bytes(),
        0o644,
    )?;
    c.file(
        &unit_dir.join(DAEMON_UNIT),
        daemon_unit(&meta).as_bytes(),
        0o644,
    )?;
    done.push(format!(
        "wrote {HELPER_UNIT} and {DAEMON_UNIT} into {}",
        unit_dir.display()
    ));
    c.file(Path::new(TMPFILES), tmpfiles(&meta).as_bytes(), 0o644)?;
    done.push(format!(
        "wrote {TMPFILES} ({} owned by {}, mode 0700)",
        meta.paths.runtime_dir.display(),
        opts.owner
    ));
    let real_config = under(&opts.root, &meta.paths.config);
    match std::fs::read(&real_config) {
        Err(_) => {
            c.file(&meta.paths.config, DEFAULT_CONFIG.as_bytes(), 0o644)?;
            done.push(format!("wrote {}", meta.paths.config.display()));
        }
        Ok(old) if old == OLD_DEFAULT_CONFIG.as_bytes() => {
            c.file(&meta.paths.config, DEFAULT_CONFIG.as_bytes(), 0o644)?;
            done.push(format!(
                "updated {} (the helper socket moved to {})",
                meta.paths.config.display(),
                meta.paths.helper_socket.display()
            ));
        }
        Ok(text) if String::from_utf8_lossy(&text).contains("\"/run/banger/root.sock\"") => {
            done.push(format!(
                "WARNING: {} names privileged_helper = \"/run/banger/root.sock\"; the helper now listens on {}: change that line (or remove it) before restarting bangerd",
                meta.paths.config.display(),
                meta.paths.helper_socket.display()
            ));
        }
        Ok(_) => {}
    }
    let state = meta.paths.state_dir.clone();
    c.dir(&state)?;
    let real_state = under(&opts.root, &state);
    std::fs::set_permissions(&real_state, std::fs::Permissions::from_mode(0o750))
        .map_err(io("chmod", &real_state))?;
    if euid_root {
        std::os::unix::fs::chown(
            &real_state,
            Some(user.uid.as_raw()),
            Some(user.gid.as_raw()),
        )
        .map_err(io("chown", &real_state))?;
    }
    done.push(format!(
        "state directory {} owned by {}",
        state.display(),
        opts.owner
    ));
    if let Some(parent) = meta_path.parent() {
        c.dir(parent)?;
    }
    if !under(&opts.root, meta_path).exists() {
        c.created.push(meta_path.to_path_buf());
    }
    meta.created = c.created;
    let real_meta = under(&opts.root, meta_path);
    std::fs::write(&real_meta, meta.to_toml()).map_err(io("write", &real_meta))?;
    std::fs::set_permissions(&real_meta, std::fs::Permissions::from_mode(0o644))
        .map_err(io("chmod", &real_meta))?;
    done.push(format!("wrote {INSTALL_META}"));
    if real_root {
        done.push(sd.tmpfiles_create(Path::new(TMPFILES)));
        done.push(sd.enable_now(&[HELPER_UNIT, DAEMON_UNIT]));
    } else {
        done.push(format!(
            "prefix {}: units not enabled (enable them on the target host: systemctl enable --now {HELPER_UNIT} {DAEMON_UNIT})",
            opts.root.display()
        ));
    }
    Ok((meta, done))
}

/// Uninstall what `install` recorded; `purge` also removes the state dir.
pub fn uninstall(root: &Path, purge: bool, sd: &Systemd) -> Result<Vec<String>, SystemError> {
    let real_root = root == Path::new("/");
    if real_root && !nix::unistd::geteuid().is_root() {
        return Err(SystemError::NeedRoot("uninstall"));
    }
    let meta_path = under(root, Path::new(INSTALL_META));
    let meta =
        InstallMeta::load(&meta_path).map_err(|e| SystemError::NotInstalled(e.to_string()))?;
    let mut done = Vec::new();
    if real_root {
        done.push(sd.disable_now(&[DAEMON_UNIT, HELPER_UNIT]));
    }
    let state = &meta.paths.state_dir;
    if purge {
        let real = under(root, state);
        if real.exists() {
            std::fs::remove_dir_all(&real).map_err(io("remove", &real))?;
            done.push(format!("purged {}", state.display()));
        }
    }
    for p in meta.created.iter().rev() {
        let real = under(root, p);
        let Ok(m) = real.symlink_metadata() else {
            continue;
        };
        if m.is_dir() {
            match std::fs::remove_dir(&real) {
                Ok(()) => {}
                Err(_) if p == state => {
                    done.push(format!(
                        "kept {} (it holds VMs and images; `uninstall --purge` removes it)",
                        state.display()
                    ));
                }
                Err(_) => done.push(format!("kept {} (not empty)", p.display())),
            }
            continue;
        }
        if p == &meta.paths.config
            && std::fs::read(&real)
                .is_ok_and(|b| b != DEFAULT_CONFIG.as_bytes() && b != OLD_DEFAULT_CONFIG.as_bytes())
            && !purge
        {
            done.push(format!(
                "kept {} (edited; `--purge` removes it)",
                p.display()
            ));
            continue;
        }
        std::fs::remove_file(&real).map_err(io("remove", &real))?;
    }
    done.push(format!(
        "removed the files of the install ({} paths)",
        meta.created.len()
    ));
    // The runtime directories (systemd removes the helper's when it stops
    // it; the daemon's is kept across restarts): removed when empty, or
    // with everything in them on --purge.
    let helper_dir = meta.paths.helper_socket.parent().map(Path::to_path_buf);
    for dir in [Some(meta.paths.runtime_dir.clone()), helper_dir]
        .into_iter()
        .flatten()
    {
        let real = under(root, &dir);
        if !real.is_dir() {
            continue;
        }
        let removed = if purge {
            std::fs::remove_dir_all(&real)
        } else {
            std::fs::remove_dir(&real)
        };
        done.push(match removed {
            Ok(()) => format!("removed {}", dir.display()),
            Err(_) => format!(
                "kept {} (sockets of running VMs; `uninstall --purge` removes it)",
                dir.display()
            ),
        });
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A user install may name: this user, or `nobody` when run as root
    /// (install refuses root as the owner); `None` when neither works.
    fn test_owner() -> Option<String> {
        let me = nix::unistd::User::from_uid(nix::unistd::getuid()).ok()??;
        if !me.uid.is_root() {
            return Some(me.name);
        }
        nix::unistd::User::from_name("nobody")
            .ok()
            .flatten()
            .map(|u| u.name)
    }

    #[test]
    fn install_copies_and_lists_the_guest_agent() {
        let Some(owner) = test_owner() else {
            banger_testsupport::skip!("install_copies_and_lists_the_guest_agent", "no user nobody");
        };
        let bins = tempfile::tempdir().unwrap();
        for b in BINARIES {
            std::fs::write(bins.path().join(b), format!("#!/bin/true\n# {b}\n")).unwrap();
        }
        let root = tempfile::tempdir().unwrap();
        let opts = InstallOptions {
            root: root.path().to_path_buf(),
            owner,
            bin_src: bins.path().to_path_buf(),
        };
        let (meta, done) = install(&opts, &Systemd::probe()).unwrap();
        let agent = under(root.path(), Path::new(BIN_DIR)).join("banger-guest");
        assert_eq!(
            std::fs::read_to_string(&agent).unwrap(),
            "#!/bin/true\n# banger-guest\n"
        );
        assert_eq!(
            std::fs::metadata(&agent).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(
            done.iter()
                .any(|l| l.starts_with("installed ") && l.contains("banger-guest")),
            "{done:?}"
        );
        assert!(
            meta.created
                .contains(&Path::new(BIN_DIR).join("banger-guest"))
        );
        // Without the agent there is nothing to install from.
        std::fs::remove_file(bins.path().join("banger-guest")).unwrap();
        let e = install(&opts, &Systemd::probe()).unwrap_err();
        assert!(matches!(e, SystemError::MissingBinary(p) if p.ends_with("banger-guest")));
        uninstall(root.path(), true, &Systemd::probe()).unwrap();
        assert!(!agent.exists());
    }

    #[test]
    fn an_unedited_old_config_is_moved_to_the_new_helper_socket() {
        assert_ne!(OLD_DEFAULT_CONFIG, DEFAULT_CONFIG);
        assert!(DEFAULT_CONFIG.contains(banger_config::DEFAULT_HELPER_SOCKET));
        let me = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap();
        if me.uid.is_root() {
            // install refuses root as the owner; use nobody.
            if nix::unistd::User::from_name("nobody")
                .ok()
                .flatten()
                .is_none()
            {
                banger_testsupport::skip!(
                    "an_unedited_old_config_is_moved_to_the_new_helper_socket",
                    "no user nobody"
                );
            }
        }
        let owner = if me.uid.is_root() {
            "nobody".to_string()
        } else {
            me.name
        };
        let bins = tempfile::tempdir().unwrap();
        for b in BINARIES {
            std::fs::write(bins.path().join(b), "#!/bin/true\n").unwrap();
        }
        let sd = Systemd::probe();
        for (old, expect_new, warns) in [
            (OLD_DEFAULT_CONFIG.to_string(), true, false),
            (format!("{OLD_DEFAULT_CONFIG}# edited\n"), false, true),
        ] {
            let root = tempfile::tempdir().unwrap();
            let cfg = under(root.path(), Path::new(CONFIG));
            std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
            std::fs::write(&cfg, &old).unwrap();
            let opts = InstallOptions {
                root: root.path().to_path_buf(),
                owner: owner.clone(),
                bin_src: bins.path().to_path_buf(),
            };
            let (_, done) = install(&opts, &sd).unwrap();
            let now = std::fs::read_to_string(&cfg).unwrap();
            assert_eq!(now == DEFAULT_CONFIG, expect_new, "{now}");
            assert_eq!(
                done.iter().any(|l| l.starts_with("WARNING")),
                warns,
                "{done:?}"
            );
        }
    }
}
