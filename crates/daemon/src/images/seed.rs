//! Image seeding: what every published image gets written into it, and its
//! work seed.
//!
//! Runs on a blocking thread in the staging directory, before the
//! publication atom (`ImageService::publish` calls [`seed_staged`] for
//! every path: register, pull, bundle, promote, build). The root filesystem
//! is edited without mounting (`banger_imagemgr::Ext4Edit`, `debugfs -w`):
//!
//! 1. `~/.ssh/authorized_keys` of the guest user (`[guest] user`; uid, gid
//!    and home from the image's `/etc/passwd`): banger's public key plus the
//!    owner's `~/.ssh/id_*.pub`, modes 0700/0600;
//! 2. banger's guest bits (`banger_guest::payload`) when the agent binary
//!    (`[guest] agent`) exists; otherwise the image is published without
//!    them, with a warning (and `doctor` says so);
//! 3. an `/etc/fstab` line mounting the work disk (`/dev/vdb`) on the guest
//!    user's home.
//!
//! The work seed (`work-seed.ext4`, beside `rootfs.ext4`) becomes each VM's
//! work disk: a bundle's own, or one built from the guest user's home as it
//! is in the image (dumped with debugfs, `mkfs.ext4 -d`, everything owned
//! by the guest user); it gets the same authorized_keys at its root.
//!
//! Seeding is idempotent: entries that already have the wanted content are
//! not rewritten, so re-seeding an exported and re-imported image leaves
//! its root filesystem byte-identical.

use std::path::{Path, PathBuf};

use banger_api::ImageSeed;
use banger_guest::SeedContent;
use banger_imagemgr::{Ext4Edit, ImageMgrError, Owner};

use crate::common::{GuestAccount, GuestAccountError, guest_account};
use crate::config::Config;

/// The work seed's file name in an image directory.
pub const WORK_SEED: &str = "work-seed.ext4";

/// Free space a freshly built work seed gets over the home's content.
const WORK_SEED_HEADROOM: u64 = 64 << 20;

/// Why seeding failed (the image is not published).
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The root filesystem or the work seed could not be edited.
    #[error("cannot seed the image")]
    Image(#[from] ImageMgrError),
    /// The guest user could not be looked up.
    #[error("cannot seed the image")]
    Account(#[from] GuestAccountError),
    /// The agent binary exists but cannot be read.
    #[error("cannot read the guest agent {path} (fix `[guest] agent` or make the file readable)")]
    Agent {
        /// The agent path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A temporary directory could not be made.
    #[error("cannot seed the image: no temporary directory")]
    Temp(#[source] std::io::Error),
}

/// Where seeding takes its inputs from (fixed at daemon start).
#[derive(Debug, Clone)]
pub struct SeedSettings {
    /// The guest user whose home gets the keys.
    pub guest_user: String,
    /// banger's private key (its `.pub` is authorized).
    pub key: PathBuf,
    /// The owner's home (`~/.ssh/id_*.pub`).
    pub owner_home: PathBuf,
    /// The `banger-guest` executable.
    pub agent: PathBuf,
}

impl SeedSettings {
    /// From the configuration: `[guest] user`, `ssh_key`, `agent`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            guest_user: config.guest.user.clone(),
            key: config.guest.key_path(),
            owner_home: crate::common::owner_home(),
            agent: config.guest.agent_path(),
        }
    }

    /// The current inputs: the keys (banger's pair is made when missing)
    /// and the agent as they are now.
    pub fn inputs(&self) -> Result<SeedInputs, SeedError> {
        let keys = crate::common::authorized_keys(&self.key, &self.owner_home);
        self.inputs_with(keys)
    }

    /// Like [`inputs`](Self::inputs), creating nothing (doctor).
    pub fn inputs_readonly(&self) -> Result<SeedInputs, SeedError> {
        let keys = crate::common::existing_authorized_keys(&self.key, &self.owner_home);
        self.inputs_with(keys)
    }

    fn inputs_with(&self, authorized_keys: Vec<u8>) -> Result<SeedInputs, SeedError> {
        let agent = match std::fs::read(&self.agent) {
            Ok(b) => {
                if !banger_guest::is_static_elf(&b) {
                    tracing::warn!(
                        agent = %self.agent.display(),
                        "the guest agent is not a static executable; it runs only in guests whose C library matches the host's (build it with `make guest-agent`)"
                    );
                }
                Some(b)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(SeedError::Agent {
                    path: self.agent.clone(),
                    source,
                });
            }
        };
        Ok(SeedInputs {
            guest_user: self.guest_user.clone(),
            authorized_keys,
            agent,
        })
    }
}

/// The bytes seeding writes.
#[derive(Debug, Clone)]
pub struct SeedInputs {
    /// The guest user.
    pub guest_user: String,
    /// The authorized_keys content.
    pub authorized_keys: Vec<u8>,
    /// The agent binary, when available.
    pub agent: Option<Vec<u8>>,
}

impl SeedInputs {
    /// `sha256:<hex>` of the authorized_keys.
    pub fn key_fingerprint(&self) -> String {
        sha256(&self.authorized_keys)
    }

    /// `sha256:<hex>` of the agent.
    pub fn agent_sha256(&self) -> Option<String> {
        self.agent.as_deref().map(sha256)
    }

    /// Why an image seeded as `seed` is stale against these inputs, or
    /// `None` when it is current.
    pub fn staleness(&self, seed: Option<&ImageSeed>) -> Option<String> {
        let Some(seed) = seed else {
            return Some("never seeded".into());
        };
        let mut why = Vec::new();
        if seed.guest_user != self.guest_user {
            why.push(format!(
                "guest user {} → {}",
                seed.guest_user, self.guest_user
            ));
        }
        if seed.key_fingerprint != self.key_fingerprint() {
            why.push("SSH keys changed".to_string());
        }
        if seed.agent_sha256 != self.agent_sha256() {
            why.push(match (&seed.agent_sha256, self.agent.is_some()) {
                (None, true) => "guest agent now available".to_string(),
                (Some(_), false) => "guest agent no longer available".to_string(),
                _ => "guest agent changed".to_string(),
            });
        }
        (!why.is_empty()).then(|| why.join(", "))
    }
}

fn sha256(b: &[u8]) -> String {
    let mut h = banger_imagemgr::Hasher::new();
    h.update(b);
    h.finish().to_string()
}

/// Seed the image files in `dir` (`rootfs.ext4`, and `work-seed.ext4` when
/// present): the root filesystem, then the work seed (built when absent).
/// Blocking.
pub fn seed_staged(dir: &Path, inputs: &SeedInputs) -> Result<ImageSeed, SeedError> {
    let rootfs = dir.join("rootfs.ext4");
    let acct = seed_rootfs(&rootfs, inputs)?;
    let work = dir.join(WORK_SEED);
    if !work.is_file() {
        build_work_seed(&rootfs, &acct, &work)?;
    }
    seed_work_disk(&work, &acct, &inputs.authorized_keys)?;
    Ok(ImageSeed {
        guest_user: inputs.guest_user.clone(),
        key_fingerprint: inputs.key_fingerprint(),
        agent_sha256: inputs.agent_sha256(),
        seeded_at: banger_store::now_millis(),
    })
}

/// Write keys, guest bits and the fstab line into `rootfs`. Returns the
/// guest account.
pub fn seed_rootfs(rootfs: &Path, inputs: &SeedInputs) -> Result<GuestAccount, SeedError> {
    let acct = guest_account(rootfs, &inputs.guest_user)?;
    let owner = Owner {
        uid: acct.uid,
        gid: acct.gid,
    };
    let home = acct.home.trim_end_matches('/');
    let home = if home.is_empty() { "/" } else { home };
    let mut edit = Ext4Edit::new(rootfs)?;
    let ssh_dir = format!("{}/.ssh", home.trim_end_matches('/'));
    edit.mkdir_p(&ssh_dir, 0o700, owner)?;
    write_if_changed(
        &mut edit,
        rootfs,
        &format!("{ssh_dir}/authorized_keys"),
        &inputs.authorized_keys,
        0o600,
        owner,
    )?;
    if let Some(agent) = &inputs.agent {
        for f in banger_guest::payload(agent) {
            match &f.content {
                SeedContent::Dir => edit.mkdir_p(&f.path, f.mode, Owner::ROOT)?,
                SeedContent::File(data) => {
                    write_if_changed(&mut edit, rootfs, &f.path, data, f.mode, Owner::ROOT)?
                }
                SeedContent::Symlink(target) => {
                    if link_target(rootfs, &f.path)?.as_deref() != Some(target.as_str()) {
                        edit.symlink(&f.path, target, Owner::ROOT)?;
                    }
                }
            }
        }
    }
    let fstab = banger_imagemgr::ext4_read_file(rootfs, "/etc/fstab")?.unwrap_or_default();
    let line = fstab_line(home);
    let present = String::from_utf8_lossy(&fstab)
        .lines()
        .any(|l| l.split_whitespace().next() == Some("/dev/vdb"));
    if !present {
        let mut new = fstab;
        if !new.is_empty() && !new.ends_with(b"\n") {
            new.push(b'\n');
        }
        new.extend_from_slice(line.as_bytes());
        edit.mkdir_p("/etc", 0o755, Owner::ROOT)?;
        edit.write_file("/etc/fstab", &new, 0o644, Owner::ROOT)?;
    }
    edit.commit()?;
    Ok(acct)
}

/// The fstab line mounting the work disk on `home`. `nofail` keeps a boot
/// without the disk going; `x-systemd.before=` orders the SSH server and
/// the agent after the mount, so a guest that answers (readiness) has its
/// home mounted (`nofail` alone lets them start before it). No boot-time
/// fsck (pass 0): ext4 replays its journal at mount, and the fsck was
/// 0.4 s on the path to SSH under the QEMU front.
pub fn fstab_line(home: &str) -> String {
    format!("/dev/vdb {home} ext4 {WORK_MOUNT_OPTIONS} 0 0\n")
}

/// Mount options of the work disk's fstab line.
/// `x-systemd.device-timeout=20s` bounds that wait when a VM has no work
/// disk (systemd's default is 90 s); under TCG on a loaded 2-core machine
/// the disk showed up 7 s into userspace.
pub const WORK_MOUNT_OPTIONS: &str = "defaults,nofail,x-systemd.device-timeout=20s,x-systemd.before=ssh.service,x-systemd.before=banger-guest.service";

/// Build `work` from the guest user's home in `rootfs`.
fn build_work_seed(rootfs: &Path, acct: &GuestAccount, work: &Path) -> Result<(), SeedError> {
    let tmp = tempfile::tempdir().map_err(SeedError::Temp)?;
    let home = if acct.home.trim_end_matches('/').is_empty() {
        "/"
    } else {
        acct.home.as_str()
    };
    let tree = banger_imagemgr::dump_dir(rootfs, home, &tmp.path().join("home"))?;
    let mode = home_mode(rootfs, home)?;
    banger_imagemgr::build_ext4_from_dir(
        &tree,
        work,
        WORK_SEED_HEADROOM,
        Owner {
            uid: acct.uid,
            gid: acct.gid,
        },
        mode,
    )?;
    Ok(())
}

/// authorized_keys at the root of a work disk (the guest user's home).
pub fn seed_work_disk(work: &Path, acct: &GuestAccount, keys: &[u8]) -> Result<(), SeedError> {
    let owner = Owner {
        uid: acct.uid,
        gid: acct.gid,
    };
    let mut edit = Ext4Edit::new(work)?;
    edit.mkdir_p("/.ssh", 0o700, owner)?;
    write_if_changed(&mut edit, work, "/.ssh/authorized_keys", keys, 0o600, owner)?;
    edit.commit()?;
    Ok(())
}

fn write_if_changed(
    edit: &mut Ext4Edit,
    disk: &Path,
    path: &str,
    data: &[u8],
    mode: u32,
    owner: Owner,
) -> Result<(), ImageMgrError> {
    let stat = stat(disk, path)?;
    let same_meta = stat.as_deref().is_some_and(|s| {
        s.contains(&format!("Mode:  0{:o}", mode & 0o7777))
            && s.contains(&format!("User: {:>5}", owner.uid))
            && s.contains(&format!("Group: {:>5}", owner.gid))
    });
    if same_meta && banger_imagemgr::ext4_read_file(disk, path)?.as_deref() == Some(data) {
        return Ok(());
    }
    edit.write_file(path, data, mode, owner)
}

/// `debugfs stat` output of `path`, `None` when missing.
fn stat(disk: &Path, path: &str) -> Result<Option<String>, ImageMgrError> {
    if !banger_imagemgr::ext4_exists(disk, path)? {
        return Ok(None);
    }
    let out = std::process::Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat \"{path}\""))
        .arg(disk)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| ImageMgrError::Tool {
            program: "debugfs",
            path: disk.to_path_buf(),
            message: format!("cannot run debugfs (install e2fsprogs): {e}"),
        })?;
    Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// The target of symlink `path`, `None` when it is missing or no symlink.
fn link_target(disk: &Path, path: &str) -> Result<Option<String>, ImageMgrError> {
    Ok(stat(disk, path)?.and_then(|s| {
        if !s.contains("Type: symlink") {
            return None;
        }
        s.lines()
            .find_map(|l| l.trim().strip_prefix("Fast link dest: "))
            .map(|t| t.trim().trim_matches('"').to_string())
    }))
}

/// Permission bits of directory `path` (0755 when unknown).
fn home_mode(disk: &Path, path: &str) -> Result<u32, ImageMgrError> {
    Ok(stat(disk, path)?
        .and_then(|s| {
            let i = s.find("Mode:")?;
            let m = s[i + 5..].split_whitespace().next()?;
            u32::from_str_radix(m, 8).ok()
        })
        .unwrap_or(0o755))
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_testsupport::ext4::{Mkfs, fsck_clean};
    use banger_testsupport::{in_path, skip};

    fn image(dir: &Path) -> Option<PathBuf> {
        let img = dir.join("rootfs.ext4");
        let built = Mkfs::new()
            .file("home/dev/.profile", "export DEV=1\n")
            .file(
                "etc/passwd",
                "root:x:0:0::/root:/bin/sh\ndev:x:1000:1000::/home/dev:/bin/sh\n",
            )
            .file("etc/fstab", "proc /proc proc defaults 0 0")
            .build(&img, "32M");
        if let Err(why) = built {
            skip!(return None; "image_seed", "{why}");
        }
        if !in_path("debugfs") {
            skip!(return None; "image_seed", "debugfs missing (install e2fsprogs)");
        }
        Some(img)
    }

    fn read(disk: &Path, p: &str) -> String {
        String::from_utf8(banger_imagemgr::ext4_read_file(disk, p).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn seeds_keys_guest_bits_fstab_and_work_seed_idempotently() {
        let t = tempfile::tempdir().unwrap();
        let Some(img) = image(t.path()) else { return };
        let inputs = SeedInputs {
            guest_user: "dev".into(),
            authorized_keys: b"ssh-ed25519 AAAA banger\n".to_vec(),
            agent: Some(b"\x7fELF agent".to_vec()),
        };
        let seed = seed_staged(t.path(), &inputs).unwrap();
        assert_eq!(seed.key_fingerprint, inputs.key_fingerprint());
        assert_eq!(seed.agent_sha256, inputs.agent_sha256());
        assert_eq!(
            read(&img, "/home/dev/.ssh/authorized_keys"),
            "ssh-ed25519 AAAA banger\n"
        );
        let st = stat(&img, "/home/dev/.ssh").unwrap().unwrap();
        assert!(
            st.contains("Mode:  0700") && st.contains("User:  1000"),
            "{st}"
        );
        assert_eq!(read(&img, banger_guest::AGENT_PATH), "\x7fELF agent");
        assert!(
            stat(&img, banger_guest::AGENT_PATH)
                .unwrap()
                .unwrap()
                .contains("Mode:  0755")
        );
        assert_eq!(
            link_target(
                &img,
                "/etc/systemd/system/multi-user.target.wants/banger-guest.service"
            )
            .unwrap()
            .as_deref(),
            Some("/etc/systemd/system/banger-guest.service")
        );
        assert_eq!(
            read(&img, "/etc/fstab"),
            format!(
                "proc /proc proc defaults 0 0\n/dev/vdb /home/dev ext4 {WORK_MOUNT_OPTIONS} 0 0\n"
            )
        );
        let work = t.path().join(WORK_SEED);
        assert_eq!(read(&work, "/.profile"), "export DEV=1\n");
        assert_eq!(
            read(&work, "/.ssh/authorized_keys"),
            "ssh-ed25519 AAAA banger\n"
        );
        assert!(stat(&work, "/").unwrap().unwrap().contains("User:  1000"));
        assert!(
            stat(&work, "/.profile")
                .unwrap()
                .unwrap()
                .contains("User:  1000")
        );
        fsck_clean(&img);
        fsck_clean(&work);
        assert_eq!(inputs.staleness(Some(&seed)), None);
        assert!(inputs.staleness(None).is_some());

        // Seeding again with the same inputs changes nothing at all.
        let before = banger_imagemgr::sha256_file(&img).unwrap();
        seed_staged(t.path(), &inputs).unwrap();
        assert_eq!(banger_imagemgr::sha256_file(&img).unwrap(), before);

        // New keys and no agent: keys rewritten, stale reasons named.
        let newer = SeedInputs {
            authorized_keys: b"ssh-ed25519 BBBB owner\n".to_vec(),
            agent: None,
            ..inputs
        };
        let why = newer.staleness(Some(&seed)).unwrap();
        assert!(why.contains("SSH keys") && why.contains("agent"), "{why}");
        seed_staged(t.path(), &newer).unwrap();
        assert_eq!(
            read(&img, "/home/dev/.ssh/authorized_keys"),
            "ssh-ed25519 BBBB owner\n"
        );
        assert_eq!(
            read(&work, "/.ssh/authorized_keys"),
            "ssh-ed25519 BBBB owner\n"
        );
        assert_eq!(read(&img, "/etc/fstab").matches("/dev/vdb").count(), 1);
        fsck_clean(&img);
    }

    #[test]
    fn root_user_without_passwd_or_fstab() {
        let t = tempfile::tempdir().unwrap();
        let img = t.path().join("rootfs.ext4");
        if let Err(why) = Mkfs::new().build(&img, "16M") {
            skip!("image_seed", "{why}");
        }
        let inputs = SeedInputs {
            guest_user: "root".into(),
            authorized_keys: b"k\n".to_vec(),
            agent: None,
        };
        seed_staged(t.path(), &inputs).unwrap();
        assert_eq!(read(&img, "/root/.ssh/authorized_keys"), "k\n");
        assert_eq!(
            read(&img, "/etc/fstab"),
            format!("/dev/vdb /root ext4 {WORK_MOUNT_OPTIONS} 0 0\n")
        );
        assert!(!banger_imagemgr::ext4_exists(&img, banger_guest::AGENT_PATH).unwrap());
        assert_eq!(
            read(&t.path().join(WORK_SEED), "/.ssh/authorized_keys"),
            "k\n"
        );
        let bad = SeedInputs {
            guest_user: "dev".into(),
            ..inputs
        };
        let e = crate::common::error::error_chain(&seed_staged(t.path(), &bad).unwrap_err());
        assert!(e.contains("[guest] user"), "{e}");
    }
}
