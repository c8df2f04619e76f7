//! Pause, resume, suspend, snapshots and `vm fork` through the CLI, on the
//! simulator (issue 15): its snapshot files are its own format, but its
//! state rules are Firecracker's, so the daemon's call sequence is the one
//! real Firecracker gets.

use std::path::{Path, PathBuf};

use banger_api::{ErrorKind, Image, Vm, VmDetail, VmSnapshot, VmState};

use crate::daemon::alive;
use crate::qemuguest::ticks;
use crate::util::{Fixtures, TestDaemon};

fn show(d: &TestDaemon, name: &str) -> VmDetail {
    d.cli_json(&["vm", "show", name])
}

fn pid(d: &TestDaemon, name: &str) -> u32 {
    show(d, name).runtime.expect("a VMM").pid
}

fn ino(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().ino()
}

fn fails_with(d: &TestDaemon, args: &[&str], kind: ErrorKind, text: &str) {
    let out = d.cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(kind.exit_code()), "{args:?}: {err}");
    assert!(err.contains(text), "{args:?}: {err}");
}

#[test]
fn pause_resume_snapshot_fork_suspend_and_start_through_the_cli() {
    let Some(fx) =
        Fixtures::new("snapshots::pause_resume_snapshot_fork_suspend_and_start_through_the_cli")
    else {
        return;
    };
    let mut d = TestDaemon::start(&[]);
    let (rootfs, kernel) = (
        fx.rootfs.display().to_string(),
        fx.kernel.display().to_string(),
    );
    d.cli_ok(&[
        "image", "register", "base", "--rootfs", &rootfs, "--kernel", &kernel,
    ]);
    d.cli_ok(&[
        "vm", "create", "src", "--image", "base", "--vcpus", "1", "--memory", "256M",
    ]);
    let src_pid = pid(&d, "src");

    // Pause and resume: the same VMM throughout.
    assert!(d.cli_ok(&["vm", "pause", "src"]).contains("src is paused"));
    assert_eq!(show(&d, "src").vm.state, VmState::Paused);
    fails_with(
        &d,
        &["vm", "start", "src"],
        ErrorKind::Conflict,
        "already paused",
    );
    d.cli_ok(&["vm", "resume", "src"]);
    assert_eq!(show(&d, "src").vm.state, VmState::Running);
    assert_eq!(pid(&d, "src"), src_pid);

    // A named snapshot: memory, state and disk copies; the VM keeps running.
    let s: VmSnapshot = d.cli_json(&["vm", "snapshot", "src", "s1"]);
    assert_eq!((s.name.as_str(), s.memory_mib), ("s1", 256));
    let snap_dir = PathBuf::from(&s.dir);
    for f in ["vm.state", "vm.mem", "snapshot.json", "root.ext4"] {
        assert!(snap_dir.join(f).is_file(), "{f} in the snapshot");
    }
    let detail = show(&d, "src");
    assert_eq!(detail.vm.state, VmState::Running);
    assert_eq!(
        detail
            .snapshots
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["s1"]
    );
    assert!(d.cli_ok(&["vm", "show", "src"]).contains("s1 ("));
    let list: Vec<VmSnapshot> = d.cli_json(&["vm", "snapshot", "list", "src"]);
    assert_eq!(list.len(), 1);
    fails_with(
        &d,
        &["vm", "snapshot", "src", "s1"],
        ErrorKind::Conflict,
        "already has a snapshot s1",
    );
    fails_with(
        &d,
        &["vm", "snapshot", "src", "Bad_Name"],
        ErrorKind::InvalidArgument,
        "invalid snapshot name",
    );

    // A fork of the running VM: its own row, address, MAC, VMM and disks.
    let f1: Vm = d.cli_json(&["vm", "fork", "src", "f1"]);
    let src = show(&d, "src");
    assert_eq!(f1.state, VmState::Running);
    assert_eq!(src.vm.state, VmState::Running, "the source keeps running");
    assert_eq!(src.runtime.as_ref().unwrap().pid, src_pid);
    assert_ne!(f1.guest_ip, src.vm.guest_ip);
    assert_ne!(f1.guest_mac, src.vm.guest_mac);
    let f1d = show(&d, "f1");
    let f1_pid = f1d.runtime.as_ref().unwrap().pid;
    assert_ne!(f1_pid, src_pid);
    assert!(alive(f1_pid));
    assert_ne!(
        ino(Path::new(&f1d.paths.root_disk)),
        ino(Path::new(&src.paths.root_disk))
    );
    assert!(
        !Path::new(&f1d.paths.dir).join("fork.partial").exists(),
        "fork files removed"
    );
    // Restored, not booted: the VMM's log says it loaded a snapshot.
    let vmm_log = std::fs::read_to_string(&f1d.paths.vmm_log).unwrap();
    assert!(vmm_log.contains("restored snapshot"), "{vmm_log}");

    // A fork from the named snapshot.
    let f2: Vm = d.cli_json(&["vm", "fork", "src", "f2", "--from", "s1"]);
    assert_eq!(f2.state, VmState::Running);
    assert!(![src.vm.guest_ip, f1.guest_ip].contains(&f2.guest_ip));
    fails_with(
        &d,
        &["vm", "fork", "src", "f3", "--from", "nope"],
        ErrorKind::NotFound,
        "no snapshot nope",
    );
    fails_with(
        &d,
        &["vm", "fork", "src", "f1"],
        ErrorKind::Conflict,
        "already exists",
    );
    assert!(d.vm("f3").is_err(), "a refused fork leaves no VM");

    // Suspend: snapshot on disk, no VMM left; start resumes from it.
    assert!(
        d.cli_ok(&["vm", "suspend", "f1"])
            .contains("f1 is suspended")
    );
    let f1d = show(&d, "f1");
    assert_eq!(f1d.vm.state, VmState::Suspended);
    assert!(f1d.runtime.is_none());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!alive(f1_pid), "the VMM of a suspended VM is gone");
    let suspend = Path::new(&f1d.paths.dir).join("suspend");
    assert!(suspend.join("vm.mem").is_file());
    fails_with(
        &d,
        &["vm", "set", "f1", "--vcpus", "2"],
        ErrorKind::Conflict,
        "is suspended",
    );
    assert_eq!(show(&d, "f1").vm.vcpus, 1);
    let out = d.cli_ok(&["vm", "start", "f1"]);
    assert!(!out.contains("note:"), "{out}");
    let f1d = show(&d, "f1");
    assert_eq!(f1d.vm.state, VmState::Running);
    assert!(f1d.vm.last_error.is_none());
    assert!(!suspend.exists(), "the suspend snapshot is used up");
    let log = std::fs::read_to_string(&f1d.paths.vmm_log).unwrap();
    assert!(log.contains("restored snapshot"), "{log}");

    // An unusable suspend snapshot: start boots from disk and says so.
    d.cli_ok(&["vm", "suspend", "f1"]);
    std::fs::write(suspend.join("vm.mem"), b"").unwrap();
    let out = d.cli_ok(&["vm", "start", "f1"]);
    assert!(
        out.contains("note: the suspend snapshot could not be restored"),
        "{out}"
    );
    assert_eq!(show(&d, "f1").vm.state, VmState::Running);

    // A suspended VM survives a daemon restart, and an interrupted
    // snapshot's files are removed by reconcile.
    d.cli_ok(&["vm", "suspend", "f2"]);
    let f2_dir = PathBuf::from(show(&d, "f2").paths.dir);
    let partial = Path::new(&s.dir).parent().unwrap().join(".partial-s2");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("vm.mem"), b"x").unwrap();
    d.kill_hard();
    d.spawn();
    assert!(
        !partial.exists(),
        "reconcile removed the interrupted snapshot"
    );
    assert_eq!(show(&d, "f2").vm.state, VmState::Suspended);
    assert!(f2_dir.join("suspend/vm.state").is_file());

    // A snapshot whose kernel is gone is refused before anything is made.
    let images: Vec<Image> = d.cli_json(&["image", "list"]);
    let kernel = PathBuf::from(&images[0].kernel_path);
    let saved = std::fs::read(&kernel).unwrap();
    std::fs::remove_file(&kernel).unwrap();
    fails_with(
        &d,
        &["vm", "fork", "src", "f3", "--from", "s1"],
        ErrorKind::Conflict,
        "is gone",
    );
    assert!(d.vm("f3").is_err());
    std::fs::write(&kernel, saved).unwrap();

    // Delete: a snapshot, a fork (the others keep running), the source
    // with its snapshots.
    d.cli_ok(&["vm", "snapshot", "delete", "src", "s1"]);
    assert!(!snap_dir.exists());
    let list: Vec<VmSnapshot> = d.cli_json(&["vm", "snapshot", "list", "src"]);
    assert!(list.is_empty());
    d.cli_ok(&["vm", "snapshot", "src", "s2"]);
    d.cli_ok(&["vm", "delete", "--force", "f1"]);
    assert_eq!(show(&d, "src").vm.state, VmState::Running);
    d.cli_ok(&["vm", "delete", "--force", "src"]);
    assert!(
        !Path::new(&src.paths.dir).exists(),
        "the source's snapshots went with it"
    );
    d.cli_ok(&["vm", "start", "f2"]);
    assert_eq!(show(&d, "f2").vm.state, VmState::Running);
    d.cli_ok(&["vm", "delete", "--force", "f2"]);
    assert!(d.vm_dirs().is_empty(), "{:?}", d.vm_dirs());
}

/// A fork's guest is given its own identity through its own vsock socket
/// before it is `running`: the simulated guest agent (`FCSIM_GUEST_AGENT`)
/// prints the `IDENTITY` request it got, which carries the fork's address,
/// hostname and MAC, never the source's; readiness then comes from the same
/// agent over vsock.
#[test]
fn a_fork_gets_its_identity_through_the_guest_agent_on_its_own_vsock() {
    let Some(fx) = Fixtures::new(
        "snapshots::a_fork_gets_its_identity_through_the_guest_agent_on_its_own_vsock",
    ) else {
        return;
    };
    let d = TestDaemon::start_with(
        &[("FCSIM_GUEST_AGENT", "1")],
        "[guest]\nreadiness = \"vsock\"\nreadiness_timeout_secs = 20\nsync_identity = false\n",
    );
    let (rootfs, kernel) = (
        fx.rootfs.display().to_string(),
        fx.kernel.display().to_string(),
    );
    d.cli_ok(&[
        "image", "register", "base", "--rootfs", &rootfs, "--kernel", &kernel,
    ]);
    d.cli_ok(&["vm", "create", "src", "--image", "base"]);
    let src = show(&d, "src");
    let fork: Vm = d.cli_json(&["vm", "fork", "src", "copy"]);
    assert_eq!(fork.state, VmState::Running);
    let console = std::fs::read_to_string(show(&d, "copy").paths.console_log).unwrap();
    let sent: Vec<&str> = console
        .lines()
        .filter(|l| l.starts_with("fcsim agent: IDENTITY "))
        .collect();
    assert_eq!(
        sent,
        [format!(
            "fcsim agent: IDENTITY ip={}::::copy:eth0:off mac={}",
            fork.guest_ip, fork.guest_mac
        )],
        "console:\n{console}"
    );
    let src_console = std::fs::read_to_string(&src.paths.console_log).unwrap();
    assert!(
        !src_console.contains("IDENTITY"),
        "the source was not told anything"
    );
    d.cli_ok(&["vm", "delete", "--force", "copy"]);
    d.cli_ok(&["vm", "delete", "--force", "src"]);
}

/// Waits for a tick above `above` on `console`, failing with the daemon's log.
fn wait_tick(d: &TestDaemon, console: &Path, above: u32) -> u32 {
    crate::qemuguest::wait_tick(console, above, std::time::Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", crate::util::tail(&d.log(), 30)))
}

/// Under the QEMU front (a real guest): `vm fork` of a running VM gives a
/// VM whose guest process goes on from where the source's was (its counter
/// does not restart, its `/dev/shm` file is there), the source goes on too;
/// `vm suspend` ends the VMM and `vm start` resumes the process. Prints
/// fork and suspend/start times next to a cold create.
#[test]
fn fork_and_suspend_keep_a_running_process_under_the_qemu_front() {
    const TEST: &str = "snapshots::fork_and_suspend_keep_a_running_process_under_the_qemu_front";
    let Some((d, _fx)) = crate::qemuguest::front_daemon(TEST) else {
        return;
    };
    let console = |name: &str| PathBuf::from(show(&d, name).paths.console_log);

    let cold = std::time::Instant::now();
    d.cli_ok(&["vm", "create", "src", "--image", "busybox"]);
    wait_tick(&d, &console("src"), 0);
    let cold = cold.elapsed();
    let seen = wait_tick(&d, &console("src"), 1);

    let forking = std::time::Instant::now();
    d.cli_ok(&["vm", "fork", "src", "f1"]);
    let first = wait_tick(&d, &console("f1"), 0);
    let fork = forking.elapsed();
    assert!(
        first > seen,
        "the fork's process restarted: tick {first} after {seen}"
    );
    let text = std::fs::read_to_string(console("f1")).unwrap();
    assert!(
        text.contains("kept-in-shm"),
        "/dev/shm in the fork:\n{text}"
    );
    assert!(!text.contains("MARK boot"), "restored, not booted:\n{text}");
    let src_now = *ticks(&console("src")).last().unwrap();
    wait_tick(&d, &console("src"), src_now);

    let f1_pid = pid(&d, "f1");
    let suspending = std::time::Instant::now();
    d.cli_ok(&["vm", "suspend", "f1"]);
    let suspend = suspending.elapsed();
    assert!(!alive(f1_pid), "no VMM left after suspend");
    let size = std::fs::metadata(PathBuf::from(show(&d, "f1").paths.dir).join("suspend/vm.mem"))
        .unwrap()
        .len();
    let before = *ticks(&console("f1")).last().unwrap();
    let starting = std::time::Instant::now();
    let out = d.cli_ok(&["vm", "start", "f1"]);
    assert!(!out.contains("note:"), "{out}");
    let after = wait_tick(&d, &console("f1"), before);
    let resume = starting.elapsed();
    assert!(
        after <= before + 5,
        "resumed, not rebooted: {after} after {before}"
    );

    for vm in ["f1", "src"] {
        d.cli_ok(&["vm", "delete", "--force", vm]);
    }
    eprintln!(
        "qemu front via bangerd: cold create to first tick {:.2} s, fork to first tick {:.2} s ({:.1}x faster), suspend {:.2} s, start to first tick {:.2} s, suspend memory file {} MiB",
        cold.as_secs_f64(),
        fork.as_secs_f64(),
        cold.as_secs_f64() / fork.as_secs_f64(),
        suspend.as_secs_f64(),
        resume.as_secs_f64(),
        size >> 20
    );
}
