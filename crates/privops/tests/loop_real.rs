//! Loop devices for real through `LocalPrivOps` (root only; this host has
//! loop devices but no device-mapper, so dm ops are covered by the
//! recording fakes of banger-dmsnap).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use banger_privops::{DiskOps, LocalPrivOps, Policy};

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
