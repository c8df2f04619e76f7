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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use banger_api::{VmState, VmStats};

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
    // Without `ticker=`: the guest boots as from the default kernel arguments.
    let Some((d, _fx)) = qemuguest::front_daemon_with(TEST, "console=ttyS0 reboot=k panic=1")
    else {
        return;
    };

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
