//! `image.refresh_seed` (`banger managed-seed refresh`): images whose recorded seed (seed.rs) no longer
//! matches the current keys, guest agent or guest user.

use banger_api::rpc::ImageRefreshSeedParams;
use banger_api::{Image, ImageSeed, SeedRefresh};

use crate::images::ImageError;
use crate::images::seed::{SeedInputs, WORK_SEED, seed_staged};
use crate::images::service::ImageService;

impl ImageService {
    /// `image.refresh_seed` (`banger managed-seed refresh`): re-seed the
    /// images (all, or `p.image`) whose recorded seed differs from the
    /// current keys, agent or guest user. Each is re-seeded on copies of
    /// its files in `<image dir>/.reseed-<id>/` (unlocked), which replace
    /// the originals by rename under `image_ops_mu`, so a VM being created
    /// meanwhile copies either the old or the new file, never a half-edited
    /// one. Images whose files a VM still reads are skipped with the VM
    /// names: those of a running VM, and those under a device-mapper
    /// snapshot. Existing VMs' copied root disks are not touched.
    pub async fn refresh_seed(
        &self,
        p: ImageRefreshSeedParams,
    ) -> Result<Vec<SeedRefresh>, ImageError> {
        let Some(settings) = self.seeding.clone() else {
            return Err(ImageError::Conflict(
                "image seeding is off in this daemon".into(),
            ));
        };
        let images = match &p.image {
            Some(n) => vec![self.resolve(n)?],
            None => self.list()?,
        };
        let inputs = tokio::task::spawn_blocking(move || settings.inputs())
            .await
            .map_err(|e| ImageError::Internal(e.to_string()))?
            .map_err(crate::images::service::seed_error)?;
        let vms = self.store.list_vms()?;
        let mut out = Vec::new();
        for image in images {
            let Some(why) = inputs.staleness(image.seed.as_ref()) else {
                out.push(SeedRefresh {
                    image: image.name,
                    outcome: "current".into(),
                    detail: "seed is up to date".into(),
                });
                continue;
            };
            let busy: Vec<String> = vms
                .iter()
                .filter(|v| v.image_id == image.id)
                .filter(|v| {
                    // A snapshot's COW only makes sense over the very image
                    // file it was made on, running or not.
                    let dir = self.layout.vm_dir(&v.id);
                    v.state.has_vmm()
                        || dir.join(banger_dmsnap::COW_SUFFIX).exists()
                        || crate::common::root_disk(&dir)
                            .symlink_metadata()
                            .is_ok_and(|m| m.file_type().is_symlink())
                })
                .map(|v| v.name.clone())
                .collect();
            if !busy.is_empty() {
                out.push(SeedRefresh {
                    image: image.name,
                    outcome: "skipped".into(),
                    detail: format!(
                        "{why}; in use by VM(s) {}: stop them (or delete their snapshots) and run `banger managed-seed refresh` again",
                        busy.join(", ")
                    ),
                });
                continue;
            }
            let name = image.name.clone();
            match self.reseed(image, &inputs).await {
                Ok(()) => out.push(SeedRefresh {
                    image: name,
                    outcome: "refreshed".into(),
                    detail: why,
                }),
                Err(e) => out.push(SeedRefresh {
                    image: name,
                    outcome: "failed".into(),
                    detail: crate::common::error::error_chain(&e),
                }),
            }
        }
        Ok(out)
    }

    async fn reseed(&self, mut image: Image, inputs: &SeedInputs) -> Result<(), ImageError> {
        let dir = self.layout.image_dir(&image.id);
        let tmp = dir.join(format!(".reseed-{}", banger_store::new_id()));
        let (d, t, i) = (dir.clone(), tmp.clone(), inputs.clone());
        let seeded = tokio::task::spawn_blocking(move || -> Result<ImageSeed, ImageError> {
            std::fs::create_dir_all(&t).map_err(ImageError::io("cannot create", &t))?;
            banger_imagemgr::clone_or_copy(&d.join("rootfs.ext4"), &t.join("rootfs.ext4"))?;
            let work = d.join(WORK_SEED);
            if work.is_file() {
                banger_imagemgr::clone_or_copy(&work, &t.join(WORK_SEED))?;
            }
            seed_staged(&t, &i).map_err(crate::images::service::seed_error)
        })
        .await
        .map_err(|e| ImageError::Internal(e.to_string()))
        .and_then(|r| r);
        let result = match seeded {
            Ok(seed) => {
                let _publish = self.image_ops_mu.lock().await;
                (|| -> Result<(), ImageError> {
                    if self.store.get_image(&image.id)?.is_none() {
                        return Err(ImageError::NotFound(format!(
                            "image {} was deleted meanwhile",
                            image.name
                        )));
                    }
                    for f in ["rootfs.ext4", WORK_SEED] {
                        std::fs::rename(tmp.join(f), dir.join(f))
                            .map_err(ImageError::io("cannot replace", &dir.join(f)))?;
                    }
                    image.seed = Some(seed);
                    image.work_seed_path = Some(dir.join(WORK_SEED).display().to_string());
                    self.store.update_image_seed(&image)?;
                    Ok(())
                })()
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_dir_all(&tmp);
        if result.is_ok() {
            tracing::info!(image = %image.name, "image re-seeded");
        }
        result
    }
}
