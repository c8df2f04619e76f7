//! Who banger is inside a guest: banger's SSH key pair, the
//! `authorized_keys` it writes into guests (its key plus the owner's own),
//! and the guest user's account as an image's `/etc/passwd` has it. Image
//! seeding (`images/`) and the boot-time identity sync (`workspace/`) both
//! write them.

use std::path::{Path, PathBuf};

/// banger's key pair could not be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot create {path}: {reason}; check that ssh-keygen is installed and the directory is writable"
)]
pub struct KeygenError {
    /// The key path.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// The guest user could not be looked up in an image.
#[derive(Debug, thiserror::Error)]
#[error(
    "debugfs on {disk} failed: {reason}; install e2fsprogs, or set `[guest] sync_identity = false`"
)]
pub struct GuestAccountError {
    /// The disk image.
    pub disk: PathBuf,
    /// Why.
    pub reason: String,
}

/// Create banger's key pair at `key` unless it exists.
pub fn ensure_keypair(key: &Path) -> Result<(), KeygenError> {
    let fail = |reason: String| KeygenError {
        path: key.to_path_buf(),
        reason,
    };
    if key.exists() && key.with_extension("pub").exists() {
        return Ok(());
    }
    if let Some(dir) = key.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "banger", "-f"])
        .arg(key)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(())
}

/// A guest account as the image's `/etc/passwd` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestAccount {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
    /// Home directory.
    pub home: String,
}

/// Look `user` up in the image's `/etc/passwd`; root when the file or the
/// entry is missing and the user is root.
pub fn guest_account(disk: &Path, user: &str) -> Result<GuestAccount, GuestAccountError> {
    let passwd = banger_imagemgr::ext4_read_file(disk, "/etc/passwd")
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 6
            && f[0] == user
            && let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse())
        {
            return Ok(GuestAccount {
                uid,
                gid,
                home: f[5].to_string(),
            });
        }
    }
    if user == "root" {
        return Ok(GuestAccount {
            uid: 0,
            gid: 0,
            home: "/root".into(),
        });
    }
    Err(GuestAccountError {
        disk: disk.to_path_buf(),
        reason: format!("the image has no user {user:?} in /etc/passwd; fix `[guest] user`"),
    })
}

/// banger's public key (the pair is made on first use) plus the owner's own
/// `~/.ssh/id_*.pub` and the plain lines of the owner's
/// `~/.ssh/authorized_keys` (see [`login_keys`]): the authorized_keys
/// banger writes into guests. When banger's key cannot be made, the owner's
/// keys alone (logged).
pub fn authorized_keys(key: &Path, owner_home: &Path) -> Vec<u8> {
    if let Err(e) = ensure_keypair(key) {
        tracing::warn!(error = %e, "cannot make banger's SSH key; authorizing the owner's keys only");
    }
    existing_authorized_keys(key, owner_home)
}

/// [`authorized_keys`] without making banger's key pair (doctor).
pub fn existing_authorized_keys(key: &Path, owner_home: &Path) -> Vec<u8> {
    let mut keys = std::fs::read(key.with_extension("pub")).unwrap_or_default();
    for own in ["id_ed25519.pub", "id_ecdsa.pub", "id_rsa.pub"] {
        if let Ok(k) = std::fs::read(owner_home.join(".ssh").join(own)) {
            if !keys.ends_with(b"\n") && !keys.is_empty() {
                keys.push(b'\n');
            }
            keys.extend_from_slice(&k);
        }
    }
    if let Ok(text) = std::fs::read_to_string(owner_home.join(".ssh/authorized_keys")) {
        for line in login_keys(&text) {
            if !keys.ends_with(b"\n") && !keys.is_empty() {
                keys.push(b'\n');
            }
            keys.extend_from_slice(line.as_bytes());
            keys.push(b'\n');
        }
    }
    keys
}

/// The keys of an `authorized_keys` text that may log in to guests too:
/// lines without options (they start with the key type), so whoever can
/// log in as the owner — and so could run `banger vm ssh` there — reaches
/// the guests directly (`ssh NAME.vm` through `ProxyJump` from another
/// machine, docs/remote.md). A line with options (`from=`, `command=`,
/// `restrict`, `cert-authority`…) is a restricted login and is left out.
pub fn login_keys(text: &str) -> Vec<&str> {
    const TYPES: [&str; 4] = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"];
    text.lines()
        .map(str::trim)
        .filter(|l| TYPES.iter().any(|t| l.starts_with(t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_login_keys_are_authorized_and_restricted_ones_are_not() {
        let text = "# comment\n\
            ssh-ed25519 AAAAlaptop me@laptop\n\
            from=\"10.0.0.0/8\" ssh-ed25519 AAAAfrom x\n\
            command=\"backup\",restrict ssh-rsa AAAAbackup y\n\
            cert-authority ssh-ed25519 AAAAca z\n\
              ecdsa-sha2-nistp256 AAAAecdsa w  \n\
            sk-ssh-ed25519@openssh.com AAAAsk v\n\n";
        assert_eq!(
            login_keys(text),
            [
                "ssh-ed25519 AAAAlaptop me@laptop",
                "ecdsa-sha2-nistp256 AAAAecdsa w",
                "sk-ssh-ed25519@openssh.com AAAAsk v"
            ]
        );
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir(home.path().join(".ssh")).unwrap();
        std::fs::write(
            home.path().join(".ssh/id_ed25519.pub"),
            "ssh-ed25519 AAAAown o",
        )
        .unwrap();
        std::fs::write(home.path().join(".ssh/authorized_keys"), text).unwrap();
        let keys = existing_authorized_keys(&home.path().join("none/key"), home.path());
        assert_eq!(
            String::from_utf8(keys).unwrap(),
            "ssh-ed25519 AAAAown o\nssh-ed25519 AAAAlaptop me@laptop\n\
             ecdsa-sha2-nistp256 AAAAecdsa w\nsk-ssh-ed25519@openssh.com AAAAsk v\n"
        );
    }
}
