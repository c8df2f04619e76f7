//! bangerd with `firecracker_bin` = `banger-fcqemu`: banger still speaks only
//! the Firecracker API, and a real guest boots under QEMU TCG. Checks that
//! `vm create` boots it (console), `vm stats` counts QEMU (the VMM's child)
//! and `vm stop` shuts the guest down through the ACPI power button.
//!
//! The guest is the busybox initramfs of `qemuguest` with Debian's cloud
//! kernel; the root filesystem is a small ext4 image it does not mount. SKIPs
//! visibly without the kernel, QEMU, busybox or mkfs.ext4.

use crate::qemuguest;

use crate::util;
use banger_testsupport::skip;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use banger_api::rpc::ImageRegisterParams;
use banger_api::{Request, VmState, VmStats};
use qemuguest::{build_initramfs, prerequisites};
use util::{Fixtures, TestDaemon};

const FRONT: &str = env!("CARGO_BIN_EXE_banger-fcqemu");

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

#[test]
fn daemon_boots_measures_and_stops_a_qemu_guest() {
    const TEST: &str = "qemu-daemon";
    let (kernel, busybox) = match prerequisites() {
        Ok(p) => p,
        Err(why) => skip!(TEST, "{why}"),
    };
    let Some(fx) = Fixtures::new(TEST) else {
        return;
    };
    let initrd = fx.dir.path().join("initrd.cpio");
    build_initramfs(&kernel, &busybox, &initrd);

    let config = format!(
        "firecracker_bin = {FRONT:?}\n[daemon]\nstop_timeout_secs = 60\nstats_interval_secs = 1\n\
         [vm]\nvcpus = 1\nmemory = \"256M\"\n\
         [guest]\nreadiness = \"none\"\nsync_identity = false\n[network]\nenabled = false\n"
    );
    let mut d = TestDaemon::unstarted(&config, &[("BANGER_QEMU_ACCEL", "tcg")], None);
    d.spawn();
    let _: banger_api::Image = d
        .client()
        .call(Request::ImageRegister(ImageRegisterParams {
            name: "busybox".into(),
            rootfs: fx.rootfs.display().to_string(),
            kernel: kernel.image.display().to_string(),
            initrd: Some(initrd.display().to_string()),
            kernel_name: None,
        }))
        .expect("register image");

    let created = Instant::now();
    d.create("q1", "busybox").expect("vm create");
    let running = d.wait_state("q1", VmState::Running, 60);
    let console = find_file(&d.state_dir().join("vms").join(&running.id), "console.log")
        .unwrap_or_else(|| panic!("no console.log for {}", running.id));
    let deadline = Instant::now() + Duration::from_secs(120);
    let read = || std::fs::read_to_string(&console).unwrap_or_default();
    while !read().contains("MARK ready") {
        assert!(
            Instant::now() < deadline,
            "the guest did not come up; console:\n{}\ndaemon log:\n{}",
            read(),
            util::tail(&d.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let booted = created.elapsed();
    assert!(read().contains("root=/dev/vda rw"), "{}", read());

    let stats: VmStats = d.cli_json(&["vm", "stats", "q1"]);
    assert!(
        stats.rss_bytes > 32 << 20,
        "vm stats must include QEMU's memory (the guest's): {stats:?}"
    );
    assert!(stats.cpu_time_ms > 0, "{stats:?}");

    let stopping = Instant::now();
    d.cli_ok(&["vm", "stop", "q1"]);
    let stopped = d.wait_state("q1", VmState::Stopped, 90);
    assert_eq!(stopped.state, VmState::Stopped);
    assert!(
        read().contains("MARK power button"),
        "the guest was not shut down through its power button:\n{}",
        read()
    );
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "qemu daemon: vm create to guest init ready {:.2} s, vm stop {:.2} s, rss {} MiB\n",
            booted.as_secs_f64(),
            stopping.elapsed().as_secs_f64(),
            stats.rss_bytes >> 20
        )
        .as_bytes(),
    );
}
