//! Auth-key and git-identity sync onto a VM's disk before boot.
//!
//! The files go onto the VM's **work disk** (`work.ext4`, mounted on the
//! guest user's home by the fstab line image seeding adds, so they sit at
//! the root of that filesystem); a VM without a work disk (created before
//! work disks existed, or from an image without a work seed) gets them in
//! the guest user's home on its **root disk**:
//! `~/.ssh/authorized_keys` (banger's public key plus the owner's own
//! `~/.ssh/id_*.pub`) and `~/.gitconfig` (`user.name` / `user.email` from
//! the owner's git config), so `ssh NAME.vm` works and commits made in the
//! guest carry the owner's identity. The ext4 image is edited without
//! mounting, through banger-imagemgr's `Ext4Edit` (one `debugfs -w` run by
//! argv); the disk file belongs to the owner,
//! so no privilege is needed. The guest user's uid, gid and home come from
//! the image's own `/etc/passwd`.
//!
//! A new VM's work disk is cloned from a template that already holds these
//! files (`vms/work_disk.rs` asks [`WorkspaceService::identity_files`] for
//! them), so a create runs no `debugfs`. [`IdentityCache`] keeps the guest
//! account per disk version and the git identity per content of the
//! owner's git config files, so neither `debugfs` nor `git` runs again
//! while they are unchanged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use banger_imagemgr::{Ext4Edit, Owner};

use crate::common::{FileVersion, GuestAccount, GuestAccountError, authorized_keys, guest_account};
use crate::workspace::service::WorkspaceService;

/// Entries kept in [`IdentityCache`]'s account map before it is emptied.
const MAX_ACCOUNTS: usize = 256;

/// The content of the owner's git config files, and the identity `git`
/// gave for it.
type GitEntry = (Vec<u8>, Option<Vec<u8>>);

/// What the identity sync computed before, and from which inputs.
#[derive(Default)]
pub struct IdentityCache {
    /// (disk, user) → the disk's version when read, the account.
    accounts: Mutex<HashMap<(PathBuf, String), (FileVersion, GuestAccount)>>,
    /// The content of the owner's global git config files → the identity.
    git: Mutex<Option<GitEntry>>,
}

impl IdentityCache {
    /// [`guest_account`], read again only when `disk` changed.
    pub fn account(&self, disk: &Path, user: &str) -> Result<GuestAccount, GuestAccountError> {
        let key = (disk.to_path_buf(), user.to_string());
        let version = FileVersion::of(disk);
        if let Some(v) = version
            && let Some((seen, acct)) = lock(&self.accounts).get(&key)
            && *seen == v
        {
            return Ok(acct.clone());
        }
        let acct = guest_account(disk, user)?;
        if let Some(v) = version
            && FileVersion::of(disk) == Some(v)
        {
            let mut map = lock(&self.accounts);
            if map.len() >= MAX_ACCOUNTS {
                map.clear();
            }
            map.insert(key, (v, acct.clone()));
        }
        Ok(acct)
    }

    /// [`git_identity`], asked of `git` again only when the owner's global
    /// config files (`~/.gitconfig`, `$XDG_CONFIG_HOME/git/config`)
    /// changed. Files with `include` sections are never cached (what they
    /// include is not looked at).
    pub fn git_identity(&self, home: &Path) -> Option<Vec<u8>> {
        let Some(key) = git_config_key(home) else {
            return git_identity(home);
        };
        if let Some((k, id)) = lock(&self.git).as_ref()
            && *k == key
        {
            return id.clone();
        }
        let id = git_identity(home);
        *lock(&self.git) = Some((key, id.clone()));
        id
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The content of the global git config files `git config --global` reads
/// with `HOME=home`, as one key; `None` when one cannot be read or has an
/// `include`.
fn git_config_key(home: &Path) -> Option<Vec<u8>> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|x| !x.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".config"));
    let mut key = Vec::new();
    for f in [home.join(".gitconfig"), xdg.join("git/config")] {
        match std::fs::read(&f) {
            Ok(b) => {
                if String::from_utf8_lossy(&b)
                    .to_ascii_lowercase()
                    .contains("include")
                {
                    return None;
                }
                key.push(1);
                key.extend_from_slice(&(b.len() as u64).to_le_bytes());
                key.extend_from_slice(&b);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => key.push(0),
            Err(_) => return None,
        }
    }
    Some(key)
}

/// The files the identity sync writes (`(path, content, mode)`) and the
/// guest account owning them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    /// The guest user (home `/` when the files go onto a work disk).
    pub acct: GuestAccount,
    /// `authorized_keys`, and `.gitconfig` when the owner has a git
    /// identity.
    pub files: Vec<(String, Vec<u8>, u32)>,
}

/// Why the sync failed (the VM still boots; the start logs it).
#[derive(Debug, thiserror::Error)]
pub enum AuthSyncError {
    /// debugfs could not run or refused the image.
    #[error(
        "debugfs on {disk} failed: {reason}; install e2fsprogs, or set `[guest] sync_identity = false`"
    )]
    Debugfs {
        /// The disk image.
        disk: PathBuf,
        /// Why.
        reason: String,
    },
    /// banger's key could not be made.
    #[error(transparent)]
    Key(#[from] crate::workspace::ssh::GuestSshError),
    /// The guest account could not be read from the image.
    #[error(transparent)]
    Account(#[from] crate::common::GuestAccountError),
    /// A temporary file could not be written.
    #[error("cannot write a temporary file: {0}")]
    Temp(#[source] std::io::Error),
}

fn ext4_error(disk: &Path) -> impl Fn(banger_imagemgr::ImageMgrError) -> AuthSyncError + '_ {
    move |e| AuthSyncError::Debugfs {
        disk: disk.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Write `files` (`(path in guest, content, mode)`) into `disk` in one
/// batch (banger-imagemgr's `Ext4Edit`: one `debugfs -w` run, checked
/// afterwards), owned by `acct`. Directories on the way under the guest
/// user's home are made (or fixed to) the user's, `.ssh` mode 0700.
pub fn write_files(
    disk: &Path,
    acct: &GuestAccount,
    files: &[(String, Vec<u8>, u32)],
) -> Result<(), AuthSyncError> {
    let owner = Owner {
        uid: acct.uid,
        gid: acct.gid,
    };
    let home = Path::new(&acct.home);
    let fail = ext4_error(disk);
    let mut edit = Ext4Edit::new(disk).map_err(&fail)?;
    for (path, data, mode) in files {
        let mut under_home: Vec<&Path> = Path::new(path)
            .ancestors()
            .skip(1)
            .take_while(|d| d.starts_with(home) && *d != home)
            .collect();
        under_home.reverse();
        for d in under_home {
            let mode = if d.ends_with(".ssh") { 0o700 } else { 0o755 };
            let d = d.display().to_string();
            edit.mkdir_p(&d, mode, owner).map_err(&fail)?;
            edit.chown_dir(&d, mode, owner).map_err(&fail)?;
        }
        edit.write_file(path, data, *mode, owner).map_err(&fail)?;
    }
    edit.commit().map_err(&fail)
}

/// The owner's git identity as a `.gitconfig`, if any is set.
pub fn git_identity(home: &Path) -> Option<Vec<u8>> {
    let get = |key: &str| {
        let out = Command::new("git")
            .args(["config", "--global", "--get", key])
            .env("HOME", home)
            .env_remove("GIT_CONFIG_GLOBAL")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !v.is_empty() && !v.contains(['\n', '"', '\\'])).then_some(v)
    };
    let name = get("user.name");
    let email = get("user.email");
    if name.is_none() && email.is_none() {
        return None;
    }
    let mut s = String::from("# Written by banger from the owner's git config.\n[user]\n");
    if let Some(n) = name {
        s.push_str(&format!("\tname = \"{n}\"\n"));
    }
    if let Some(e) = email {
        s.push_str(&format!("\temail = \"{e}\"\n"));
    }
    Some(s.into_bytes())
}

impl WorkspaceService {
    /// Write the authorized keys and the git identity before boot: onto
    /// `work_disk` (whose root is the guest user's home) when the VM has
    /// one, else into the guest user's home on `root_disk`. The guest
    /// account comes from the root disk's `/etc/passwd`. Blocking.
    pub fn sync_identity(
        &self,
        root_disk: &Path,
        work_disk: Option<&Path>,
    ) -> Result<(), AuthSyncError> {
        let id = self.identity_files(root_disk, work_disk.is_some())?;
        write_files(work_disk.unwrap_or(root_disk), &id.acct, &id.files)
    }

    /// What [`WorkspaceService::sync_identity`] writes: the guest account
    /// from `root_disk`'s `/etc/passwd` (an image's root filesystem or a
    /// VM's root disk), and the files under its home, or at the root when
    /// `on_work_disk`. Blocking; runs `debugfs` and `git` only when their
    /// inputs changed since the last call ([`IdentityCache`]).
    pub fn identity_files(
        &self,
        root_disk: &Path,
        on_work_disk: bool,
    ) -> Result<IdentityFiles, AuthSyncError> {
        let keys = authorized_keys(&self.deps.ssh.key, &self.deps.home);
        let mut acct = self.identity.account(root_disk, &self.deps.guest.user)?;
        if on_work_disk {
            acct.home = "/".into();
        }
        let home = acct.home.trim_end_matches('/').to_string();
        let mut files = vec![(format!("{home}/.ssh/authorized_keys"), keys, 0o600)];
        if let Some(cfg) = self.identity.git_identity(&self.deps.home) {
            files.push((format!("{home}/.gitconfig"), cfg, 0o644));
        }
        Ok(IdentityFiles { acct, files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_testsupport::ext4::Mkfs;
    use banger_testsupport::{in_path, skip};

    /// Read-only debugfs request against `disk` (what the checks look at).
    fn debugfs(disk: &Path, _write: bool, request: &str) -> Result<String, String> {
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(request)
            .arg(disk)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn image(dir: &Path, passwd: Option<&str>) -> Option<PathBuf> {
        let mut fs = Mkfs::new().dir("etc");
        if let Some(p) = passwd {
            fs = fs.file("etc/passwd", p).dir("home/dev");
        }
        let img = dir.join("root.ext4");
        if let Err(why) = fs.build(&img, "16M") {
            skip!(return None; "vm_authsync", "{why}");
        }
        if !in_path("debugfs") {
            skip!(return None; "vm_authsync", "debugfs missing (e2fsprogs)");
        }
        Some(img)
    }

    #[test]
    fn writes_keys_and_identity_with_owner_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let Some(img) = image(
            dir.path(),
            Some("root:x:0:0::/root:/bin/sh\ndev:x:1000:1000::/home/dev:/bin/sh\n"),
        ) else {
            return;
        };
        let acct = guest_account(&img, "dev").unwrap();
        assert_eq!(
            acct,
            GuestAccount {
                uid: 1000,
                gid: 1000,
                home: "/home/dev".into()
            }
        );
        let files = vec![
            (
                "/home/dev/.ssh/authorized_keys".to_string(),
                b"ssh-ed25519 AAAA k\n".to_vec(),
                0o600,
            ),
            (
                "/home/dev/.gitconfig".to_string(),
                b"[user]\n\tname = \"A\"\n".to_vec(),
                0o644,
            ),
        ];
        write_files(&img, &acct, &files).unwrap();
        // Twice: replacing existing files works.
        write_files(&img, &acct, &files).unwrap();
        let stat = debugfs(&img, false, "stat /home/dev/.ssh/authorized_keys").unwrap();
        assert!(stat.contains("Mode:  0600"), "{stat}");
        assert!(stat.contains("User:  1000"), "{stat}");
        let ssh_dir = debugfs(&img, false, "stat /home/dev/.ssh").unwrap();
        assert!(ssh_dir.contains("Mode:  0700"), "{ssh_dir}");
        assert_eq!(
            debugfs(&img, false, "cat /home/dev/.gitconfig").unwrap(),
            "[user]\n\tname = \"A\"\n"
        );
        assert!(guest_account(&img, "nobody-here").is_err());
    }

    #[test]
    fn root_without_passwd_and_git_identity_from_home() {
        let dir = tempfile::tempdir().unwrap();
        let Some(img) = image(dir.path(), None) else {
            return;
        };
        let acct = guest_account(&img, "root").unwrap();
        assert_eq!(acct.home, "/root");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        assert_eq!(git_identity(&home), None);
        std::fs::write(
            home.join(".gitconfig"),
            "[user]\n\tname = Ada L\n\temail = ada@example.invalid\n",
        )
        .unwrap();
        let cfg = String::from_utf8(git_identity(&home).unwrap()).unwrap();
        assert!(
            cfg.contains("name = \"Ada L\"") && cfg.contains("email = \"ada@example.invalid\""),
            "{cfg}"
        );
    }

    #[test]
    fn account_cache_follows_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let Some(img) = image(dir.path(), Some("dev:x:1000:1000::/home/dev:/bin/sh\n")) else {
            return;
        };
        let cache = IdentityCache::default();
        assert_eq!(cache.account(&img, "dev").unwrap().uid, 1000);
        assert_eq!(cache.account(&img, "dev").unwrap().uid, 1000);
        let root = GuestAccount {
            uid: 0,
            gid: 0,
            home: "/root".into(),
        };
        write_files(
            &img,
            &root,
            &[(
                "/etc/passwd".into(),
                b"dev:x:2000:2000::/home/dev:/bin/sh\n".to_vec(),
                0o644,
            )],
        )
        .unwrap();
        assert_eq!(
            cache.account(&img, "dev").unwrap().uid,
            2000,
            "a rewritten disk is read again"
        );
    }

    #[test]
    fn git_config_key_changes_with_the_files_and_skips_includes() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let none = git_config_key(home).unwrap();
        std::fs::write(home.join(".gitconfig"), "[user]\n\tname = A\n").unwrap();
        let a = git_config_key(home).unwrap();
        assert_ne!(a, none);
        assert_eq!(git_config_key(home).unwrap(), a);
        std::fs::write(home.join(".gitconfig"), "[user]\n\tname = B\n").unwrap();
        assert_ne!(git_config_key(home).unwrap(), a);
        std::fs::write(
            home.join(".gitconfig"),
            "[include]\n\tpath = other\n[user]\n\tname = B\n",
        )
        .unwrap();
        assert_eq!(git_config_key(home), None, "includes are never cached");
        let cache = IdentityCache::default();
        std::fs::write(home.join(".gitconfig"), "[user]\n\tname = C\n").unwrap();
        if in_path("git") {
            let first = cache.git_identity(home).unwrap();
            assert!(String::from_utf8_lossy(&first).contains("name = \"C\""));
            std::fs::write(home.join(".gitconfig"), "[user]\n\tname = D\n").unwrap();
            let second = cache.git_identity(home).unwrap();
            assert!(String::from_utf8_lossy(&second).contains("name = \"D\""));
        }
    }
}
