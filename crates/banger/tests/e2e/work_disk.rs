//! End-to-end: work disks cloned from per-image templates (vms/work_disk.rs)
//! through a real `bangerd` (simulator as firecracker): each VM's disk is a
//! valid ext4 (`e2fsck -fn`) of the asked size, the owner's 0600 file,
//! holding the owner's keys and git identity, and independent of the other
//! VMs' and of the template; a changed key makes a new template and removes
//! the stale one; concurrent first creates build it once; an interrupted build (`.partial`) is removed by reconcile
//! and a damaged template is rebuilt.

use crate::util;

use banger_testsupport::ext4::fsck_clean;
use banger_testsupport::skip;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use banger_api::{Image, VmDetail};
use util::{Fixtures, TestDaemon, debugfs as dfs, debugfs_write};

const T: &str = "work_disks_from_templates_end_to_end";
const SIZE: u64 = 96 << 20;

fn work_disk(d: &TestDaemon, vm: &str) -> PathBuf {
    let detail: VmDetail = d.cli_json(&["vm", "show", vm]);
    PathBuf::from(detail.paths.work_disk.expect("a work disk"))
}

/// The template directory's entries, sorted.
fn templates(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A fresh work disk as it must be: the size asked, the owner's, 0600, a
/// clean ext4 holding the owner's key `key` and git identity.
fn check_disk(disk: &Path, key: &str) {
    let m = std::fs::metadata(disk).unwrap();
    assert_eq!(m.len(), SIZE, "{}", disk.display());
    assert_eq!(m.mode() & 0o7777, 0o600, "{}", disk.display());
    assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
    fsck_clean(disk);
    assert!(dfs(disk, "cat /.ssh/authorized_keys").contains(key));
    assert!(dfs(disk, "stat /.ssh/authorized_keys").contains("Mode:  0600"));
    assert!(dfs(disk, "cat /.gitconfig").contains("Ada L"));
}

#[test]
fn work_disks_from_templates_end_to_end() {
    let Some(fx) = Fixtures::new(T) else { return };
    if Command::new("debugfs").arg("-V").output().is_err() {
        skip!(T, "debugfs is not installed (apt-get install e2fsprogs)");
    }
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let owner_key = home.join(".ssh/id_ed25519.pub");
    std::fs::write(&owner_key, "ssh-ed25519 AAAAowner1 owner@test\n").unwrap();
    std::fs::write(
        home.join(".gitconfig"),
        "[user]\n\tname = Ada L\n\temail = ada@example.invalid\n",
    )
    .unwrap();
    let (h, xdg) = (
        home.display().to_string(),
        dir.path().join("config").display().to_string(),
    );
    let mut d = TestDaemon::start_with(
        &[("HOME", &h), ("XDG_CONFIG_HOME", &xdg)],
        "\n[guest]\nreadiness = \"none\"\nsync_identity = true\n[vm]\nwork_disk = \"96M\"\n",
    );
    let image: Image = d.register_image(&fx, "base");
    let tdir = d
        .state_dir()
        .join("images")
        .join(&image.id)
        .join("work-templates");

    // 1. Two VMs: one template, two valid, independent disks.
    d.cli_ok(&["vm", "create", "a", "--image", "base"]);
    d.cli_ok(&["vm", "create", "b", "--image", "base"]);
    let made = templates(&tdir);
    assert_eq!(made.len(), 1, "{made:?}");
    assert!(
        made[0].starts_with(&format!("{SIZE}-")) && made[0].ends_with(".ext4"),
        "{made:?}"
    );
    let template = tdir.join(&made[0]);
    let (a, b) = (work_disk(&d, "a"), work_disk(&d, "b"));
    check_disk(&a, "AAAAowner1");
    check_disk(&b, "AAAAowner1");
    d.cli_ok(&["vm", "stop", "a"]);
    let marker = dir.path().join("marker");
    std::fs::write(&marker, "only a\n").unwrap();
    debugfs_write(&a, &marker, "/marker");
    assert_eq!(dfs(&a, "cat /marker"), "only a\n");
    for other in [&b, &template] {
        assert!(
            !dfs(other, "stat /marker").contains("Inode:"),
            "{} sees a's file",
            other.display()
        );
    }
    fsck_clean(&template);

    // 2. A new owner key: a new template, the stale one removed.
    std::fs::write(&owner_key, "ssh-ed25519 AAAAowner2 owner@test\n").unwrap();
    d.cli_ok(&["vm", "create", "c", "--image", "base"]);
    let c = work_disk(&d, "c");
    check_disk(&c, "AAAAowner2");
    assert!(!dfs(&c, "cat /.ssh/authorized_keys").contains("AAAAowner1"));
    let now = templates(&tdir);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, made, "the key is part of the template's key");

    // Concurrent first creates with a new identity build one template.
    std::fs::write(&owner_key, "ssh-ed25519 AAAAowner3 owner@test\n").unwrap();
    let names = ["p0", "p1", "p2", "p3"];
    std::thread::scope(|s| {
        for n in names {
            let d = &d;
            s.spawn(move || d.create(n, "base").expect("concurrent create"));
        }
    });
    for n in names {
        check_disk(&work_disk(&d, n), "AAAAowner3");
    }
    assert_eq!(templates(&tdir).len(), 1, "{:?}", templates(&tdir));
    assert_eq!(
        d.log().matches("work-disk template made").count(),
        3,
        "one build for a and b, one for c, one for the four concurrent creates"
    );
    let now = templates(&tdir);

    // 3. An interrupted build is removed at the next daemon start; a
    // template of the wrong size is not used but rebuilt.
    d.kill_hard();
    let partial = tdir.join(format!(".{}.partial", now[0]));
    std::fs::write(&partial, b"half a template").unwrap();
    let current = tdir.join(&now[0]);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&current)
        .unwrap()
        .set_len(4096)
        .unwrap();
    d.spawn();
    assert!(!partial.exists(), "reconcile removes {}", partial.display());
    d.cli_ok(&["vm", "create", "d", "--image", "base"]);
    check_disk(&work_disk(&d, "d"), "AAAAowner3");
    assert_eq!(std::fs::metadata(&current).unwrap().len(), SIZE);
    fsck_clean(&current);

    // 4. The image's templates go with the image.
    for vm in ["a", "b", "c", "d", "p0", "p1", "p2", "p3"] {
        d.cli_ok(&["vm", "delete", vm, "--force"]);
    }
    d.cli_ok(&["image", "delete", "base"]);
    assert!(!tdir.exists());
}
