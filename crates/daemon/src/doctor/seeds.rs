//! The seeding checks of `doctor`: is the guest agent there, and were the
//! images seeded with the current keys, agent and guest user?

use crate::config::{Config, Layout};
use crate::doctor::checks::Check;
use crate::images::SeedSettings;

/// `doctor`: is the guest agent there, and are the images' seeds current?
/// Reads the store when it exists; creates nothing.
pub fn checks(config: &Config, layout: &Layout) -> Vec<Check> {
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
    use crate::doctor::checks::CheckStatus;
    use banger_api::{Image, ImageSeed};

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
        let checks = super::checks(&config, &layout);
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, CheckStatus::Warn);
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
        let checks = super::checks(&config, &layout);
        let seeds = checks.iter().find(|c| c.name == "image seeds").unwrap();
        assert_eq!(seeds.status, CheckStatus::Warn);
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
