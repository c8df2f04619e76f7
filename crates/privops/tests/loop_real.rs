//! Loop devices for real through `LocalPrivOps` (root only; this host has
//! loop devices but no device-mapper, so dm ops are covered by the
//! recording fakes of banger-dmsnap).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use banger_privops::{DiskOps, LocalPrivOps, Policy, loop_backing_file, loop_set_autoclear};

#[test]
fn loop_attach_list_detach_for_real() {
    if !nix::unistd::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
        writeln!(
            std::io::stderr(),
            "SKIP loop_attach_list_detach_for_real: needs root and /dev/loop-control"
        )
        .unwrap();
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("state/images")).unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    let ops = LocalPrivOps::new(Policy {
        device_prefix: "bg".into(),
        state_dir: root.join("state"),
        runtime_dir: root.join("run"),
        subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: 0,
        vmm_binary: PathBuf::from("/usr/bin/firecracker"),
    });
    let img = root.join("state/images/a.ext4");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let dev = ops.loop_attach(&img, true).unwrap();
    let listed = ops.list_disks();
    let detached = ops.loop_detach(&dev);
    let (_, loops) = listed.unwrap();
    assert!(
        loops
            .iter()
            .any(|l| l.device == dev && l.backing_file == img),
        "{dev:?} not in {loops:?}"
    );
    assert!(detached.unwrap(), "was attached");
    // (Detaching again is not tried: another process may have been given
    // the same loop device meanwhile.)
    // Outside banger's directories: refused, nothing attached.
    assert!(ops.loop_attach(Path::new("/etc/hostname"), true).is_err());
}

fn root_ops(root: &Path) -> Option<LocalPrivOps> {
    if !nix::unistd::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
        return None;
    }
    std::fs::create_dir_all(root.join("state/vms/a")).unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    Some(LocalPrivOps::new(Policy {
        device_prefix: "bg".into(),
        state_dir: root.join("state"),
        runtime_dir: root.join("run"),
        subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: 0,
        vmm_binary: PathBuf::from("/usr/bin/firecracker"),
    }))
}

#[test]
fn read_only_and_read_write_attach_and_guarded_detach_for_real() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let Some(ops) = root_ops(&root) else {
        writeln!(
            std::io::stderr(),
            "SKIP read_only_and_read_write_attach...: needs root and /dev/loop-control"
        )
        .unwrap();
        return;
    };
    let cow = root.join("state/vms/a/root.cow");
    std::fs::File::create(&cow)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let ro = ops.loop_attach(&cow, true).unwrap();
    let rw = ops.loop_attach(&cow, false).unwrap();
    let ro_flag = |d: &Path| {
        let n = d.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::read_to_string(format!("/sys/block/{n}/ro")).unwrap()
    };
    let (ro_state, rw_state) = (ro_flag(&ro), ro_flag(&rw));
    // A detach that names another backing file leaves the device alone.
    let other = root.join("state/vms/a/other");
    let kept = ops.loop_detach_if(&rw, &other);
    let still = loop_backing_file(&rw);
    let d1 = ops.loop_detach_if(&rw, &cow);
    let d2 = ops.loop_detach(&ro);
    assert_eq!(ro_state.trim(), "1", "base attached read-only");
    assert_eq!(rw_state.trim(), "0", "COW attached read-write");
    assert!(!kept.unwrap(), "another file named: not detached");
    assert_eq!(still.as_deref(), Some(cow.as_path()));
    assert!(d1.unwrap() && d2.unwrap());
}

#[test]
fn autoclear_detaches_when_the_last_holder_closes() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    let Some(ops) = root_ops(&root) else {
        writeln!(
            std::io::stderr(),
            "SKIP autoclear_detaches_when_the_last_holder_closes: needs root and /dev/loop-control"
        )
        .unwrap();
        return;
    };
    let cow = root.join("state/vms/a/root.cow");
    std::fs::File::create(&cow)
        .unwrap()
        .set_len(4 << 20)
        .unwrap();
    let dev = ops.loop_attach(&cow, false).unwrap();
    // The holder stands in for a dm table that opened the device.
    let holder = std::fs::File::open(&dev).unwrap();
    let set = loop_set_autoclear(&dev);
    let attached_while_held = loop_backing_file(&dev);
    drop(holder);
    let after = loop_backing_file(&dev);
    if after.is_some() {
        let _ = ops.loop_detach_if(&dev, &cow);
    }
    set.unwrap();
    assert_eq!(attached_while_held.as_deref(), Some(cow.as_path()));
    assert_eq!(after, None, "autoclear detached it at the last close");
}
