//! Where things live: the mode (dev or system path), the directories and
//! files derived from the config file, and the runtime directory's safety
//! check.

use std::path::{Path, PathBuf};

use crate::file::{Config, ConfigError};

/// Which set of default paths applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `bangerd` started by a user: XDG directories.
    Dev,
    /// Installed with `banger system install`: `/var/lib/banger`, `/run/banger`, `/etc/banger`.
    System,
}

/// Resolved directories and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Config file that was (or would be) read.
    pub config_file: PathBuf,
    /// State directory.
    pub state_dir: PathBuf,
    /// Runtime directory.
    pub runtime_dir: PathBuf,
}

impl Layout {
    /// The default config file for `mode`.
    pub fn default_config_file(mode: Mode) -> PathBuf {
        match mode {
            Mode::System => PathBuf::from(crate::system::CONFIG_FILE),
            Mode::Dev => Self::user_config_dir()
                .map(|d| d.join("config.toml"))
                .unwrap_or_else(|| PathBuf::from(crate::system::CONFIG_FILE)),
        }
    }

    /// The user's own banger config directory: `$XDG_CONFIG_HOME/banger`,
    /// else `~/.config/banger`; `None` when neither variable is set.
    pub fn user_config_dir() -> Option<PathBuf> {
        xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("banger"))
    }

    /// Resolve the layout: `state_dir_flag` (from `--state-dir`) wins over
    /// the config file, which wins over the mode's defaults. With
    /// `--state-dir` and no explicit runtime dir, sockets go to
    /// `<state_dir>/run` so that several dev daemons never share a socket.
    pub fn resolve(
        mode: Mode,
        config_file: PathBuf,
        config: &Config,
        state_dir_flag: Option<&Path>,
    ) -> Result<Layout, ConfigError> {
        let state_dir = match (state_dir_flag, &config.state_dir, mode) {
            (Some(d), _, _) => absolute(d),
            (None, Some(d), _) => absolute(d),
            (None, None, Mode::System) => PathBuf::from(crate::system::STATE_DIR),
            (None, None, Mode::Dev) => xdg_dir("XDG_STATE_HOME", ".local/state")
                .map(|d| d.join("banger"))
                .ok_or(ConfigError::NoStateDir)?,
        };
        let runtime_dir = match (&config.runtime_dir, state_dir_flag, mode) {
            (Some(d), _, _) => absolute(d),
            (None, Some(_), _) => state_dir.join("run"),
            (None, None, Mode::System) => PathBuf::from(crate::system::RUNTIME_DIR),
            (None, None, Mode::Dev) => std::env::var_os("XDG_RUNTIME_DIR")
                .filter(|v| !v.is_empty())
                .map(|d| PathBuf::from(d).join("banger"))
                .unwrap_or_else(|| state_dir.join("run")),
        };
        Ok(Layout {
            config_file,
            state_dir,
            runtime_dir,
        })
    }

    /// The daemon's RPC socket.
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join("bangerd.sock")
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.state_dir.join("banger.db")
    }

    /// Directory of VM `id` (disks, logs, `handles.json`).
    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("vms").join(id)
    }

    /// Runtime directory of VM `id` (API and vsock sockets).
    pub fn vm_run_dir(&self, id: &str) -> PathBuf {
        self.runtime_dir.join("vms").join(id)
    }

    /// Directory of image `id`.
    pub fn image_dir(&self, id: &str) -> PathBuf {
        self.state_dir.join("images").join(id)
    }

    /// The longest Unix socket path bangerd and its VMMs create under this
    /// layout: a VM's hybrid-vsock socket, `<runtime_dir>/vms/<id>/vsock.sock`
    /// (ids are [`VM_ID_LEN`] characters).
    pub fn longest_socket(&self) -> PathBuf {
        self.vm_run_dir(&"0".repeat(VM_ID_LEN)).join("vsock.sock")
    }

    /// Refuse a runtime directory (derived from the state dir on the dev
    /// path with `--state-dir`) whose sockets would not fit in a Unix
    /// socket address: Firecracker cannot create its API socket there.
    pub fn check_socket_paths(&self) -> Result<(), SocketPathTooLong> {
        let longest = self.longest_socket();
        let len = longest.as_os_str().len();
        if len <= MAX_SOCKET_PATH {
            return Ok(());
        }
        Err(SocketPathTooLong {
            runtime_dir: self.runtime_dir.clone(),
            longest,
            len,
            max_dir: MAX_SOCKET_PATH.saturating_sub(len - self.runtime_dir.as_os_str().len()),
        })
    }

    /// The daemon's own log when it runs detached.
    pub fn daemon_log(&self) -> PathBuf {
        self.state_dir.join("bangerd.log")
    }

    /// banger's SSH key on the system path, when the config names none:
    /// `<state_dir>/ssh/id_ed25519`, beside the daemon's known_hosts. The
    /// unit makes home directories read-only (`ProtectHome=read-only`), so
    /// the dev path's `~/.config/banger/ssh` cannot be created there; the
    /// state directory is the owner's (0750), so `banger vm ssh` run as
    /// the owner reads the key.
    pub fn system_ssh_key(&self) -> PathBuf {
        self.state_dir.join("ssh/id_ed25519")
    }
}

impl Config {
    /// Defaults that depend on the mode, settled once the layout is
    /// known: on the system path an unset `guest.ssh_key` becomes
    /// [`Layout::system_ssh_key`], so everything `bangerd` writes lives
    /// where its unit lets it write. The dev path keeps its defaults.
    pub fn settle_for(&mut self, mode: Mode, layout: &Layout) {
        if mode == Mode::System && self.guest.ssh_key.is_none() {
            self.guest.ssh_key = Some(layout.system_ssh_key());
        }
    }
}

fn xdg_dir(var: &str, home_rel: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(home_rel)))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Length of a VM id (`banger_store::new_id`: 16 hex digits).
pub const VM_ID_LEN: usize = 16;

/// Longest Unix socket path: `sun_path` is 108 bytes, one for the NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// The runtime directory is too long to hold the VMs' sockets.
#[derive(Debug, thiserror::Error)]
#[error(
    "runtime directory {} is too long for Unix sockets: {} would be {len} bytes, the limit is {MAX_SOCKET_PATH} (108 with the NUL) and Firecracker cannot create its sockets there; set runtime_dir (or XDG_RUNTIME_DIR, or a shorter --state-dir, whose run/ holds the sockets) to a path of at most {max_dir} bytes",
    runtime_dir.display(),
    longest.display()
)]
pub struct SocketPathTooLong {
    /// The runtime directory.
    pub runtime_dir: PathBuf,
    /// Its longest socket path.
    pub longest: PathBuf,
    /// That path's length in bytes.
    pub len: usize,
    /// The longest runtime directory that would fit.
    pub max_dir: usize,
}

/// Why the runtime directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    /// Someone else could replace the daemon's sockets there.
    #[error(
        "runtime directory {path} is {problem}: another user could replace bangerd's socket there; {fix}"
    )]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// A filesystem step failed.
    #[error("cannot {action} runtime directory {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Make `dir` safe to hold the daemon's sockets: created 0700 when
/// missing; when this uid owns it, group and other bits are removed (0700);
/// owned by another uid, it must not be writable by group or others; and
/// its parent must not let group or others rename it (writable without
/// the sticky bit). On the system path systemd creates it (the owner's,
/// 0700) and this only checks.
pub fn secure_runtime_dir(dir: &Path) -> Result<(), RuntimeDirError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let io = |action: &'static str| {
        move |source| RuntimeDirError::Io {
            action,
            path: dir.to_path_buf(),
            source,
        }
    };
    let unsafe_dir = |path: &Path, problem: String, fix: String| RuntimeDirError::Unsafe {
        path: path.to_path_buf(),
        problem,
        fix,
    };
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create"))?;
    }
    let m = std::fs::symlink_metadata(dir).map_err(io("inspect"))?;
    if !m.is_dir() {
        return Err(unsafe_dir(
            dir,
            "not a directory".into(),
            "remove it or set runtime_dir to a directory".into(),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    let mode = m.mode() & 0o7777;
    if m.uid() == me {
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io("chmod"))?;
        }
    } else if mode & 0o022 != 0 {
        return Err(unsafe_dir(
            dir,
            format!(
                "owned by uid {} and writable by group or others (mode {mode:o})",
                m.uid()
            ),
            "set runtime_dir to a directory you own (bangerd creates it 0700)".into(),
        ));
    }
    if let Some(parent) = dir.parent()
        && let Ok(pm) = std::fs::metadata(parent)
        && pm.mode() & 0o022 != 0
        && pm.mode() & 0o1000 == 0
    {
        return Err(unsafe_dir(
            dir,
            format!(
                "in {}, which group or others may write (mode {:o}, no sticky bit)",
                parent.display(),
                pm.mode() & 0o7777
            ),
            "set runtime_dir to a directory whose parent only you can change".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn socket_paths_must_fit_a_unix_socket_address() {
        let at = |dir: &str| super::Layout {
            config_file: "/c".into(),
            state_dir: "/s".into(),
            runtime_dir: dir.into(),
        };
        // "/vms/" + 16 + "/vsock.sock" = 32 bytes after the directory.
        let fits = format!("/{}", "r".repeat(super::MAX_SOCKET_PATH - 32 - 1));
        let l = at(&fits);
        assert_eq!(l.longest_socket().as_os_str().len(), super::MAX_SOCKET_PATH);
        l.check_socket_paths().unwrap();
        let long = format!("{fits}x");
        let e = at(&long).check_socket_paths().unwrap_err();
        assert_eq!(e.max_dir, fits.len());
        let msg = e.to_string();
        assert!(
            msg.contains(&long)
                && msg.contains("108 bytes, the limit is 107")
                && msg.contains(&format!("at most {} bytes", fits.len())),
            "{msg}"
        );
    }

    use super::*;

    /// The system path's default layout.
    fn system_layout() -> Layout {
        Layout::resolve(
            Mode::System,
            PathBuf::from("/etc/banger/config.toml"),
            &Config::default(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn state_dir_flag_puts_sockets_inside() {
        let l = Layout::resolve(
            Mode::Dev,
            PathBuf::from("/x/c.toml"),
            &Config::default(),
            Some(Path::new("/tmp/s")),
        )
        .unwrap();
        assert_eq!(l.socket(), PathBuf::from("/tmp/s/run/bangerd.sock"));
        let s = system_layout();
        assert_eq!(s.state_dir, PathBuf::from("/var/lib/banger"));
        assert_eq!(s.socket(), PathBuf::from("/run/banger/bangerd.sock"));
    }

    #[test]
    fn the_system_path_keeps_the_ssh_key_in_the_state_dir() {
        let layout = system_layout();
        let mut c = Config::default();
        c.settle_for(Mode::System, &layout);
        assert_eq!(
            c.guest.key_path(),
            PathBuf::from("/var/lib/banger/ssh/id_ed25519")
        );
        // A configured key stays; the dev path keeps its default.
        let mut set = Config::default();
        set.guest.ssh_key = Some("/k/id".into());
        set.settle_for(Mode::System, &layout);
        assert_eq!(set.guest.key_path(), PathBuf::from("/k/id"));
        let mut dev = Config::default();
        dev.settle_for(Mode::Dev, &layout);
        assert_eq!(dev.guest.ssh_key, None);
    }
}

#[cfg(test)]
mod runtime_dir_tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn runtime_dir_is_created_0700_tightened_and_refused_when_others_can_change_it() {
        let t = tempfile::tempdir().unwrap();
        let fresh = t.path().join("a/run");
        secure_runtime_dir(&fresh).unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        // Ours but group-writable: tightened.
        let loose = t.path().join("loose");
        std::fs::create_dir(&loose).unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o770)).unwrap();
        secure_runtime_dir(&loose).unwrap();
        assert_eq!(std::fs::metadata(&loose).unwrap().mode() & 0o777, 0o700);
        // In a parent others may write (no sticky bit): refused.
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = secure_runtime_dir(&open.join("run")).unwrap_err();
        assert!(e.to_string().contains("no sticky bit"), "{e}");
        // With the sticky bit (like /tmp) others cannot rename it: fine.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        secure_runtime_dir(&open.join("run")).unwrap();
        // Another uid's group-writable directory: refused (needs root to
        // create one owned by someone else).
        if nix::unistd::geteuid().is_root() {
            let theirs = t.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(64_123), Some(64_123)).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o770)).unwrap();
            let e = secure_runtime_dir(&theirs).unwrap_err();
            assert!(e.to_string().contains("owned by uid 64123"), "{e}");
            assert_eq!(std::fs::metadata(&theirs).unwrap().mode() & 0o777, 0o770);
        }
    }
}
