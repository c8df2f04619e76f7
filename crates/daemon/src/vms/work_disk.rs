//! A VM's work disk, made at its first start by cloning a **template**: a
//! ready-made work disk per image, size and identity, kept in the image's
//! directory (`<image>/work-templates/<size>-<key>.ext4`).
//!
//! A template is the image's work seed copied, grown to the VM's work-disk
//! size (`resize2fs`), with the owner's keys and git identity written into
//! it (`workspace::write_files`, when `[guest] sync_identity`). Its key
//! hashes everything its content comes from: the seed file's version
//! (device, inode, size, times: a `managed-seed refresh` renames a new seed
//! into place), the size, the guest account and the identity files. A
//! template is built once, under `templates_mu` held alone (clones hold it
//! shared), in a `.partial` file that is synced and renamed into place, so
//! a crash never leaves a template anyone would use (reconcile removes the
//! `.partial` files); building one removes the other templates of the same
//! size (stale). Every later create
//! with the same inputs makes its work disk with one reflink or sparse copy
//! and runs no process.
//!
//! The clone keeps the template's filesystem UUID, as the copy of the seed
//! did before templates: the guest mounts its work disk as `/dev/vdb`
//! (`images/seed.rs` writes that fstab line), never by UUID, and no host
//! side mounts work disks, so VMs sharing a UUID never meet.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_api::{Image, Vm};

use crate::common::error::error_chain;
use crate::common::{FileVersion, blocking, work_disk, work_templates_dir};
use crate::vms::error::VmError;
use crate::vms::service::VMService;
use crate::workspace::IdentityFiles;

/// The version of the template format (part of every key).
const TEMPLATE_FORMAT: &[u8] = b"banger work-disk template 1\0";

/// A VM's work disk after [`VMService::ensure_work_disk`].
#[derive(Debug)]
pub(crate) struct WorkDisk {
    /// The disk; `None` for a VM without one.
    pub path: Option<PathBuf>,
    /// The disk was just made from a template holding the current keys
    /// and git identity: no sync is needed for this boot.
    pub identity_written: bool,
}

/// What a template is made of.
struct TemplateInputs<'a> {
    seed: &'a Path,
    size: u64,
    identity: Option<&'a IdentityFiles>,
}

impl TemplateInputs<'_> {
    /// `<size>-<key>.ext4`; `None` when the seed cannot be stat'ed.
    fn file_name(&self) -> Option<String> {
        let seed = FileVersion::of(self.seed)?;
        let mut h = banger_imagemgr::Hasher::new();
        h.update(TEMPLATE_FORMAT);
        h.update(&seed.bytes());
        h.update(&self.size.to_le_bytes());
        match self.identity {
            None => h.update(&[0]),
            Some(id) => {
                h.update(&[1]);
                h.update(&id.acct.uid.to_le_bytes());
                h.update(&id.acct.gid.to_le_bytes());
                for (path, data, mode) in &id.files {
                    for part in [path.as_bytes(), data.as_slice()] {
                        h.update(&(part.len() as u64).to_le_bytes());
                        h.update(part);
                    }
                    h.update(&mode.to_le_bytes());
                }
            }
        }
        let digest = h.finish();
        let key = digest.hex();
        Some(format!("{}-{}.ext4", self.size, &key[..32.min(key.len())]))
    }
}

/// Whether `template` is a finished template of `size` bytes.
fn usable(template: &Path, size: u64) -> bool {
    std::fs::metadata(template).is_ok_and(|m| m.is_file() && m.len() == size)
}

/// Build the template `dir/name` from `inputs` (blocking). Returns false,
/// leaving nothing, when the identity files could not be written (the
/// caller builds one without them).
fn build_template(dir: &Path, name: &str, inputs: &TemplateInputs<'_>) -> Result<bool, VmError> {
    std::fs::create_dir_all(dir).map_err(VmError::io("cannot create", dir))?;
    let partial = dir.join(format!(".{name}.partial"));
    let _ = std::fs::remove_file(&partial);
    let made = (|| -> Result<bool, VmError> {
        banger_imagemgr::clone_or_copy(inputs.seed, &partial)?;
        if banger_imagemgr::grow_file(&partial, inputs.size)? {
            banger_imagemgr::resize_ext4(&partial)?;
        }
        if let Some(id) = inputs.identity
            && let Err(e) = crate::workspace::write_files(&partial, &id.acct, &id.files)
        {
            tracing::warn!(error = %error_chain(&e), "cannot write keys and git identity into a work-disk template; making one without them");
            return Ok(false);
        }
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(VmError::io("cannot sync", &partial))?;
        let template = dir.join(name);
        std::fs::rename(&partial, &template).map_err(VmError::io("cannot rename", &partial))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(true)
    })();
    if matches!(made, Ok(true)) {
        remove_stale(dir, name, inputs.size);
        tracing::info!(template = %dir.join(name).display(), "work-disk template made");
    } else {
        let _ = std::fs::remove_file(&partial);
    }
    made
}

/// Remove the templates of `size` in `dir` other than `keep`.
fn remove_stale(dir: &Path, keep: &str, size: u64) {
    let prefix = format!("{size}-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name != keep && name.starts_with(&prefix) && name.ends_with(".ext4") {
            match std::fs::remove_file(e.path()) {
                Ok(()) => {
                    tracing::debug!(template = %e.path().display(), "stale work-disk template removed")
                }
                Err(err) => {
                    tracing::warn!(template = %e.path().display(), error = %err, "cannot remove a stale work-disk template")
                }
            }
        }
    }
}

/// Remove the `.partial` files an interrupted template build left in the
/// template directories under `images_dir` (`<state>/images`). Returns how
/// many. Reconcile runs it before the socket is served.
pub(crate) fn sweep_template_partials(images_dir: &Path) -> usize {
    let Ok(images) = std::fs::read_dir(images_dir) else {
        return 0;
    };
    let mut removed = 0;
    for image in images.flatten() {
        let Ok(entries) = std::fs::read_dir(work_templates_dir(&image.path())) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".partial") && std::fs::remove_file(e.path()).is_ok() {
                tracing::info!(file = %e.path().display(), "removed an interrupted work-disk template");
                removed += 1;
            }
        }
    }
    removed
}

impl VMService {
    /// The VM's work disk, made from a template at its first start: the
    /// template (built when missing) is cloned (reflink or sparse) to
    /// `work.ext4.partial`, then renamed into place, so a failed or
    /// interrupted first start leaves nothing a later start would trust.
    /// `path` is `None` for a VM without one (size 0, or an image without a
    /// work seed). Kept across stop/start; `vm delete` removes it with the
    /// VM's directory.
    pub(crate) async fn ensure_work_disk(
        self: &Arc<Self>,
        vm: &Vm,
        image: &Image,
    ) -> Result<WorkDisk, VmError> {
        let dir = self.layout.vm_dir(&vm.id);
        let disk = work_disk(&dir);
        let none = |path| WorkDisk {
            path,
            identity_written: false,
        };
        if disk.is_file() {
            return Ok(none(Some(disk)));
        }
        if vm.work_disk_bytes == 0 {
            return Ok(none(None));
        }
        let Some(seed) = image
            .work_seed_path
            .as_deref()
            .map(PathBuf::from)
            .filter(|p| p.is_file())
        else {
            tracing::warn!(vm = %vm.name, image = %image.name, "the image has no work seed; booting without a work disk (run `banger managed-seed refresh`)");
            return Ok(none(None));
        };
        let mut identity = None;
        if self.config.guest.sync_identity {
            let ws = Arc::clone(&self.ws);
            let rootfs = PathBuf::from(&image.rootfs_path);
            match blocking(move || Ok::<_, VmError>(ws.identity_files(&rootfs, true))).await? {
                Ok(id) => identity = Some(id),
                // The sync after this reports it again (and the VM boots).
                Err(e) => {
                    tracing::debug!(error = %error_chain(&e), "no identity for the work-disk template")
                }
            }
        }
        let templates = work_templates_dir(&self.layout.image_dir(&image.id));
        // Clones hold `templates_mu` shared, a build (which removes the
        // stale templates of its size) holds it alone: no template goes
        // while it is being cloned. A template another build replaced in
        // between is looked for again.
        for _ in 0..3 {
            let inputs = TemplateInputs {
                seed: &seed,
                size: vm.work_disk_bytes,
                identity: identity.as_ref(),
            };
            let name = inputs.file_name().ok_or_else(|| VmError::Vmm {
                vm: vm.name.clone(),
                message: format!(
                    "cannot read the work seed {}; run `banger managed-seed refresh`",
                    seed.display()
                ),
            })?;
            let template = templates.join(&name);
            {
                let _clone = self.templates_mu.read().await;
                if usable(&template, vm.work_disk_bytes) {
                    let (dir, disk) = (dir.clone(), disk.clone());
                    blocking(move || clone_template(&template, &dir, &disk)).await?;
                    return Ok(WorkDisk {
                        path: Some(work_disk(&self.layout.vm_dir(&vm.id))),
                        identity_written: identity.is_some(),
                    });
                }
            }
            let _build = self.templates_mu.write().await;
            if usable(&template, vm.work_disk_bytes) {
                continue;
            }
            let (d, n, s, size, id) = (
                templates.clone(),
                name.clone(),
                seed.clone(),
                vm.work_disk_bytes,
                identity.clone(),
            );
            let built = blocking(move || {
                build_template(
                    &d,
                    &n,
                    &TemplateInputs {
                        seed: &s,
                        size,
                        identity: id.as_ref(),
                    },
                )
            })
            .await?;
            if !built {
                identity = None;
            }
        }
        Err(VmError::Conflict(format!(
            "the work-disk template of VM {} was replaced while it was being made (keys or git identity changing meanwhile?); start the VM again",
            vm.name
        )))
    }
}

/// Clone `template` to `dir/work.ext4.partial`, then rename it to `disk`
/// (blocking); nothing is left on failure.
fn clone_template(template: &Path, dir: &Path, disk: &Path) -> Result<(), VmError> {
    let partial = dir.join("work.ext4.partial");
    let _ = std::fs::remove_file(&partial);
    let made = banger_imagemgr::clone_or_copy(template, &partial)
        .map_err(VmError::from)
        .and_then(|_| {
            std::fs::rename(&partial, disk).map_err(VmError::io("cannot rename", &partial))
        });
    if made.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::GuestAccount;

    #[test]
    fn template_names_follow_every_input() {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("work-seed.ext4");
        std::fs::write(&seed, b"seed v1").unwrap();
        let id = |key: &str| IdentityFiles {
            acct: GuestAccount {
                uid: 1000,
                gid: 1000,
                home: "/".into(),
            },
            files: vec![("/.ssh/authorized_keys".into(), key.into(), 0o600)],
        };
        let (k1, k2) = (id("key one\n"), id("key two\n"));
        let name = |size, identity| {
            TemplateInputs {
                seed: &seed,
                size,
                identity,
            }
            .file_name()
            .unwrap()
        };
        let base = name(8 << 30, Some(&k1));
        assert!(base.starts_with("8589934592-") && base.ends_with(".ext4"));
        assert_eq!(name(8 << 30, Some(&k1)), base, "stable");
        assert_ne!(name(16 << 30, Some(&k1)), base, "size");
        assert_ne!(name(8 << 30, Some(&k2)), base, "identity");
        assert_ne!(name(8 << 30, None), base, "no identity");
        let mut other_owner = k1.clone();
        other_owner.acct.uid = 0;
        assert_ne!(name(8 << 30, Some(&other_owner)), base, "owner");
        // A refreshed seed is renamed into place: a new file version.
        let new = dir.path().join("new");
        std::fs::write(&new, b"seed v2").unwrap();
        std::fs::rename(&new, &seed).unwrap();
        assert_ne!(name(8 << 30, Some(&k1)), base, "seed");
        std::fs::remove_file(&seed).unwrap();
        assert!(
            TemplateInputs {
                seed: &seed,
                size: 1,
                identity: None
            }
            .file_name()
            .is_none()
        );
    }

    #[test]
    fn a_built_template_is_a_grown_ext4_with_the_identity_or_nothing() {
        use banger_testsupport::{ext4::Mkfs, in_path, skip};
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("work-seed.ext4");
        if let Err(why) = Mkfs::new().file(".profile", "x\n").build(&seed, "8M") {
            skip!("work-disk template build", "{why}");
        }
        if !in_path("debugfs") || !in_path("resize2fs") || !in_path("e2fsck") {
            skip!("work-disk template build", "e2fsprogs missing");
        }
        let t = dir.path().join("work-templates");
        let acct = GuestAccount {
            uid: 1000,
            gid: 1001,
            home: "/".into(),
        };
        let id = IdentityFiles {
            acct: acct.clone(),
            files: vec![(
                "/.ssh/authorized_keys".into(),
                b"ssh-ed25519 K\n".to_vec(),
                0o600,
            )],
        };
        let inputs = TemplateInputs {
            seed: &seed,
            size: 64 << 20,
            identity: Some(&id),
        };
        let name = inputs.file_name().unwrap();
        assert!(build_template(&t, &name, &inputs).unwrap());
        let template = t.join(&name);
        assert!(usable(&template, 64 << 20));
        banger_testsupport::ext4::fsck_clean(&template);
        assert_eq!(
            banger_imagemgr::ext4_read_file(&template, "/.ssh/authorized_keys").unwrap(),
            Some(b"ssh-ed25519 K\n".to_vec())
        );
        assert_eq!(
            banger_imagemgr::ext4_read_file(&template, "/.profile").unwrap(),
            Some(b"x\n".to_vec()),
            "the seed's content is kept"
        );
        // Identity files that cannot be written: no template, no partial.
        let bad = IdentityFiles {
            acct,
            files: vec![("/bad\"name".into(), b"x".to_vec(), 0o600)],
        };
        let inputs = TemplateInputs {
            seed: &seed,
            size: 64 << 20,
            identity: Some(&bad),
        };
        let bad_name = inputs.file_name().unwrap();
        assert!(!build_template(&t, &bad_name, &inputs).unwrap());
        let left: Vec<_> = std::fs::read_dir(&t)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            left,
            [std::ffi::OsString::from(&name)],
            "nothing else is left"
        );
    }

    #[test]
    fn stale_templates_of_the_size_and_partials_go() {
        let dir = tempfile::tempdir().unwrap();
        let t = work_templates_dir(&dir.path().join("img1"));
        std::fs::create_dir_all(&t).unwrap();
        for f in [
            "100-aaa.ext4",
            "100-bbb.ext4",
            "200-ccc.ext4",
            ".100-ddd.ext4.partial",
        ] {
            std::fs::write(t.join(f), b"x").unwrap();
        }
        remove_stale(&t, "100-bbb.ext4", 100);
        assert_eq!(sweep_template_partials(dir.path()), 1);
        let mut left: Vec<String> = std::fs::read_dir(&t)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["100-bbb.ext4", "200-ccc.ext4"]);
    }
}
