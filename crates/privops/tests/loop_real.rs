//! Loop devices for real through `LocalPrivOps` (root only; this host has
//! loop devices but no device-mapper, so dm ops are covered by the checks
//! that run before device-mapper is needed, and by the recording fakes of
//! banger-dmsnap).
//!
//! The policy's owner is a throwaway uid without a passwd entry; the state
//! directory is theirs. The helper opens banger's files with that uid's
//! filesystem identity, beneath the state directory, no symlinks.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use banger_privops::{
    DiskOps, LocalPrivOps, Policy, PrivOpsError, loop_backing_file, loop_set_autoclear,
};

/// A uid no one uses (no passwd entry needed).
const OWNER: u32 = 64_123;

struct Fixture {
    _t: tempfile::TempDir,
    root: PathBuf,
    ops: LocalPrivOps,
}

impl Fixture {
    fn state(&self, rel: &str) -> PathBuf {
        self.root.join("state").join(rel)
    }
    /// A sparse file of `len` bytes owned by the owner.
    fn owned(&self, rel: &str, len: u64) -> PathBuf {
        let p = self.state(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        std::os::unix::fs::chown(&p, Some(OWNER), Some(OWNER)).unwrap();
        for d in p.ancestors().skip(1) {
            if d == self.root {
                break;
            }
            std::os::unix::fs::chown(d, Some(OWNER), Some(OWNER)).unwrap();
        }
        p
    }
}

fn fixture(test: &str) -> Option<Fixture> {
    if !nix::unistd::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
        banger_testsupport::skip!(return None; test, "needs root and /dev/loop-control");
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(root.join("state/vms/a")).unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    for d in ["state", "state/vms", "state/vms/a", "run"] {
        std::os::unix::fs::chown(root.join(d), Some(OWNER), Some(OWNER)).unwrap();
    }
    let ops = LocalPrivOps::new(Policy {
        device_prefix: "bg".into(),
        state_dir: root.join("state"),
        runtime_dir: root.join("run"),
        subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: OWNER,
        vmm_binary: PathBuf::from("/usr/bin/firecracker"),
    });
    Some(Fixture { _t: t, root, ops })
}

/// Attach `file` directly (as root, not through the helper): a loop
/// device banger did not make.
fn foreign_attach(file: &Path, read_only: bool) -> PathBuf {
    let ctl = loopdev::LoopControl::open().unwrap();
    // Another test may take the free device first: retry on EBUSY.
    for _ in 0..20 {
        let dev = ctl.next_free().unwrap();
        match dev.with().read_only(read_only).attach(file) {
            Ok(()) => return dev.path().unwrap(),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no free loop device")
}

fn foreign_detach(dev: &Path) {
    let _ = loopdev::LoopDevice::open(dev).and_then(|d| d.detach());
}

#[test]
fn loop_attach_list_detach_for_real() {
    let Some(f) = fixture("loop_attach_list_detach_for_real") else {
        return;
    };
    let img = f.owned("images/a.ext4", 8 << 20);
    let dev = f.ops.loop_attach(&img, true).unwrap();
    let listed = f.ops.list_disks();
    let detached = f.ops.loop_detach(&dev, &img);
    let (_, loops) = listed.unwrap();
    assert!(
        loops
            .iter()
            .any(|l| l.device == dev && l.backing_file == img),
        "{dev:?} not in {loops:?}"
    );
    assert!(detached.unwrap(), "was attached");
    // Outside banger's directories: refused, nothing attached.
    assert!(matches!(
        f.ops.loop_attach(Path::new("/etc/hostname"), true),
        Err(PrivOpsError::Refused { .. })
    ));
}

#[test]
fn read_only_and_read_write_attach_and_guarded_detach_for_real() {
    let Some(f) = fixture("read_only_and_read_write_attach_and_guarded_detach_for_real") else {
        return;
    };
    let cow = f.owned("vms/a/root.cow", 4 << 20);
    let other = f.owned("vms/a/other", 4 << 20);
    let ro = f.ops.loop_attach(&cow, true).unwrap();
    let rw = f.ops.loop_attach(&cow, false).unwrap();
    let ro_flag = |d: &Path| {
        let n = d.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::read_to_string(format!("/sys/block/{n}/ro")).unwrap()
    };
    let (ro_state, rw_state) = (ro_flag(&ro), ro_flag(&rw));
    // A detach that names another banger file is refused.
    let kept = f.ops.loop_detach(&rw, &other);
    let still = loop_backing_file(&rw);
    let d1 = f.ops.loop_detach(&rw, &cow);
    let d2 = f.ops.loop_detach(&ro, &cow);
    assert_eq!(ro_state.trim(), "1", "base attached read-only");
    assert_eq!(rw_state.trim(), "0", "COW attached read-write");
    assert!(
        matches!(&kept, Err(PrivOpsError::Refused { reason, .. }) if reason.contains("backed by")),
        "{kept:?}"
    );
    assert_eq!(still.as_deref(), Some(cow.as_path()));
    assert!(d1.unwrap() && d2.unwrap());
}

#[test]
fn files_that_are_not_the_owners_regular_files_are_refused() {
    let Some(f) = fixture("files_that_are_not_the_owners_regular_files_are_refused") else {
        return;
    };
    let refused = |p: &Path, ro: bool| {
        let r = f.ops.loop_attach(p, ro);
        assert!(
            matches!(&r, Err(PrivOpsError::Refused { .. })),
            "{}: {r:?}",
            p.display()
        );
    };
    // Root's file inside the state dir, and a hard link to one.
    let secret = f.root.join("secret");
    std::fs::write(&secret, b"root only").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let roots = f.state("vms/a/roots");
    std::fs::write(&roots, b"x").unwrap();
    refused(&roots, true);
    std::fs::hard_link(&secret, f.state("vms/a/hard")).unwrap();
    refused(&f.state("vms/a/hard"), true);
    // Symlinks: to the file, and a directory on the way.
    std::os::unix::fs::symlink(&secret, f.state("vms/a/link")).unwrap();
    refused(&f.state("vms/a/link"), true);
    std::os::unix::fs::symlink(&f.root, f.state("vms/d")).unwrap();
    refused(&f.state("vms/d/secret"), true);
    // A FIFO does not block the helper; a directory is not a file.
    nix::unistd::mkfifo(
        &f.state("vms/a/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    std::os::unix::fs::chown(f.state("vms/a/fifo"), Some(OWNER), None).unwrap();
    refused(&f.state("vms/a/fifo"), true);
    refused(&f.state("vms/a"), true);
    // The owner's file they may not write: read-write attach refused.
    let ro_file = f.owned("vms/a/ro", 1 << 20);
    std::fs::set_permissions(&ro_file, std::fs::Permissions::from_mode(0o400)).unwrap();
    refused(&ro_file, false);
    let dev = f.ops.loop_attach(&ro_file, true).unwrap();
    assert!(f.ops.loop_detach(&dev, &ro_file).unwrap());
}

#[test]
fn foreign_loops_are_neither_detached_nor_listed_nor_snapshotted() {
    let Some(f) = fixture("foreign_loops_are_neither_detached_nor_listed_nor_snapshotted") else {
        return;
    };
    let outside = f.root.join("outside.img");
    std::fs::File::create(&outside)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    // Root's file inside the state dir, attached by root.
    let roots = f.state("vms/a/roots.img");
    std::fs::File::create(&roots)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let foreign = foreign_attach(&outside, false);
    let foreign_in = foreign_attach(&roots, true);
    let img = f.owned("images/a.ext4", 1 << 20);
    let cow = f.owned("vms/a/root.cow", 1 << 20);
    let detach_foreign = f.ops.loop_detach(&foreign, &img);
    let detach_foreign_in = f.ops.loop_detach(&foreign_in, &roots);
    let listed = f.ops.list_disks();
    let base = f.ops.loop_attach(&img, true).unwrap();
    let cowl = f.ops.loop_attach(&cow, false).unwrap();
    let snap = |b: &Path, bf: &Path, c: &Path, cf: &Path| {
        f.ops
            .dm_create_snapshot("bgroot-a", 2048, (b, bf), (c, cf), 8)
    };
    let over_foreign = snap(&foreign, &img, &cowl, &cow);
    let over_foreign_cow = snap(&base, &img, &foreign, &cow);
    let swapped = snap(&cowl, &cow, &base, &img);
    let good = snap(&base, &img, &cowl, &cow);
    let still = (loop_backing_file(&foreign), loop_backing_file(&foreign_in));
    foreign_detach(&foreign);
    foreign_detach(&foreign_in);
    let _ = f.ops.loop_detach(&base, &img);
    let _ = f.ops.loop_detach(&cowl, &cow);

    assert!(
        matches!(detach_foreign, Err(PrivOpsError::Refused { .. })),
        "{detach_foreign:?}"
    );
    assert!(
        matches!(detach_foreign_in, Err(PrivOpsError::Refused { .. })),
        "{detach_foreign_in:?}"
    );
    assert_eq!(still.0.as_deref(), Some(outside.as_path()));
    assert_eq!(still.1.as_deref(), Some(roots.as_path()));
    let (_, loops) = listed.unwrap();
    assert!(
        !loops
            .iter()
            .any(|l| l.device == foreign || l.device == foreign_in),
        "{loops:?}"
    );
    for (what, r) in [
        ("foreign base", &over_foreign),
        ("foreign cow", &over_foreign_cow),
        ("read-write base", &swapped),
    ] {
        assert!(
            matches!(r, Err(PrivOpsError::Refused { .. })),
            "{what}: {r:?}"
        );
    }
    // Within the rules, this host only lacks device-mapper.
    match &good {
        Err(PrivOpsError::DeviceMapper { message, .. }) if message.contains("no device-mapper") => {
        }
        other if Path::new("/dev/mapper/control").exists() => {
            let _ = f.ops.dm_remove("bgroot-a");
            assert!(other.is_ok(), "{other:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_loop_whose_file_is_gone_cannot_be_shown_to_be_banger_s() {
    let Some(f) = fixture("a_loop_whose_file_is_gone_cannot_be_shown_to_be_banger_s") else {
        return;
    };
    let cow = f.owned("vms/a/root.cow", 1 << 20);
    let dev = f.ops.loop_attach(&cow, false).unwrap();
    std::fs::remove_file(&cow).unwrap();
    let gone = f.ops.loop_detach(&dev, &cow);
    let listed = f.ops.list_disks();
    // A new file at the same name is another inode: refused.
    let again = f.owned("vms/a/root.cow", 1 << 20);
    let other = f.ops.loop_detach(&dev, &again);
    let still = loop_backing_file(&dev);
    foreign_detach(&dev);
    assert!(!gone.unwrap(), "nothing of ours to detach");
    assert!(
        !listed.unwrap().1.iter().any(|l| l.device == dev),
        "a deleted file's loop is not listed"
    );
    assert!(
        matches!(other, Err(PrivOpsError::Refused { .. })),
        "{other:?}"
    );
    assert!(still.is_some_and(|p| p.to_string_lossy().ends_with("(deleted)")));
}

#[test]
fn autoclear_detaches_when_the_last_holder_closes() {
    let Some(f) = fixture("autoclear_detaches_when_the_last_holder_closes") else {
        return;
    };
    let cow = f.owned("vms/a/root.cow", 4 << 20);
    let dev = f.ops.loop_attach(&cow, false).unwrap();
    // The holder stands in for a dm table that opened the device.
    let holder = std::fs::File::open(&dev).unwrap();
    let set = loop_set_autoclear(&dev);
    let attached_while_held = loop_backing_file(&dev);
    drop(holder);
    let after = loop_backing_file(&dev);
    if after.is_some() {
        let _ = f.ops.loop_detach(&dev, &cow);
    }
    set.unwrap();
    assert_eq!(attached_while_held.as_deref(), Some(cow.as_path()));
    assert_eq!(after, None, "autoclear detached it at the last close");
}
