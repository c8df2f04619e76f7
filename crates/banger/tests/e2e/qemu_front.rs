//! `banger-fcqemu`, banger's QEMU-backed Firecracker front, driven through
//! its API with banger's own client the way the daemon drives Firecracker.
//!
//! Each test boots a real Linux guest under QEMU TCG (3–12 s): Debian's
//! cloud kernel (from `BANGER_TEST_KERNEL_DIR`, else the cache `.ci/run`
//! fills at /var/cache/banger-ci/kernel: `boot/vmlinuz-*` and
//! `lib/modules/<version>/`) with a tiny initramfs built here from
//! busybox-static and the kernel's virtio modules. Its `/init` prints
//! `MARK ...` lines on the serial console, and powers off when the ACPI power
//! button is pressed. Tests SKIP visibly when the kernel, QEMU or busybox is
//! missing; the network test also needs root (a TAP in a throwaway netns).

use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use banger_fcapi::{BootSource, Drive, InstanceState, MachineConfiguration, NetworkInterface};
use banger_fcproc::{FirecrackerClient, wait_for_socket};

use crate::qemuguest;

use banger_testsupport::skip;
use qemuguest::{build_initramfs, children, prerequisites};

const FRONT: &str = env!("CARGO_BIN_EXE_banger-fcqemu");
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// One `banger-fcqemu` process with its console captured in a file.
struct Front {
    child: Child,
    dir: tempfile::TempDir,
    client: FirecrackerClient,
    kernel: PathBuf,
    initrd: PathBuf,
}

impl Front {
    /// Starts the front (inside `netns` when given) and waits for its API socket.
    async fn start(test: &str, netns: Option<&str>) -> Option<Front> {
        let (kernel, busybox) = match prerequisites() {
            Ok(p) => p,
            Err(why) => {
                skip!(return None; test, "{why}");
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let initrd = dir.path().join("initrd.cpio");
        build_initramfs(&kernel, &busybox, &initrd);
        let sock = dir.path().join("api.sock");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, FRONT]);
                c
            }
            None => Command::new(FRONT),
        };
        cmd.arg("--api-sock")
            .arg(&sock)
            .args(["--id", test])
            .env("BANGER_QEMU_ACCEL", "tcg")
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.path().join("console.log")).unwrap())
            .stderr(fs::File::create(dir.path().join("stderr.log")).unwrap());
        let child = cmd.spawn().expect("spawn banger-fcqemu");
        wait_for_socket(&sock, Duration::from_secs(10), child.id())
            .await
            .expect("the API socket appears");
        let client = FirecrackerClient::new(&sock).with_timeout(Duration::from_secs(30));
        Some(Front {
            child,
            dir,
            client,
            kernel: kernel.image,
            initrd,
        })
    }

    fn console(&self) -> String {
        fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    fn diagnostics(&self) -> String {
        format!(
            "console:\n{}\nstderr:\n{}",
            self.console(),
            fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
        )
    }

    /// Waits until the console shows a line starting with `prefix`; returns that line.
    fn wait_console(&self, prefix: &str) -> String {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(line) = self
                .console()
                .lines()
                .map(|l| l.trim_end_matches('\r'))
                .find(|l| l.starts_with(prefix))
            {
                return line.to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no {prefix:?} on the console within {BOOT_TIMEOUT:?}\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the front did not exit within {within:?}\n{}",
                self.diagnostics()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn configure_boot(&self, args: &str) {
        self.client
            .put_machine_config(&MachineConfiguration::new(1, 256))
            .await
            .unwrap();
        let boot = BootSource::new(self.kernel.to_string_lossy())
            .with_initrd(self.initrd.to_string_lossy())
            .with_boot_args(format!("console=ttyS0 panic=-1 {args}"));
        self.client.put_boot_source(&boot).await.unwrap();
    }

    async fn state(&self) -> InstanceState {
        self.client.instance_info().await.unwrap().state
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Boot with two drives: the console shows the marker, the kernel got
/// `root=/dev/vda rw`, vda is the root drive (writable), vdb the second
/// (read-only, a write fails); SendCtrlAltDel powers the guest off and the
/// front exits 0. `GET /` follows Not started → Running.
#[tokio::test(flavor = "current_thread")]
async fn boots_two_drives_and_powers_off_on_ctrl_alt_del() {
    let Some(mut front) = Front::start("qemu-boot", None).await else {
        return;
    };
    let root = front.dir.path().join("root.img");
    let data = front.dir.path().join("data.img");
    for (path, magic) in [(&root, "ROOTDISK"), (&data, "DATADISK")] {
        let mut bytes = magic.as_bytes().to_vec();
        bytes.resize(1 << 20, 0);
        fs::write(path, bytes).unwrap();
    }
    assert_eq!(front.state().await, InstanceState::NotStarted);
    front.configure_boot("mark=hello-qemu disks=2").await;
    front
        .client
        .put_drive(&Drive::new("rootfs", root.to_string_lossy(), true))
        .await
        .unwrap();
    front
        .client
        .put_drive(&Drive::new("data", data.to_string_lossy(), false).read_only(true))
        .await
        .unwrap();
    let started = Instant::now();
    front.client.instance_start().await.unwrap();
    assert_eq!(front.state().await, InstanceState::Running);

    assert_eq!(front.wait_console("MARK boot"), "MARK boot hello-qemu");
    let cmdline = front.wait_console("MARK cmdline");
    assert!(cmdline.contains("root=/dev/vda rw"), "{cmdline}");
    assert!(cmdline.contains("tsc_early_khz="), "{cmdline}");
    front.wait_console("MARK ready");
    let booted = started.elapsed();
    assert_eq!(
        front.wait_console("MARK disk vda"),
        "MARK disk vda ro=0 head=ROOTDISK"
    );
    assert_eq!(
        front.wait_console("MARK disk vdb"),
        "MARK disk vdb ro=1 head=DATADISK"
    );
    assert_eq!(front.wait_console("MARK write vda"), "MARK write vda ok");
    assert_eq!(
        front.wait_console("MARK write vdb"),
        "MARK write vdb refused"
    );
    // A pre-boot call after the start is still refused as Firecracker does.
    let err = front
        .client
        .put_machine_config(&MachineConfiguration::new(2, 256))
        .await
        .unwrap_err();
    assert!(
        err.fault_message()
            .is_some_and(|m| m.contains("not supported after starting")),
        "{err}"
    );

    // `vm stats` reads the VMM's process tree: with the front, QEMU (the
    // guest's memory and vCPU time) is a child and must be counted.
    let procfs = banger_fcproc::ProcFs::host();
    let own = procfs.stats(front.child.id()).unwrap();
    let tree = procfs.tree_stats(front.child.id()).unwrap();
    assert!(
        tree.rss_bytes > own.rss_bytes + (16 << 20),
        "QEMU's memory is missing from the tree: front {own:?}, tree {tree:?}"
    );
    assert!(tree.cpu_time_ms > own.cpu_time_ms, "{own:?} vs {tree:?}");

    // PATCH /vm pauses and resumes the guest through QMP.
    front
        .client
        .patch("/vm", &serde_json::json!({"state": "Paused"}))
        .await
        .unwrap();
    assert_eq!(front.state().await, InstanceState::Paused);
    front
        .client
        .patch("/vm", &serde_json::json!({"state": "Resumed"}))
        .await
        .unwrap();
    assert_eq!(front.state().await, InstanceState::Running);

    let pressed = Instant::now();
    front.client.send_ctrl_alt_del().await.unwrap();
    let status = front.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}\n{}", front.diagnostics());
    assert!(front.console().contains("MARK power button"));
    // The guest really wrote its root drive and not the read-only one.
    assert_eq!(&fs::read(&root).unwrap()[..8], b"WOOTDISK");
    assert_eq!(&fs::read(&data).unwrap()[..8], b"DATADISK");
    let _ = writeln!(
        std::io::stderr(),
        "qemu front: InstanceStart to /init ready {:.2} s, SendCtrlAltDel to exit {:.2} s",
        booted.as_secs_f64(),
        pressed.elapsed().as_secs_f64()
    );
}

/// Calls QEMU cannot honour get a 400 naming the QEMU front, and a QEMU that
/// cannot start fails InstanceStart with its reason while the front stays up.
#[tokio::test(flavor = "current_thread")]
async fn refuses_what_qemu_cannot_do_and_reports_start_failures() {
    let Some(mut front) = Front::start("qemu-refusals", None).await else {
        return;
    };
    let err = front
        .client
        .put(
            "/balloon",
            &serde_json::json!({"amount_mib": 0, "deflate_on_oom": false}),
        )
        .await
        .unwrap_err();
    let message = err.fault_message().unwrap_or_default().to_string();
    assert!(
        message.contains("QEMU front") && message.contains("balloon"),
        "{message}"
    );
    let err = front
        .client
        .put(
            "/snapshot/load",
            &serde_json::json!({"snapshot_path": "/x", "mem_backend": {"backend_type": "Uffd", "backend_path": "/y"}}),
        )
        .await
        .unwrap_err();
    assert!(
        err.fault_message()
            .is_some_and(|m| m.contains("QEMU front") && m.contains("Uffd")),
        "{err}"
    );
    // QEMU refuses an absurd machine: the start fails with QEMU's reason, and
    // the VM stays Not started, as with Firecracker.
    front.configure_boot("mark=never").await;
    front
        .client
        .put_machine_config(&MachineConfiguration::new(1, 64 << 30))
        .await
        .unwrap();
    let err = front.client.instance_start().await.unwrap_err();
    let message = err.fault_message().unwrap_or_default().to_string();
    assert!(
        message.starts_with("Start microvm error: QEMU exited during startup"),
        "{message}\n{}",
        front.diagnostics()
    );
    assert_eq!(front.state().await, InstanceState::NotStarted);

    // A corrected retry starts; QEMU dying under it ends the front with
    // status 1 and Firecracker's error line on stderr.
    front
        .client
        .put_machine_config(&MachineConfiguration::new(1, 128))
        .await
        .unwrap();
    front.client.instance_start().await.unwrap();
    assert_eq!(front.state().await, InstanceState::Running);
    let qemu = children(front.child.id());
    assert_eq!(qemu.len(), 1, "one QEMU child: {qemu:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = front.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1), "{}", front.diagnostics());
    let diagnostics = front.diagnostics();
    assert!(
        diagnostics.contains("QEMU ended abnormally: QEMU killed by signal 9"),
        "{diagnostics}"
    );
    assert!(
        diagnostics.contains("Error: RunWithApi(MicroVMStoppedWithError("),
        "{diagnostics}"
    );
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("run ip");
    assert!(status.success(), "ip {args:?} failed");
}

/// A NIC on a TAP inside a throwaway netns: the guest's eth0 has the
/// configured MAC and answers ping from the netns; SIGKILL of the front
/// takes QEMU down with it.
#[tokio::test(flavor = "current_thread")]
async fn nic_gets_the_mac_answers_ping_and_dies_with_the_front() {
    const TEST: &str = "qemu-net";
    if !nix::unistd::geteuid().is_root() {
        skip!(TEST, "needs root for a TAP in a network namespace");
    }
    if let Err(why) = prerequisites() {
        skip!(TEST, "{why}");
    }
    let ns = Netns(format!("bqemu-{}", std::process::id()));
    ip(&["netns", "add", &ns.0]);
    ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
    ip(&["-n", &ns.0, "tuntap", "add", "dev", "qtap0", "mode", "tap"]);
    ip(&["-n", &ns.0, "addr", "add", "10.77.0.1/24", "dev", "qtap0"]);
    ip(&["-n", &ns.0, "link", "set", "qtap0", "up"]);

    let Some(mut front) = Front::start(TEST, Some(&ns.0)).await else {
        return;
    };
    front.configure_boot("mark=net guestip=10.77.0.2").await;
    let mac = "06:00:0a:4d:00:02";
    front
        .client
        .put_network_interface(
            &NetworkInterface::new("eth0", "qtap0").with_mac(mac.parse().unwrap()),
        )
        .await
        .unwrap();
    front.client.instance_start().await.unwrap();
    assert_eq!(front.wait_console("MARK mac"), format!("MARK mac {mac}"));
    front.wait_console("MARK ready");
    // busybox's ping: busybox-static is a prerequisite anyway.
    let (_, busybox) = prerequisites().unwrap();
    let ping = Command::new("ip")
        .args(["netns", "exec", &ns.0])
        .arg(&busybox)
        .args(["ping", "-c", "3", "-W", "5", "10.77.0.2"])
        .output()
        .expect("run ping");
    assert!(
        ping.status.success(),
        "ping failed: {}{}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        String::from_utf8_lossy(&ping.stderr),
        front.diagnostics()
    );

    let qemu = children(front.child.id());
    assert_eq!(qemu.len(), 1, "one QEMU child: {qemu:?}");
    front.child.kill().unwrap();
    front.child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(qemu[0]) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(qemu[0]), "QEMU outlived the SIGKILLed front");
}

/// Whether `pid` is a live process (a zombie, dead but not reaped yet, is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s[s.rfind(')')? + 2..].chars().next())
        .is_some_and(|state| !matches!(state, 'Z' | 'X'))
}

/// The tick counter of the guest's ticker process in the console's lines
/// (`MARK tick N <text kept in /dev/shm>`).
fn ticks(console: &str) -> Vec<(u32, String)> {
    console
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("MARK tick "))
        .filter_map(|rest| {
            let (n, kept) = rest.split_once(' ')?;
            Some((n.parse().ok()?, kept.to_string()))
        })
        .collect()
}

/// Snapshots through the front behave as on Firecracker: create only while
/// paused, then resume; a fresh front loads the snapshot (a QEMU migration
/// stream in the memory file) before any configuration, and the guest's
/// running process and `/dev/shm` go on where they were (its counter does
/// not restart).
#[tokio::test(flavor = "current_thread")]
async fn snapshot_create_and_load_keep_the_guests_processes() {
    let Some(mut src) = Front::start("qemu-snap-src", None).await else {
        return;
    };
    let root = src.dir.path().join("root.img");
    fs::write(&root, vec![0u8; 1 << 20]).unwrap();
    src.configure_boot("mark=snap ticker=kept-in-shm").await;
    src.client
        .put_drive(&Drive::new("rootfs", root.to_string_lossy(), false))
        .await
        .unwrap();
    src.client.instance_start().await.unwrap();
    src.wait_console("MARK tick 2 ");
    let files = src.dir.path().join("snap");
    fs::create_dir(&files).unwrap();
    let (state, mem) = (files.join("vm.state"), files.join("vm.mem"));
    let create =
        banger_fcapi::SnapshotCreateParams::full(state.to_string_lossy(), mem.to_string_lossy());
    let err = src.client.create_snapshot(&create).await.unwrap_err();
    assert!(
        err.fault_message()
            .is_some_and(|m| m.contains("unavailable while running")),
        "{err}"
    );
    src.client.pause_vm().await.unwrap();
    let saving = Instant::now();
    src.client
        .create_snapshot(&create)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", src.diagnostics()));
    let saved = saving.elapsed();
    let at_snapshot = ticks(&src.console()).last().unwrap().0;
    src.client.resume_vm().await.unwrap();
    assert_eq!(src.state().await, InstanceState::Running);
    src.wait_console(&format!("MARK tick {} ", at_snapshot + 1));
    let _ = src.child.kill();
    let _ = src.wait_exit(Duration::from_secs(10));

    let Some(dst) = Front::start("qemu-snap-dst", None).await else {
        return;
    };
    let mut load = banger_fcapi::SnapshotLoadParams::from_files(
        state.to_string_lossy(),
        mem.to_string_lossy(),
    );
    load.resume_vm = Some(true);
    let loading = Instant::now();
    dst.client
        .load_snapshot(&load)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", dst.diagnostics()));
    let loaded = loading.elapsed();
    assert_eq!(dst.state().await, InstanceState::Running);
    dst.wait_console("MARK tick ");
    let after = ticks(&dst.console());
    assert!(
        after[0].0 > at_snapshot,
        "the ticker restarted ({after:?} after {at_snapshot})\n{}",
        dst.diagnostics()
    );
    assert_eq!(after[0].1, "kept-in-shm", "/dev/shm survived");
    assert!(!dst.console().contains("MARK boot"), "restored, not booted");
    let _ = writeln!(
        std::io::stderr(),
        "qemu front: snapshot create {:.2} s, load {:.2} s, memory file {} MiB",
        saved.as_secs_f64(),
        loaded.as_secs_f64(),
        fs::metadata(&mem).unwrap().len() >> 20
    );
}
