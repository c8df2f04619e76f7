//! End-to-end: image seeding, work seeds, per-VM work disks and
//! `managed-seed refresh` through the `banger` CLI and a real `bangerd`
//! (simulator as firecracker). Disks are checked without mounting, with
//! `debugfs` and `e2fsck -fn`.

use crate::util;

use banger_testsupport::ext4::fsck_clean;
use banger_testsupport::skip;

use std::path::{Path, PathBuf};
use std::process::Command;

use banger_api::{Image, SeedRefresh, VmDetail, VmState};
use util::{Fixtures, TestDaemon, debugfs as dfs, debugfs_write};

const T: &str = "seed_work_disk_and_refresh_end_to_end";

fn vm_config(api_sock: &str) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        banger_fcproc::FirecrackerClient::new(Path::new(api_sock))
            .get::<serde_json::Value>("/vm/config")
            .await
            .unwrap()
    })
}

struct Env {
    home: PathBuf,
    _dir: tempfile::TempDir,
    daemon: TestDaemon,
}

fn start(fx: &Fixtures) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(
        home.join(".ssh/id_ed25519.pub"),
        "ssh-ed25519 AAAAowner1 owner@test\n",
    )
    .unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        "[user]\n\tname = Ada L\n\temail = ada@example.invalid\n",
    )
    .unwrap();
    let agent = dir.path().join("banger-guest");
    std::fs::write(&agent, b"\x7fELF fake agent v1").unwrap();
    let _ = fx;
    let keys = format!(
        "\n[guest]\nreadiness = \"none\"\nsync_identity = true\nagent = {:?}\n[vm]\nwork_disk = \"128M\"\n",
        agent.display().to_string()
    );
    let h = home.display().to_string();
    let xdg = dir.path().join("config").display().to_string();
    let daemon = TestDaemon::start_with(&[("HOME", &h), ("XDG_CONFIG_HOME", &xdg)], &keys);
    Env {
        home,
        _dir: dir,
        daemon,
    }
}

#[test]
fn seed_work_disk_and_refresh_end_to_end() {
    let Some(fx) = Fixtures::new(T) else { return };
    if Command::new("debugfs").arg("-V").output().is_err() {
        skip!(T, "debugfs is not installed (apt-get install e2fsprogs)");
    }
    let env = start(&fx);
    let d = &env.daemon;

    // 1. Seeding at publication (register is one of the paths through publish).
    let base = d.register_image(&fx, "base");
    let seed = base.seed.clone().expect("the image records its seed");
    assert_eq!(seed.guest_user, "root");
    assert!(seed.agent_sha256.is_some());
    let rootfs = PathBuf::from(&base.rootfs_path);
    let keys = dfs(&rootfs, "cat /root/.ssh/authorized_keys");
    assert!(
        keys.contains("AAAAowner1") && keys.contains("banger"),
        "{keys}"
    );
    assert!(dfs(&rootfs, "stat /root/.ssh").contains("Mode:  0700"));
    assert!(dfs(&rootfs, "stat /root/.ssh/authorized_keys").contains("Mode:  0600"));
    assert_eq!(
        dfs(&rootfs, "cat /usr/local/lib/banger/banger-guest"),
        "\x7fELF fake agent v1"
    );
    assert!(
        dfs(
            &rootfs,
            "stat /etc/systemd/system/multi-user.target.wants/banger-guest.service"
        )
        .contains("Type: symlink")
    );
    assert_eq!(
        dfs(&rootfs, "cat /etc/fstab"),
        "/dev/vdb /root ext4 defaults,nofail,x-systemd.device-timeout=20s,x-systemd.before=ssh.service,x-systemd.before=banger-guest.service 0 0\n"
    );
    fsck_clean(&rootfs);
    let work_seed = PathBuf::from(base.work_seed_path.clone().expect("a work seed"));
    assert!(dfs(&work_seed, "cat /.ssh/authorized_keys").contains("AAAAowner1"));
    fsck_clean(&work_seed);
    let shown = d.cli_ok(&["image", "show", "base"]);
    assert!(
        shown.contains("work seed") && shown.contains("user root"),
        "{shown}"
    );

    // 2. The bundle round trip keeps the work seed and the root filesystem.
    let bundle = env.home.join("base.bundle.tar");
    let b = bundle.display().to_string();
    d.cli_ok(&["image", "export-bundle", "base", &b]);
    let copy: Image = d.cli_json(&["image", "pull", &b, "--name", "copy"]);
    let sha = |p: &str| banger_imagemgr::sha256_file(Path::new(p)).unwrap();
    assert_eq!(sha(&copy.rootfs_path), sha(&base.rootfs_path));
    assert_eq!(
        sha(copy.work_seed_path.as_deref().unwrap()),
        sha(base.work_seed_path.as_deref().unwrap())
    );

    // 3. A VM gets a persistent work disk as its second drive.
    let out = d.cli(&[
        "vm",
        "create",
        "dev",
        "--image",
        "base",
        "--work-disk",
        "1M",
    ]);
    assert!(
        !out.status.success(),
        "smaller than the work seed is refused"
    );
    d.cli_ok(&[
        "vm",
        "create",
        "dev",
        "--image",
        "base",
        "--work-disk",
        "160M",
    ]);
    let detail: VmDetail = d.cli_json(&["vm", "show", "dev"]);
    assert_eq!(detail.vm.state, VmState::Running);
    let work = PathBuf::from(detail.paths.work_disk.clone().expect("work disk path"));
    assert_eq!(work, Path::new(&detail.paths.dir).join("work.ext4"));
    assert_eq!(detail.paths.work_disk_bytes, 160 << 20);
    let cfg = vm_config(&detail.runtime.as_ref().unwrap().api_socket);
    let drives = cfg["drives"].as_array().unwrap();
    assert_eq!(drives.len(), 2, "{cfg}");
    assert_eq!(drives[0]["drive_id"], "rootfs");
    assert_eq!(drives[0]["is_root_device"], true);
    assert_eq!(drives[1]["drive_id"], "work");
    assert_eq!(drives[1]["is_root_device"], false);
    // Drives are given relative to the VM directory, the VMM's working
    // directory (so a snapshot restores onto each fork's own disks).
    assert_eq!(drives[1]["path_on_host"], "work.ext4");
    // Identity sync went onto the work disk (the guest's home).
    assert!(dfs(&work, "cat /.gitconfig").contains("Ada L"));
    assert!(dfs(&work, "cat /.ssh/authorized_keys").contains("AAAAowner1"));
    assert!(!dfs(&work, "ls /").is_empty());
    assert!(
        !Path::new(&detail.paths.dir)
            .join("work.ext4.partial")
            .exists()
    );

    // 4. The work disk survives stop/start with what was written into it.
    d.cli_ok(&["vm", "stop", "dev"]);
    let marker = env.home.join("marker");
    std::fs::write(&marker, "kept\n").unwrap();
    debugfs_write(&work, &marker, "/marker");
    d.cli_ok(&["vm", "start", "dev"]);
    assert_eq!(dfs(&work, "cat /marker"), "kept\n");
    d.cli_ok(&["vm", "stop", "dev"]);
    assert_eq!(dfs(&work, "cat /marker"), "kept\n");

    // 5. vm set --work-disk grows only.
    assert!(
        !d.cli(&["vm", "set", "dev", "--work-disk", "150M"])
            .status
            .success()
    );
    d.cli_ok(&["vm", "set", "dev", "--work-disk", "200M"]);
    assert_eq!(std::fs::metadata(&work).unwrap().len(), 200 << 20);
    fsck_clean(&work);
    assert_eq!(dfs(&work, "cat /marker"), "kept\n");

    // 6. managed-seed refresh: nothing to do, then a new owner key.
    let rows: Vec<SeedRefresh> = d.cli_json(&["managed-seed", "refresh"]);
    assert!(rows.iter().all(|r| r.outcome == "current"), "{rows:?}");
    std::fs::write(
        env.home.join(".ssh/id_ed25519.pub"),
        "ssh-ed25519 AAAAowner2 owner@test\n",
    )
    .unwrap();
    let doctor = Command::new(util::bin("banger"))
        .arg("--state-dir")
        .arg(d.state_dir())
        .arg("--config")
        .arg(d.dir.path().join("config.toml"))
        .arg("doctor")
        .env("HOME", &env.home)
        .env("XDG_CONFIG_HOME", env.home.parent().unwrap().join("config"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let doc = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        doc.contains("image seeds")
            && doc.contains("SSH keys changed")
            && doc.contains("managed-seed refresh"),
        "{doc}"
    );
    let out = d.cli_ok(&["managed-seed", "refresh", "--image", "base"]);
    assert!(
        out.contains("base") && out.contains("refreshed") && out.contains("SSH keys"),
        "{out}"
    );
    let base2: Image = d.cli_json(&["image", "show", "base"]);
    assert_ne!(base2.seed, base.seed);
    let keys = dfs(&rootfs, "cat /root/.ssh/authorized_keys");
    assert!(
        keys.contains("AAAAowner2") && !keys.contains("AAAAowner1"),
        "{keys}"
    );
    assert!(dfs(&work_seed, "cat /.ssh/authorized_keys").contains("AAAAowner2"));
    fsck_clean(&rootfs);
    // The other image is still stale; refreshing everything fixes it.
    let rows: Vec<SeedRefresh> = d.cli_json(&["managed-seed", "refresh"]);
    let by = |n: &str| rows.iter().find(|r| r.image == n).unwrap().outcome.clone();
    assert_eq!(by("base"), "current");
    assert_eq!(by("copy"), "refreshed");

    // An image a running VM uses is skipped, naming the VM.
    std::fs::write(
        env.home.join(".ssh/id_ed25519.pub"),
        "ssh-ed25519 AAAAowner3 owner@test\n",
    )
    .unwrap();
    d.cli_ok(&["vm", "start", "dev"]);
    let rows: Vec<SeedRefresh> = d.cli_json(&["managed-seed", "refresh", "--image", "base"]);
    assert_eq!(rows[0].outcome, "skipped");
    assert!(rows[0].detail.contains("dev"), "{rows:?}");
    // ...while the VM's own work disk got the new key at this start.
    assert!(dfs(&work, "cat /.ssh/authorized_keys").contains("AAAAowner3"));
    // A stopped VM whose root disk is a snapshot COW over the image also
    // keeps the image from being rewritten.
    d.cli_ok(&["vm", "stop", "dev"]);
    let cow = Path::new(&detail.paths.dir).join("root.cow");
    std::fs::write(&cow, b"").unwrap();
    let rows: Vec<SeedRefresh> = d.cli_json(&["managed-seed", "refresh", "--image", "base"]);
    assert_eq!(rows[0].outcome, "skipped", "{rows:?}");
    std::fs::remove_file(&cow).unwrap();
    let rows: Vec<SeedRefresh> = d.cli_json(&["managed-seed", "refresh", "--image", "base"]);
    assert_eq!(rows[0].outcome, "refreshed", "{rows:?}");

    // `image list --json` carries the seed too.
    let listed: Vec<Image> = d.cli_json(&["image", "list"]);
    assert!(
        listed
            .iter()
            .all(|i| i.seed.is_some() && i.work_seed_path.is_some())
    );

    // `image pull --kernel-name` with an unknown kernel: a clear error, and
    // nothing is fetched or published.
    let bad = d.cli(&[
        "image",
        "pull",
        "127.0.0.1:9/x/y:1",
        "--kernel-name",
        "nope",
    ]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("no kernel named \"nope\"") && err.contains("banger kernel list"),
        "{err}"
    );
    let after: Vec<Image> = d.cli_json(&["image", "list"]);
    assert_eq!(after.len(), listed.len());

    // 7. Delete removes the work disk with the VM.
    d.cli_ok(&["vm", "delete", "dev", "--force"]);
    assert!(!work.exists());
}
