//! End-to-end tests: the `banger` CLI and client against a real `bangerd`
//! whose firecracker binary is the strict simulator.

use crate::util;

use banger_testsupport::skip;

use std::collections::HashSet;
use std::time::Duration;

use banger_api::rpc::{VmCreateParams, VmRef, VmStopParams};
use banger_api::{ErrorKind, Request, Vm, VmCreated, VmDetail, VmLogs, VmState, VmStats};
use util::{Fixtures, TestDaemon, is_root};

#[test]
fn lifecycle_through_the_cli() {
    let Some(fx) = Fixtures::new("lifecycle_through_the_cli") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    let rootfs = fx.rootfs.display().to_string();
    let kernel = fx.kernel.display().to_string();
    d.cli_ok(&[
        "image", "register", "base", "--rootfs", &rootfs, "--kernel", &kernel,
    ]);
    let images: Vec<banger_api::Image> = d.cli_json(&["image", "list"]);
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].name, "base");

    d.cli_ok(&[
        "vm", "create", "dev", "--image", "base", "--vcpus", "1", "--memory", "256M",
    ]);
    let vm: VmDetail = d.cli_json(&["vm", "show", "dev"]);
    assert_eq!(vm.vm.state, VmState::Running);
    assert_eq!((vm.vm.vcpus, vm.vm.memory_mib), (1, 256));
    let pid1 = vm.runtime.as_ref().expect("runtime of a running VM").pid;
    assert!(std::path::Path::new(&format!("/proc/{pid1}")).exists());
    let list: Vec<Vm> = d.cli_json(&["vm", "list"]);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].name, "dev");
    assert!(d.cli_ok(&["vm", "list"]).contains("dev"));

    d.cli_ok(&["vm", "stop", "dev"]);
    let vm: VmDetail = d.cli_json(&["vm", "show", "dev"]);
    assert_eq!(vm.vm.state, VmState::Stopped);
    assert!(vm.runtime.is_none());
    assert!(!std::path::Path::new(&format!("/proc/{pid1}/cmdline")).exists() || !alive(pid1));

    d.start_then_restart("dev");

    // set refuses a running VM, works on a stopped one.
    let out = d.cli(&["vm", "set", "dev", "--vcpus", "2"]);
    assert_eq!(out.status.code(), Some(ErrorKind::Conflict.exit_code()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
    d.cli_ok(&["vm", "stop", "dev"]);
    d.cli_ok(&[
        "vm", "set", "dev", "--vcpus", "2", "--memory", "512M", "--disk", "64M",
    ]);
    let vm: Vm = d.cli_json(&["vm", "show", "dev"]);
    assert_eq!((vm.vcpus, vm.memory_mib, vm.disk_bytes), (2, 512, 64 << 20));

    d.cli_ok(&["vm", "start", "dev"]);
    let stats: VmStats = d.cli_json(&["vm", "stats", "dev"]);
    assert!(stats.pid.is_some());
    assert!(stats.rss_bytes > 0);
    let logs: VmLogs = d.cli_json(&["vm", "logs", "dev"]);
    assert!(
        !logs.lines.is_empty(),
        "console has the simulator's boot lines"
    );

    d.cli_ok(&["vm", "kill", "dev"]);
    assert_eq!(d.vm("dev").unwrap().state, VmState::Stopped);
    d.cli_ok(&["vm", "delete", "dev"]);
    let list: Vec<Vm> = d.cli_json(&["vm", "list"]);
    assert!(list.is_empty());
    assert!(
        d.vm_dirs().is_empty(),
        "VM directory removed: {:?}",
        d.vm_dirs()
    );
    let out = d.cli(&["vm", "show", "dev"]);
    assert_eq!(out.status.code(), Some(ErrorKind::NotFound.exit_code()));
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn vmm_crash_after_start_leaves_vm_stopped_with_reason() {
    let Some(fx) = Fixtures::new("vmm_crash_after_start") else {
        return;
    };
    let d = TestDaemon::start(&[("FCSIM_CRASH_AFTER_START_MS", "300")]);
    d.register_image(&fx, "base");
    d.create("crashy", "base").unwrap();
    let vm = d.wait_state("crashy", VmState::Stopped, 10);
    let reason = vm.last_error.expect("a reason is recorded");
    assert!(reason.contains("exited with status 1"), "{reason}");
    assert!(
        d.client()
            .call::<VmDetail>(Request::VmShow(VmRef {
                vm: "crashy".into()
            }))
            .unwrap()
            .runtime
            .is_none()
    );
}

#[test]
fn refused_instance_start_leaves_vm_in_error() {
    let Some(fx) = Fixtures::new("refused_instance_start") else {
        return;
    };
    let d = TestDaemon::start(&[("FCSIM_REFUSE_START", "1")]);
    d.register_image(&fx, "base");
    let mut c = d.client();
    let created: VmCreated = c
        .call(Request::VmCreate(VmCreateParams {
            name: "nostart".into(),
            image: Some("base".into()),
            ..Default::default()
        }))
        .unwrap();
    let op = c.watch(&created.operation.unwrap().id, |_| {}).unwrap();
    let err = op.error.expect("the operation failed");
    assert!(
        err.message.contains("Start microvm error"),
        "{}",
        err.message
    );
    let vm = d.vm("nostart").unwrap();
    assert_eq!(vm.state, VmState::Error);
    assert!(vm.last_error.unwrap().contains("Start microvm error"));
    // Nothing of the VMM is left running.
    let detail: VmDetail = c
        .call(Request::VmShow(VmRef {
            vm: "nostart".into(),
        }))
        .unwrap();
    assert!(detail.runtime.is_none());
}

#[test]
fn stop_kills_a_vmm_that_ignores_ctrl_alt_del() {
    let Some(fx) = Fixtures::new("stop_kills_ignoring_vmm") else {
        return;
    };
    let d = TestDaemon::start(&[
        ("FCSIM_IGNORE_CTRL_ALT_DEL", "1"),
        ("FCSIM_SOCKET_DELAY_MS", "200"),
    ]);
    d.register_image(&fx, "base");
    d.create("stubborn", "base").unwrap();
    let pid = d
        .client()
        .call::<VmDetail>(Request::VmShow(VmRef {
            vm: "stubborn".into(),
        }))
        .unwrap()
        .runtime
        .unwrap()
        .pid;
    let t = std::time::Instant::now();
    let vm: Vm = d
        .client()
        .call(Request::VmStop(VmStopParams {
            vm: "stubborn".into(),
            timeout_secs: Some(1),
        }))
        .unwrap();
    assert_eq!(vm.state, VmState::Stopped);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "waited for the timeout first"
    );
    assert!(!alive(pid));
}

#[test]
fn daemon_restart_adopts_live_vms_and_reaps_dead_ones() {
    let Some(fx) = Fixtures::new("daemon_restart_adopts") else {
        return;
    };
    let mut d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    d.create("keep", "base").unwrap();
    d.create("lose", "base").unwrap();
    d.create("watched", "base").unwrap();
    let pid_of = |d: &TestDaemon, n: &str| {
        d.client()
            .call::<VmDetail>(Request::VmShow(VmRef { vm: n.into() }))
            .unwrap()
            .runtime
            .unwrap()
            .pid
    };
    let keep_pid = pid_of(&d, "keep");
    let lose_pid = pid_of(&d, "lose");
    let watched_pid = pid_of(&d, "watched");
    d.kill_hard();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(lose_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    d.spawn();
    let keep = d.vm("keep").unwrap();
    assert_eq!(keep.state, VmState::Running, "live VMM adopted");
    assert_eq!(pid_of(&d, "keep"), keep_pid);
    let lose = d.vm("lose").unwrap();
    assert_eq!(lose.state, VmState::Stopped, "dead VMM reaped");
    assert!(
        lose.last_error
            .unwrap()
            .contains("while bangerd was not running")
    );
    // An adopted VM stops through the API like any other.
    let vm: Vm = d
        .client()
        .call(Request::VmStop(VmStopParams {
            vm: "keep".into(),
            timeout_secs: None,
        }))
        .unwrap();
    assert_eq!(vm.state, VmState::Stopped);
    assert!(!alive(keep_pid));
    // The adopted VMM's exit is watched too: kill it behind the daemon's back.
    assert_eq!(d.vm("watched").unwrap().state, VmState::Running);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watched_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let vm = d.wait_state("watched", VmState::Stopped, 10);
    assert!(vm.last_error.unwrap().contains("while the VM was running"));
    // A VMM this daemon started reports how it ended.
    d.client()
        .call::<Vm>(Request::VmStart(VmRef { vm: "lose".into() }))
        .unwrap();
    let pid = pid_of(&d, "lose");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let vm = d.wait_state("lose", VmState::Stopped, 10);
    let reason = vm.last_error.unwrap();
    assert!(reason.contains("killed by signal SIGKILL"), "{reason}");
    // And an adopted VM starts again after the restart.
    let vm: Vm = d
        .client()
        .call(Request::VmStart(VmRef { vm: "keep".into() }))
        .unwrap();
    assert_eq!(vm.state, VmState::Running);
}

#[test]
fn concurrent_creates_get_distinct_addresses() {
    let Some(fx) = Fixtures::new("concurrent_creates") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    let vms: Vec<Vm> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let d = &d;
                s.spawn(move || d.create(&format!("vm{i}"), "base").unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ips: HashSet<_> = vms.iter().map(|v| v.guest_ip).collect();
    let macs: HashSet<_> = vms.iter().map(|v| v.guest_mac.clone()).collect();
    assert_eq!(ips.len(), 20);
    assert_eq!(macs.len(), 20);
    assert!(vms.iter().all(|v| v.state == VmState::Running));
    let list: Vec<Vm> = d.client().call(Request::VmList).unwrap();
    assert_eq!(list.len(), 20);
}

#[test]
fn racing_creates_for_one_name_yield_one_vm() {
    let Some(fx) = Fixtures::new("racing_creates") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let d = &d;
                s.spawn(move || {
                    d.client()
                        .call::<VmCreated>(Request::VmCreate(VmCreateParams {
                            name: "same".into(),
                            image: Some("base".into()),
                            no_start: true,
                            ..Default::default()
                        }))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    let err = results.into_iter().find_map(|r| r.err()).unwrap();
    assert_eq!(err.rpc().map(|e| e.kind), Some(ErrorKind::Conflict));
    let list: Vec<Vm> = d.client().call(Request::VmList).unwrap();
    assert_eq!(list.len(), 1);
}

#[test]
fn bad_input_is_refused_and_leaves_nothing() {
    let Some(fx) = Fixtures::new("bad_input") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    let cases: &[(&[&str], &str)] = &[
        (
            &["vm", "create", "Bad_Name", "--image", "base"],
            "invalid VM name",
        ),
        (&["vm", "create", "-x", "--image", "base"], ""),
        (
            &["vm", "create", "ok1", "--image", "base", "--vcpus", "0"],
            "vCPU",
        ),
        (
            &["vm", "create", "ok2", "--image", "base", "--vcpus", "64"],
            "vCPU",
        ),
        (
            &["vm", "create", "ok3", "--image", "base", "--memory", "12"],
            "memory",
        ),
        (
            &["vm", "create", "ok4", "--image", "base", "--memory", "lots"],
            "size",
        ),
        (
            &["vm", "create", "ok5", "--image", "base", "--disk", "1M"],
            "smaller than image",
        ),
        (
            &["vm", "create", "ok6", "--image", "nope"],
            "no image named",
        ),
    ];
    for (args, needle) in cases {
        let out = d.cli(args);
        assert!(!out.status.success(), "{args:?} accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    // The daemon refuses the same things from any client.
    let mut c = d.client();
    let e = c
        .call::<VmCreated>(Request::VmCreate(VmCreateParams {
            name: "a.b".into(),
            ..Default::default()
        }))
        .unwrap_err();
    assert_eq!(e.rpc().map(|e| e.kind), Some(ErrorKind::InvalidArgument));
    let e = c
        .call::<VmCreated>(Request::VmCreate(VmCreateParams {
            name: "big".into(),
            image: Some("base".into()),
            vcpus: Some(33),
            ..Default::default()
        }))
        .unwrap_err();
    assert_eq!(e.rpc().map(|e| e.kind), Some(ErrorKind::InvalidArgument));
    let list: Vec<Vm> = c.call(Request::VmList).unwrap();
    assert!(list.is_empty(), "{list:?}");
    assert!(d.vm_dirs().is_empty(), "{:?}", d.vm_dirs());
    // A bad image registration leaves nothing either.
    let out = d.cli(&[
        "image",
        "register",
        "bad",
        "--rootfs",
        &fx.kernel.display().to_string(),
        "--kernel",
        &fx.kernel.display().to_string(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(ErrorKind::InvalidArgument.exit_code())
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("ext4"));
    let images: Vec<banger_api::Image> = c.call(Request::ImageList).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(util::list_dir(&d.state_dir().join("images")).len(), 1);
}

#[test]
fn image_in_use_cannot_be_deleted() {
    let Some(fx) = Fixtures::new("image_in_use") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    d.cli_ok(&["vm", "create", "user1", "--image", "base", "--no-start"]);
    let out = d.cli(&["image", "delete", "base"]);
    assert_eq!(out.status.code(), Some(ErrorKind::Conflict.exit_code()));
    assert!(String::from_utf8_lossy(&out.stderr).contains("user1"));
    d.cli_ok(&["vm", "delete", "user1"]);
    d.cli_ok(&["image", "delete", "base"]);
    assert!(util::list_dir(&d.state_dir().join("images")).is_empty());
}

#[test]
fn socket_is_private_and_other_users_are_refused() {
    if !is_root() {
        skip!(
            "socket_is_private",
            "needs root to run a client as another uid"
        );
    }
    let d = TestDaemon::start(&[]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Open the file mode up so only the SO_PEERCRED check stands in the way.
    std::fs::set_permissions(d.state_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        d.state_dir().join("run"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(d.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(d.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(util::bin("banger"))
        .env("HOME", "/nonexistent")
        .arg("--socket")
        .arg(d.socket())
        .args(["vm", "list"])
        .output();
    let Ok(out) = out else {
        skip!("socket_is_private", "setpriv is not available");
    };
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("another user"), "{stderr}");
}

#[test]
fn idle_vms_are_stopped() {
    let Some(fx) = Fixtures::new("idle_vms_are_stopped") else {
        return;
    };
    // The simulator burns no CPU, so any threshold above zero finds it idle.
    let d = TestDaemon::start_with(&[], "idle_stop_secs = 2\nidle_cpu_ms = 50");
    d.register_image(&fx, "base");
    d.create("sleepy", "base").unwrap();
    let vm = d.wait_state("sleepy", VmState::Stopped, 15);
    assert!(vm.last_error.is_none(), "an idle stop is not an error");
    assert!(d.log().contains("stopping idle VM"));
}

/// A state dir whose `run/` sockets would not fit a Unix socket address:
/// bangerd refuses to start, says why, and creates nothing.
#[test]
fn bangerd_refuses_a_state_dir_too_long_for_its_sockets() {
    let t = tempfile::tempdir().unwrap();
    let state = t.path().join("s".repeat(90));
    let config = t.path().join("config.toml");
    std::fs::write(&config, "[network]\nenabled = false\n").unwrap();
    let mut child = std::process::Command::new(util::bin("bangerd"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--config")
        .arg(&config)
        .env_remove("XDG_RUNTIME_DIR")
        .env("HOME", t.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bangerd started with a runtime dir too long for its sockets");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("too long for Unix sockets"), "{err}");
    assert!(!state.exists(), "nothing is created: {err}");
}

/// Two dev daemons (two state dirs) and one user: each daemon's VMs get
/// their own file in `~/.ssh/config.d/`, one `Include` covers both, and a
/// `vm create` on one daemon never drops the other daemon's VMs.
#[test]
fn two_daemons_keep_their_own_ssh_config_files() {
    let Some(fx) = Fixtures::new("two_daemons_keep_their_own_ssh_config_files") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let (a, b) = (TestDaemon::start(&[]), TestDaemon::start(&[]));
    for (d, vm) in [(&a, "alpha"), (&b, "beta")] {
        d.register_image(&fx, "base");
        let out = d.cli_in_home(
            home.path(),
            &["vm", "create", vm, "--image", "base", "--no-start"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = d.cli_in_home(home.path(), &["ssh-config"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = home.path().join(".ssh/config.d");
    let read = |want: &str| -> String {
        let mut hits: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .filter(|t| t.contains(&format!("Host {want}.vm")))
            .collect();
        assert_eq!(hits.len(), 1, "one file has {want}.vm");
        hits.pop().unwrap()
    };
    assert!(!read("alpha").contains("beta.vm"));
    // A create on b refreshes b's file only; alpha is still reachable.
    let out = b.cli_in_home(
        home.path(),
        &["vm", "create", "gamma", "--image", "base", "--no-start"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(read("beta").contains("Host gamma.vm"));
    assert!(!read("alpha").contains("gamma.vm"));
    let main = std::fs::read_to_string(home.path().join(".ssh/config")).unwrap();
    assert_eq!(
        main.lines()
            .filter(|l| l.starts_with("Include"))
            .collect::<Vec<_>>(),
        vec!["Include ~/.ssh/config.d/banger*"],
        "{main}"
    );
}

/// A console log past its cap is rotated under the running VMM (which
/// keeps appending to it), and `vm logs` reads across the two files.
#[test]
fn console_log_is_rotated_and_read_across_generations() {
    let Some(fx) = Fixtures::new("console_log_is_rotated_and_read_across_generations") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    let vm = d.create("loud", "base").unwrap();
    d.wait_state("loud", VmState::Running, 20);
    let console = d.state_dir().join("vms").join(&vm.id).join("console.log");
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&console)
            .unwrap();
        let line = format!("{}\n", "x".repeat(1023));
        for _ in 0..(9 << 10) {
            f.write_all(line.as_bytes()).unwrap();
        }
        f.write_all(b"last line before rotation\n").unwrap();
    }
    let rotated = console.with_file_name("console.log.1");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !rotated.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(rotated.exists(), "rotated within the stats interval");
    assert!(std::fs::metadata(&console).unwrap().len() < 1 << 20);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&console)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"first line after\n"))
        .unwrap();
    let logs: VmLogs = d.cli_json(&["vm", "logs", "loud", "--tail", "2"]);
    assert_eq!(
        logs.lines
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .last(),
        Some(&"first line after"),
        "{:?}",
        logs.lines
    );
    assert!(
        logs.lines
            .iter()
            .any(|l| l.contains("last line before rotation"))
    );
}

/// `bangerd.service` is `Type=notify`: bangerd sends `READY=1` (with its
/// socket in `STATUS=`) to `$NOTIFY_SOCKET` once the socket serves, and
/// `STOPPING=1` when SIGTERM arrives.
#[test]
fn bangerd_notifies_systemd_when_ready_and_when_stopping() {
    let notify_dir = tempfile::tempdir().unwrap();
    let path = notify_dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut d = TestDaemon::start(&[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("no READY=1 from bangerd");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
    assert!(
        msg.contains(&format!("STATUS=serving {}", d.socket().display())),
        "{msg}"
    );
    // Ready means served: a request answers at once.
    let _: banger_api::DaemonStatus = d.client().call(Request::Status).unwrap();
    let child = d.child.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let n = sock.recv(&mut buf).expect("no STOPPING=1 from bangerd");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(msg.lines().any(|l| l == "STOPPING=1"), "{msg}");
    let mut child = child;
    child.wait().unwrap();
}
