//! `image.refresh_seed` (`banger managed-seed refresh`) and the seeding
//! checks of `doctor`: images whose recorded seed (seed.rs) no longer
//! matches the current keys, guest agent or guest user.

use banger_api::rpc::ImageRefreshSeedParams;
use banger_api::{Image, ImageSeed, SeedRefresh};

use crate::common::error::DaemonError;
use crate::config::Config;
use crate::doctor::Check;
use crate::images::seed::{SeedInputs, SeedSettings, WORK_SEED, seed_staged};
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
    ) -> Result<Vec<SeedRefresh>, DaemonError> {
        let Some(settings) = self.seeding.clone() else {
            return Err(DaemonError::Conflict(
                "image seeding is off in this daemon".into(),
            ));
        };
        let images = match &p.image {
            Some(n) => vec![self.resolve(n)?],
            None => self.list()?,
        };
        let inputs = tokio::task::spawn_blocking(move || settings.inputs())
            .await
            .map_err(|e| DaemonError::Internal(e.to_string()))?
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

    async fn reseed(&self, mut image: Image, inputs: &SeedInputs) -> Result<(), DaemonError> {
        let dir = self.layout.image_dir(&image.id);
        let tmp = dir.join(format!(".reseed-{}", banger_store::new_id()));
        let (d, t, i) = (dir.clone(), tmp.clone(), inputs.clone());
        let seeded = tokio::task::spawn_blocking(move || -> Result<ImageSeed, DaemonError> {
            std::fs::create_dir_all(&t).map_err(DaemonError::io("cannot create", &t))?;
            banger_imagemgr::clone_or_copy(&d.join("rootfs.ext4"), &t.join("rootfs.ext4"))?;
            let work = d.join(WORK_SEED);
            if work.is_file() {
                banger_imagemgr::clone_or_copy(&work, &t.join(WORK_SEED))?;
            }
            seed_staged(&t, &i).map_err(crate::images::service::seed_error)
        })
        .await
        .map_err(|e| DaemonError::Internal(e.to_string()))
        .and_then(|r| r);
        let result = match seeded {
            Ok(seed) => {
                let _publish = self.image_ops_mu.lock().await;
                (|| -> Result<(), DaemonError> {
                    if self.store.get_image(&image.id)?.is_none() {
                        return Err(DaemonError::NotFound(format!(
                            "image {} was deleted meanwhile",
                            image.name
                        )));
                    }
                    for f in ["rootfs.ext4", WORK_SEED] {
                        std::fs::rename(tmp.join(f), dir.join(f))
                            .map_err(DaemonError::io("cannot replace", &dir.join(f)))?;
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

/// `doctor`: is the guest agent there, and are the images' seeds current?
/// Reads the store when it exists; creates nothing.
pub fn doctor_checks(config: &Config, layout: &crate::config::Layout) -> Vec<Check> {
    let settings = SeedSettings::from_config(config);
    let agent_bytes = std::fs::read(&settings.agent).ok();
    let mut checks = vec![if agent_bytes
        .as_deref()
        .is_some_and(|b| !banger_guest::is_static_elf(b))
    {
        Check::warn(
            "guest agent",
            format!(
                "{} is dynamically linked: it runs only in guests whose C library matches the host's",
                settings.agent.display()
            ),
            "build the static agent with `make guest-agent` (or `make build`), then run `banger managed-seed refresh`",
        )
    } else if agent_bytes.is_some() {
        Check::ok(
            "guest agent",
            format!(
                "{} (installed into images by seeding)",
                settings.agent.display()
            ),
        )
    } else {
        Check::warn(
            "guest agent",
            format!(
                "{} not found: images are published without banger's guest bits",
                settings.agent.display()
            ),
            "install banger-guest next to bangerd or set `[guest] agent = \"/path/to/banger-guest\"`, then run `banger managed-seed refresh`",
        )
    }];
    let db = layout.state_dir.join("banger.db");
    if !db.is_file() {
        return checks;
    }
    let images = banger_store::Store::open(&db).and_then(|s| s.list_images());
    let inputs = settings.inputs_readonly();
    checks.push(match (images, inputs) {
        (Ok(images), Ok(inputs)) => {
            let stale: Vec<String> = images
                .iter()
                .filter_map(|i| {
                    inputs
                        .staleness(i.seed.as_ref())
                        .map(|why| format!("{} ({why})", i.name))
                })
                .collect();
            if stale.is_empty() {
                Check::ok("image seeds", format!("{} image(s) seeded with the current keys and agent", images.len()))
            } else {
                Check::warn(
                    "image seeds",
                    format!("stale: {}", stale.join(", ")),
                    "run `banger managed-seed refresh` (new VMs then get the current keys and guest bits)",
                )
            }
        }
        (Err(e), _) => Check::warn(
            "image seeds",
            format!("cannot read the image list: {e}"),
            "check the state dir, or run `banger doctor` with the daemon's user",
        ),
        (_, Err(e)) => Check::warn("image seeds", e.to_string(), "fix `[guest] agent`"),
    });
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctor_reports_a_missing_agent_and_stale_images() {
        let t = tempfile::tempdir().unwrap();
        let layout = crate::config::Layout {
            config_file: t.path().join("config.toml"),
            state_dir: t.path().join("state"),
            runtime_dir: t.path().join("run"),
        };
        let mut config = Config::default();
        config.guest.agent = Some(t.path().join("no-agent"));
        config.guest.ssh_key = Some(t.path().join("key/id_ed25519"));
        // No store yet: only the agent check, and nothing is created.
        let checks = doctor_checks(&config, &layout);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, crate::doctor::CheckStatus::Warn);
        assert!(checks[0].hint.as_deref().unwrap().contains("[guest] agent"));
        assert!(!t.path().join("key").exists());

        std::fs::create_dir_all(&layout.state_dir).unwrap();
        let store = banger_store::Store::open(layout.state_dir.join("banger.db")).unwrap();
        let image = |name: &str, seed: Option<ImageSeed>| Image {
            id: format!("id-{name}"),
            name: name.into(),
            rootfs_path: "/r".into(),
            kernel_path: "/k".into(),
            initrd_path: None,
            size_bytes: 1,
            source: "test".into(),
            created_at: 0,
            seed,
            work_seed_path: None,
        };
        store.insert_image(&image("old", None)).unwrap();
        let settings = SeedSettings::from_config(&config);
        let current = settings.inputs_readonly().unwrap();
        store
            .insert_image(&image(
                "fresh",
                Some(ImageSeed {
                    guest_user: "root".into(),
                    key_fingerprint: current.key_fingerprint(),
                    agent_sha256: None,
                    seeded_at: 0,
                }),
            ))
            .unwrap();
        let checks = doctor_checks(&config, &layout);
        let seeds = checks.iter().find(|c| c.name == "image seeds").unwrap();
        assert_eq!(seeds.status, crate::doctor::CheckStatus::Warn);
        assert!(seeds.detail.contains("old (never seeded)"), "{seeds:?}");
        assert!(!seeds.detail.contains("fresh"), "{seeds:?}");
        assert!(
            seeds
                .hint
                .as_deref()
                .unwrap()
                .contains("managed-seed refresh")
        );
    }
}
