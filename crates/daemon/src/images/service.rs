//! `ImageService`: registering, listing and deleting images.
//!
//! Slow work (file checks and copies) runs unlocked in a staging directory;
//! only the publication atom — re-check the name, rename the staging
//! directory into place, insert the row — holds `image_ops_mu`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_api::rpc::ImageRegisterParams;
use banger_api::{Deleted, Image, ImageSeed, Operation, validate};
use banger_store::Store;

use crate::common::blocking;
use crate::common::lockset::VmLockSet;
use crate::common::{OpEntry, OpTracker};
use crate::config::Layout;
use crate::images::error::ImageError;

/// The image service.
pub struct ImageService {
    pub(crate) store: Arc<Store>,
    pub(crate) layout: Layout,
    /// In-flight `image.pull` operations (routed by `operation.get/watch`).
    pub(crate) ops: OpTracker,
    /// One lock per blob digest, so two pulls never write the same cache
    /// file. A leaf lock, taken without any other.
    pub(crate) blob_locks: VmLockSet,
    /// The publication-window lock. Lock order: after `VMService.vm_locks[id]`
    /// and the workspace locks, never together with `create_vm_mu`; nothing
    /// slow (network, copies) runs under it.
    pub(crate) image_ops_mu: tokio::sync::Mutex<()>,
    /// Image seeding inputs (seed.rs); `None`: publish unseeded.
    pub(crate) seeding: Option<crate::images::seed::SeedSettings>,
}

impl ImageService {
    /// Build the service.
    pub fn new(store: Arc<Store>, layout: Layout) -> Self {
        Self {
            ops: OpTracker::new(Arc::clone(&store)),
            store,
            layout,
            blob_locks: VmLockSet::default(),
            image_ops_mu: tokio::sync::Mutex::new(()),
            seeding: None,
        }
    }

    /// Seed every image published from now on (seed.rs).
    pub fn with_seeding(mut self, settings: crate::images::seed::SeedSettings) -> Self {
        self.seeding = Some(settings);
        self
    }

    /// Seed the staged image (slow, unlocked, on a blocking thread):
    /// `None` when seeding is off.
    async fn seed_staging(&self, staging: &Path) -> Result<Option<ImageSeed>, ImageError> {
        let Some(settings) = self.seeding.clone() else {
            return Ok(None);
        };
        let st = staging.to_path_buf();
        blocking(move || -> Result<ImageSeed, ImageError> {
            let inputs = settings.inputs().map_err(seed_error)?;
            if inputs.agent.is_none() {
                tracing::warn!(
                    agent = %settings.agent.display(),
                    "the guest agent is missing; publishing the image without banger's guest bits (set `[guest] agent`, then `banger managed-seed refresh`)"
                );
            }
            crate::images::seed::seed_staged(&st, &inputs).map_err(seed_error)
        }).await
        .map(Some)
    }

    /// `image.register`: check and copy local files, then publish.
    pub async fn register(&self, p: ImageRegisterParams) -> Result<Image, ImageError> {
        validate::image_name(&p.name)?;
        if self.store.find_image(&p.name)?.is_some() {
            return Err(name_taken(&p.name));
        }
        let rootfs = existing_file(&p.rootfs, "root filesystem")?;
        let (kernel, link_kernel) = match &p.kernel_name {
            Some(k) => (
                crate::images::kernels::catalog_kernel(&self.store, k, &p.kernel)?,
                true,
            ),
            None => (existing_file(&p.kernel, "kernel")?, false),
        };
        let initrd = p
            .initrd
            .as_deref()
            .map(|i| existing_file(i, "initrd"))
            .transpose()?;
        banger_imagemgr::check_rootfs(&rootfs)?;
        if !link_kernel {
            check_kernel_or_bzimage(&kernel)?;
        }

        let id = banger_store::new_id();
        let images = self.layout.state_dir.join("images");
        let staging = images.join(format!(".staging-{id}"));
        let result = self
            .stage_and_publish(
                &p.name,
                &id,
                &staging,
                &rootfs,
                (&kernel, link_kernel),
                initrd.as_deref(),
            )
            .await;
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }

    async fn stage_and_publish(
        &self,
        name: &str,
        id: &str,
        staging: &Path,
        rootfs: &Path,
        (kernel, link_kernel): (&Path, bool),
        initrd: Option<&Path>,
    ) -> Result<Image, ImageError> {
        std::fs::create_dir_all(staging).map_err(ImageError::io("cannot create", staging))?;
        let (r, k, i) = (
            rootfs.to_path_buf(),
            kernel.to_path_buf(),
            initrd.map(Path::to_path_buf),
        );
        let st = staging.to_path_buf();
        blocking(move || -> Result<(), ImageError> {
            banger_imagemgr::clone_or_copy(&r, &st.join("rootfs.ext4"))?;
            if link_kernel {
                crate::images::service::link_or_copy(&k, &st.join("vmlinux"))?;
            } else {
                install_kernel(&k, &st.join("vmlinux"))?;
            }
            if let Some(i) = i {
                banger_imagemgr::clone_or_copy(&i, &st.join("initrd"))?;
            }
            Ok(())
        })
        .await?;

        self.publish(
            staging,
            Staged {
                id: id.to_string(),
                name: name.to_string(),
                has_kernel: true,
                has_initrd: initrd.is_some(),
                source: format!("register:{}", rootfs.display()),
            },
        )
        .await
    }

    /// The staging directory of image `id` (same filesystem as the images,
    /// so publication is a rename).
    pub(crate) fn staging_dir(&self, id: &str) -> PathBuf {
        self.layout
            .state_dir
            .join("images")
            .join(format!(".staging-{id}"))
    }

    /// The publication atom, under `image_ops_mu`: re-check the name, rename
    /// the staging directory into place, insert the row. The caller removes
    /// the staging directory if this fails.
    pub(crate) async fn publish(&self, staging: &Path, s: Staged) -> Result<Image, ImageError> {
        // Seeding is slow work on the staged files: before the atom.
        let seed = self.seed_staging(staging).await?;
        let final_dir = self.layout.image_dir(&s.id);
        let work_seed_path = staging
            .join(crate::images::seed::WORK_SEED)
            .is_file()
            .then(|| {
                final_dir
                    .join(crate::images::seed::WORK_SEED)
                    .display()
                    .to_string()
            });
        let size_bytes = std::fs::metadata(staging.join("rootfs.ext4"))
            .map_err(ImageError::io("cannot stat", staging))?
            .len();
        let image = Image {
            id: s.id.clone(),
            name: s.name.clone(),
            rootfs_path: final_dir.join("rootfs.ext4").display().to_string(),
            kernel_path: if s.has_kernel {
                final_dir.join("vmlinux").display().to_string()
            } else {
                String::new()
            },
            initrd_path: s
                .has_initrd
                .then(|| final_dir.join("initrd").display().to_string()),
            size_bytes,
            source: s.source,
            created_at: banger_store::now_millis(),
            seed,
            work_seed_path,
        };
        let _publish = self.image_ops_mu.lock().await;
        if self.store.find_image(&s.name)?.is_some() {
            return Err(name_taken(&s.name));
        }
        std::fs::rename(staging, &final_dir)
            .map_err(ImageError::io("cannot publish", &final_dir))?;
        if let Err(e) = self.store.insert_image(&image) {
            let _ = std::fs::remove_dir_all(&final_dir);
            return Err(e.into());
        }
        tracing::info!(image = %s.name, id = %s.id, "image published");
        Ok(image)
    }

    /// Remove staging directories a crash left behind (daemon start).
    pub fn sweep_staging(&self) {
        let images = self.layout.state_dir.join("images");
        let Ok(rd) = std::fs::read_dir(&images) else {
            return;
        };
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with(".staging-") {
                tracing::info!(dir = %e.path().display(), "removing stale image staging dir");
                let _ = std::fs::remove_dir_all(e.path());
            } else if let Ok(inner) = std::fs::read_dir(e.path()) {
                // A re-seed (seed.rs) a crash interrupted.
                for r in inner.flatten() {
                    if r.file_name().to_string_lossy().starts_with(".reseed-") {
                        tracing::info!(dir = %r.path().display(), "removing stale re-seed dir");
                        let _ = std::fs::remove_dir_all(r.path());
                    }
                }
            }
        }
    }

    /// An `image.pull` operation still in memory.
    pub fn operation(&self, id: &str) -> Option<Operation> {
        self.ops.get(id)
    }

    /// Follow an `image.pull` operation still in memory.
    pub fn watch_op(&self, id: &str) -> Option<tokio::sync::watch::Receiver<OpEntry>> {
        self.ops.subscribe(id)
    }

    /// Drop finished pull operations older than `keep`.
    pub fn prune_operations(&self, keep: std::time::Duration) -> usize {
        self.ops.prune(keep)
    }

    /// `image.list`.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        Ok(self.store.list_images()?)
    }

    /// Find an image by name or id, with a hint when there is none.
    pub fn resolve(&self, name: &str) -> Result<Image, ImageError> {
        self.store
            .find_image(name)?
            .ok_or_else(|| ImageError::NoSuchImage(name.to_string()))
    }

    /// Image by id (for a VM's boot).
    pub fn get(&self, id: &str) -> Result<Image, ImageError> {
        self.store
            .get_image(id)?
            .ok_or_else(|| ImageError::Gone(id.to_string()))
    }

    /// `image.delete`: refused while a VM uses the image.
    pub async fn delete(&self, name: &str) -> Result<Deleted, ImageError> {
        let image = self.resolve(name)?;
        let _publish = self.image_ops_mu.lock().await;
        self.store.delete_image(&image.id)?;
        let dir = self.layout.image_dir(&image.id);
        // A spare root disk being made (vms' copy strategy) ends first.
        let rootfs = std::path::PathBuf::from(&image.rootfs_path);
        let _ = tokio::task::spawn_blocking(move || banger_dmsnap::close_spares(&rootfs)).await;
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove image files");
        }
        Ok(Deleted {
            id: image.id,
            name: image.name,
        })
    }
}

pub(crate) fn seed_error(e: crate::images::seed::SeedError) -> ImageError {
    ImageError::Seed(e)
}

pub(crate) fn name_taken(name: &str) -> ImageError {
    ImageError::NameTaken(name.to_string())
}

pub(crate) fn existing_file(p: &str, what: &str) -> Result<PathBuf, ImageError> {
    let path = PathBuf::from(p);
    if !path.is_absolute() {
        return Err(ImageError::NotAbsolute {
            what: what.into(),
            path: p.into(),
        });
    }
    if !path.is_file() {
        return Err(ImageError::NoFile {
            what: what.into(),
            path: p.into(),
        });
    }
    Ok(path)
}

/// What `publish` needs to know about a staged image.
pub(crate) struct Staged {
    pub id: String,
    pub name: String,
    pub has_kernel: bool,
    pub has_initrd: bool,
    pub source: String,
}

/// Accept an ELF vmlinux, or a bzImage (turned into one by [`install_kernel`]).
pub(crate) fn check_kernel_or_bzimage(path: &Path) -> Result<(), ImageError> {
    if banger_imagemgr::probe(path)? == banger_imagemgr::FileKind::BzImage {
        return Ok(());
    }
    Ok(banger_imagemgr::check_kernel(path)?)
}

/// Copy an ELF kernel to `dst`, or extract the vmlinux of a bzImage there.
pub(crate) fn install_kernel(src: &Path, dst: &Path) -> Result<(), ImageError> {
    if banger_imagemgr::probe(src)? == banger_imagemgr::FileKind::BzImage {
        let kind = banger_imagemgr::extract_vmlinux(src, dst)?;
        tracing::info!(kernel = %src.display(), compression = ?kind, "extracted vmlinux from bzImage");
        return Ok(());
    }
    banger_imagemgr::clone_or_copy(src, dst)?;
    Ok(())
}

/// Hard-link `src` to `dst` (same filesystem: costs nothing and keeps the
/// kernel's inode shared), or copy when linking is impossible.
pub(crate) fn link_or_copy(src: &Path, dst: &Path) -> Result<(), ImageError> {
    if std::fs::hard_link(src, dst).is_ok() {
        return Ok(());
    }
    banger_imagemgr::clone_or_copy(src, dst)?;
    Ok(())
}
