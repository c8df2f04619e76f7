//! Tests of the whole CLI: argument parsing, output and exit codes, against
//! the fake daemon of `testing`.

use std::path::Path;

use banger_api::doctor::{Check, CheckStatus};
use banger_api::rpc::{ImageRegisterParams, OpRef, VmCreateParams, VmRef, VmSetParams};
use banger_api::{
    ByteSize, DaemonStatus, ErrorKind, Image, OpState, Operation, Request, RpcErrorBody, Vm,
    VmCreated, VmDetail, VmPaths, VmRuntime, VmState, VmStats,
};
use clap::Parser;

use crate::args::Cli;
use crate::output::Term;
use crate::testing::{FakeDaemon, Reply, error, event, ok};

/// Run the CLI; returns (exit code, stdout, stderr).
pub(crate) fn banger(args: &[&str]) -> (i32, String, String) {
    banger_term(args, Term::default())
}

fn banger_term(args: &[&str], term: Term) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("banger").chain(args.iter().copied());
    let code = crate::run(argv, &mut out, &mut err, term);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

/// Run the CLI against `daemon`.
pub(crate) fn against(daemon: &FakeDaemon, args: &[&str]) -> (i32, String, String) {
    let socket = daemon.socket.to_str().unwrap();
    let mut argv = vec!["--socket", socket];
    argv.extend_from_slice(args);
    banger(&argv)
}

pub(crate) fn vm(name: &str, state: VmState) -> Vm {
    Vm {
        id: format!("{name}-0123456789ab"),
        name: name.into(),
        state,
        image_id: "img1".into(),
        image_name: "debian".into(),
        vcpus: 2,
        memory_mib: 1024,
        disk_bytes: 8 << 30,
        guest_ip: "172.30.0.2".parse().unwrap(),
        guest_mac: "02:fc:ac:1e:00:02".into(),
        created_at: crate::output::now_ms() - 180_000,
        updated_at: 0,
        started_at: None,
        last_error: None,
        work_disk_bytes: 8 << 30,
    }
}

pub(crate) fn detail(v: Vm) -> VmDetail {
    VmDetail {
        runtime: v.state.has_vmm().then(|| VmRuntime {
            pid: 77,
            api_socket: "/r/api.sock".into(),
            vsock_socket: None,
        }),
        paths: VmPaths {
            dir: "/s/vms/x".into(),
            root_disk: "/s/vms/x/root.ext4".into(),
            console_log: "/s/vms/x/console.log".into(),
            vmm_log: "/s/vms/x/vmm.log".into(),
            work_disk: Some("/s/vms/x/work.ext4".into()),
            work_disk_bytes: 8 << 30,
        },
        vm: v,
        forwards: Vec::new(),
        provision: Vec::new(),
        snapshots: Vec::new(),
    }
}

pub(crate) fn op(state: OpState, step: u32, stage: &str) -> Operation {
    Operation {
        id: "op7".into(),
        kind: "vm.create".into(),
        subject: "dev".into(),
        state,
        stage: stage.into(),
        step,
        steps: 3,
        error: (state == OpState::Failed).then(|| RpcErrorBody {
            kind: ErrorKind::Conflict,
            message: "tap device busy".into(),
        }),
        created_at: 0,
        updated_at: 0,
    }
}

fn status() -> DaemonStatus {
    DaemonStatus {
        version: "9.9.9".into(),
        pid: 4242,
        uptime_secs: 3700,
        state_dir: "/s".into(),
        runtime_dir: "/r".into(),
        firecracker_bin: "firecracker".into(),
        vms_total: 2,
        vms_running: 1,
    }
}

/// What the fake daemon's `daemon.doctor` finds.
fn host_checks() -> Vec<Check> {
    vec![
        Check::ok("kvm", "/dev/kvm is present and read-write accessible"),
        Check::ok("state dir", "/s is a writable directory"),
        Check::warn(
            "image seeds",
            "SSH keys changed",
            "banger managed-seed refresh",
        ),
    ]
}

/// A daemon that knows two VMs and one image.
fn daemon() -> FakeDaemon {
    FakeDaemon::start(|r| match r {
        Request::Status => vec![ok(status())],
        Request::Doctor => vec![ok(host_checks())],
        Request::VmList => vec![ok(vec![
            vm("dev", VmState::Running),
            vm("scratch", VmState::Stopped),
        ])],
        Request::VmShow(VmRef { vm: name }) if name == "dev" => {
            vec![ok(detail(vm("dev", VmState::Running)))]
        }
        Request::VmStart(VmRef { vm: name }) | Request::VmKill(VmRef { vm: name })
            if name == "dev" =>
        {
            vec![ok(vm("dev", VmState::Running))]
        }
        Request::VmStartOp(VmRef { vm: name }) if name == "dev" => vec![ok(VmCreated {
            vm: vm("dev", VmState::Stopped),
            operation: Some(op(OpState::Running, 0, "queued")),
        })],
        Request::VmStats(_) => vec![ok(VmStats {
            name: "dev".into(),
            state: VmState::Running,
            pid: Some(77),
            cpu_time_ms: 1500,
            cpu_percent: Some(12.5),
            rss_bytes: 300 << 20,
            disk_allocated_bytes: 1 << 30,
            uptime_secs: 65,
        })],
        Request::ImageList => vec![ok(Vec::<Image>::new())],
        Request::ImageRegister(p) => vec![ok(Image {
            id: "img9".into(),
            name: p.name.clone(),
            rootfs_path: "/s/images/img9/rootfs.ext4".into(),
            kernel_path: "/s/images/img9/vmlinux".into(),
            initrd_path: None,
            size_bytes: 2 << 30,
            source: format!("register:{}", p.rootfs),
            created_at: 0,
            seed: None,
            work_seed_path: None,
        })],
        Request::VmCreate(p) => {
            let operation = (!p.no_start).then(|| op(OpState::Running, 0, "queued"));
            vec![ok(VmCreated {
                vm: vm(&p.name, VmState::Created),
                operation,
            })]
        }
        Request::OperationWatch(OpRef { id }) if id == "op7" => vec![
            event(op(OpState::Running, 1, "copying root disk")),
            event(op(OpState::Running, 1, "copying root disk")),
            event(op(OpState::Running, 2, "starting VMM")),
            ok(op(OpState::Succeeded, 3, "running")),
        ],
        Request::OperationWatch(_) => vec![
            event(op(OpState::Running, 1, "copying root disk")),
            ok(op(OpState::Failed, 2, "starting VMM")),
        ],
        other => vec![error(
            ErrorKind::NotFound,
            &format!("nothing for {}", other.method()),
        )],
    })
}

#[test]
fn every_command_parses() {
    let cases: &[&[&str]] = &[
        &["vm", "create", "dev"],
        &[
            "vm", "create", "dev", "--image", "debian", "--vcpus", "4", "--memory", "2G", "--disk",
            "20G", "--json",
        ],
        &["vm", "create", "dev", "--no-start"],
        &["vm", "create", "dev", "--detach"],
        &["vm", "start", "dev"],
        &["vm", "stop", "dev", "--timeout", "30"],
        &["vm", "restart", "dev"],
        &["vm", "kill", "dev", "--json"],
        &["vm", "delete", "dev", "--force"],
        &["vm", "rm", "dev"],
        &["vm", "set", "dev", "--vcpus", "4"],
        &["vm", "set", "dev", "--memory", "4G", "--disk", "40G"],
        &["vm", "set", "dev", "--work-disk", "40G"],
        &["vm", "create", "dev", "--work-disk", "20G"],
        &["managed-seed", "refresh"],
        &["managed-seed", "refresh", "--image", "deb", "--json"],
        &[
            "image",
            "pull",
            "127.0.0.1:5000/a/b:1",
            "--kernel-name",
            "k",
        ],
        &["vm", "list"],
        &["vm", "ls", "--json"],
        &["vm", "show", "dev", "--json"],
        &["vm", "stats", "dev"],
        &["vm", "logs", "dev", "--vmm", "--tail", "50"],
        &[
            "image", "register", "deb", "--rootfs", "r", "--kernel", "k", "--initrd", "i",
        ],
        &["image", "list", "--json"],
        &["image", "show", "deb"],
        &["image", "delete", "deb"],
        &["operation", "list"],
        &["op", "show", "op7"],
        &["operation", "watch", "op7", "--json"],
        &["status", "--json"],
        &["doctor", "--json"],
        &["config", "default"],
        &["config", "show", "--json"],
        &["completions", "bash"],
        &["completions", "zsh"],
        &["completions", "fish"],
        &[
            "--socket",
            "/x.sock",
            "--state-dir",
            "/s",
            "--config",
            "/c.toml",
            "--system",
            "status",
        ],
        &["vm", "list", "--socket", "/x.sock"],
    ];
    for case in cases {
        let argv = std::iter::once("banger").chain(case.iter().copied());
        if let Err(e) = Cli::try_parse_from(argv) {
            panic!("{case:?} did not parse: {e}");
        }
    }
    let cli = Cli::try_parse_from(["banger", "vm", "list", "--socket", "/x.sock"]).unwrap();
    assert_eq!(cli.global.socket.as_deref(), Some(Path::new("/x.sock")));
}

#[test]
fn usage_errors_exit_2() {
    for case in [
        &["vm", "set", "dev"][..],
        &["vm", "create", "dev", "--memory", "12X"],
        &["vm", "set", "dev", "--disk", "lots"],
        &["vm", "create", "dev", "--no-start", "--detach"],
        &["vm", "logs", "dev", "--tail", "0"],
        &["vm", "stop", "dev", "--timeout", "18446744073709551615"],
        &["vm", "restart", "dev", "--timeout", "3601"],
        &["vm", "frobnicate"],
        &["completions", "cmd.exe"],
        &[],
    ] {
        let (code, out, err) = banger(case);
        assert_eq!(code, 2, "{case:?}: {out}{err}");
        assert!(!err.is_empty(), "{case:?}");
    }
    let (_, _, err) = banger(&["vm", "set", "dev"]);
    assert!(err.contains("--vcpus") && err.contains("--memory"), "{err}");
    let (_, _, err) = banger(&["vm", "create", "dev", "--memory", "12X"]);
    assert!(err.contains("invalid size"), "{err}");
}

#[test]
fn values_are_validated_before_anything_is_sent() {
    let d = daemon();
    for (case, needle) in [
        (&["vm", "create", "Bad_Name"][..], "invalid VM name"),
        (&["vm", "create", "dev", "--vcpus", "0"], "vCPU"),
        (&["vm", "create", "dev", "--memory", "64M"], "memory"),
        (
            &["vm", "create", "dev", "--memory", "1"],
            "memory 1 B is below the minimum 128 MiB; sizes take a unit: 512M, 2G",
        ),
        (&["vm", "set", "dev", "--vcpus", "99"], "vCPU"),
        (
            &[
                "image",
                "register",
                "../x",
                "--rootfs",
                "Cargo.toml",
                "--kernel",
                "Cargo.toml",
            ],
            "image name",
        ),
        (
            &[
                "image",
                "register",
                "deb",
                "--rootfs",
                "/no/such/file",
                "--kernel",
                "Cargo.toml",
            ],
            "no such file",
        ),
    ] {
        let (code, _, err) = against(&d, case);
        assert_eq!(code, 2, "{case:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{case:?}: {err}"
        );
    }
    assert!(d.received().is_empty(), "{:?}", d.received());
}

#[test]
fn help_and_version_exit_0() {
    let (code, out, _) = banger(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("vm") && out.contains("doctor"), "{out}");
    let (code, out, _) = banger(&["vm", "create", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--no-start"), "{out}");
    let (code, out, _) = banger(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.contains(banger_api::BANGER_VERSION), "{out}");
}

#[test]
fn vm_list_table_and_json() {
    let d = daemon();
    let (code, out, err) = against(&d, &["vm", "list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATE"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("dev") && lines[1].contains("running"),
        "{out}"
    );
    assert!(
        lines[1].contains("1G") && lines[1].contains("8G") && lines[1].contains("3m ago"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("scratch") && lines[2].contains("stopped"),
        "{out}"
    );
    assert!(!out.contains('\u{1b}'), "no colour without a terminal");

    let (code, out, _) = against(&d, &["vm", "ls", "--json"]);
    assert_eq!(code, 0);
    let vms: Vec<Vm> = serde_json::from_str(&out).unwrap();
    assert_eq!(vms.len(), 2);
    assert_eq!(vms[0].name, "dev");

    let color = Term {
        out_tty: true,
        err_tty: false,
        color: true,
    };
    let socket = d.socket.to_str().unwrap();
    let (_, out, _) = banger_term(&["--socket", socket, "vm", "list"], color);
    assert!(out.contains('\u{1b}'), "colour on a terminal: {out}");
}

#[test]
fn show_stats_and_power_commands() {
    let d = daemon();
    let (code, out, _) = against(&d, &["vm", "show", "dev"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("name:") && out.contains("dev") && out.contains("vmm pid:"),
        "{out}"
    );
    assert!(out.contains("172.30.0.2"), "{out}");
    let (_, out, _) = against(&d, &["vm", "show", "dev", "--json"]);
    let parsed: VmDetail = serde_json::from_str(&out).unwrap();
    let mut expected = detail(vm("dev", VmState::Running));
    assert!((parsed.vm.created_at - expected.vm.created_at).abs() < 60_000);
    expected.vm.created_at = parsed.vm.created_at;
    assert_eq!(parsed, expected);

    let (code, out, _) = against(&d, &["vm", "stats", "dev"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("12.5%") && out.contains("300M") && out.contains("1m 5s"),
        "{out}"
    );

    // `vm start` follows the boot as `vm create` does.
    let (code, out, err) = against(&d, &["vm", "start", "dev"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "dev is running at 172.30.0.2\n");
    assert_eq!(
        err,
        "starting dev: [1/3] copying root disk\nstarting dev: [2/3] starting VMM\n"
    );
    let (_, out, _) = against(&d, &["vm", "kill", "dev", "--json"]);
    assert_eq!(serde_json::from_str::<Vm>(&out).unwrap().name, "dev");
}

#[test]
fn daemon_errors_map_to_exit_codes_and_a_cause_chain() {
    let d = daemon();
    let (code, out, err) = against(&d, &["vm", "show", "nope"]);
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty());
    assert_eq!(err, "error: nothing for vm.show\n");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("bangerd.sock");
    let (code, _, err) = banger(&["--socket", missing.to_str().unwrap(), "vm", "list"]);
    assert_eq!(code, crate::EXIT_UNREACHABLE);
    assert!(
        err.starts_with("error: bangerd is not reachable at"),
        "{err}"
    );
    assert!(err.contains("\n  1: "), "numbered cause: {err}");
}

#[test]
fn create_follows_the_operation() {
    let d = daemon();
    let (code, out, err) = against(
        &d,
        &[
            "vm", "create", "dev", "--memory", "2G", "--vcpus", "4", "--disk", "20G",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err,
        "creating dev: [1/3] copying root disk\ncreating dev: [2/3] starting VMM\n"
    );
    assert!(out.contains("state:") && out.contains("running"), "{out}");
    let sent = d.received();
    assert_eq!(
        sent[0],
        Request::VmCreate(VmCreateParams {
            name: "dev".into(),
            image: None,
            vcpus: Some(4),
            memory_mib: Some(2048),
            disk: Some(ByteSize::gib(20)),
            work_disk: None,
            no_start: false,
        })
    );
    assert_eq!(sent[1], Request::OperationWatch(OpRef { id: "op7".into() }));
    assert_eq!(sent[2], Request::VmShow(VmRef { vm: "dev".into() }));

    let (code, out, _) = against(&d, &["vm", "create", "dev", "--json"]);
    assert_eq!(code, 0);
    let created: VmCreated = serde_json::from_str(&out).unwrap();
    assert_eq!(created.vm.state, VmState::Running);
    assert_eq!(created.operation.unwrap().state, OpState::Succeeded);
}

#[test]
fn create_detached_or_without_start_does_not_watch() {
    let d = daemon();
    let (code, out, err) = against(&d, &["vm", "create", "dev", "--detach", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("banger operation watch op7"), "{err}");
    let created: VmCreated = serde_json::from_str(&out).unwrap();
    assert_eq!(created.operation.unwrap().id, "op7");
    let (code, _, err) = against(&d, &["vm", "create", "dev", "--no-start"]);
    assert_eq!(code, 0);
    assert!(err.contains("banger vm start dev"), "{err}");
    assert!(
        d.received()
            .iter()
            .all(|r| !matches!(r, Request::OperationWatch(_))),
        "{:?}",
        d.received()
    );
}

#[test]
fn failed_operations_exit_with_their_kind() {
    let d = FakeDaemon::start(|r| match r {
        Request::VmCreate(p) => vec![ok(VmCreated {
            vm: vm(&p.name, VmState::Created),
            operation: Some(op(OpState::Running, 0, "queued")),
        })],
        _ => vec![
            event(op(OpState::Running, 1, "copying root disk")),
            ok(op(OpState::Failed, 2, "starting VMM")),
        ],
    });
    let (code, _, err) = against(&d, &["vm", "create", "dev"]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains(
            "error: vm.create dev failed at step 2/3 (starting VMM); see `banger vm logs dev`"
        ),
        "{err}"
    );
    assert!(err.ends_with("  1: tap device busy\n"), "{err}");

    let (code, out, _) = against(&d, &["operation", "watch", "op7", "--json"]);
    assert_eq!(code, 4);
    assert_eq!(
        serde_json::from_str::<Operation>(&out).unwrap().state,
        OpState::Failed
    );
}

#[test]
fn vm_set_sends_only_the_changes() {
    let d = FakeDaemon::start(|_| vec![ok(vm("dev", VmState::Stopped))]);
    let (code, out, err) = against(&d, &["vm", "set", "dev", "--memory", "1.5G"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stopped"), "{out}");
    assert_eq!(
        d.received(),
        vec![Request::VmSet(VmSetParams {
            vm: "dev".into(),
            vcpus: None,
            memory_mib: Some(1536),
            disk: None,
            work_disk: None,
        })]
    );
}

#[test]
fn image_register_sends_absolute_paths() {
    let d = daemon();
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("vmlinux");
    std::fs::write(&kernel, "k").unwrap();
    let (code, out, err) = against(
        &d,
        &[
            "image",
            "register",
            "deb",
            "--rootfs",
            "Cargo.toml",
            "--kernel",
            kernel.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2G"), "{out}");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        d.received(),
        vec![Request::ImageRegister(ImageRegisterParams {
            name: "deb".into(),
            rootfs: cwd.join("Cargo.toml").display().to_string(),
            kernel: kernel.display().to_string(),
            initrd: None,
            kernel_name: None,
        })]
    );
    let (code, out, err) = against(&d, &["image", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.is_empty() && err.contains("banger image register"),
        "{err}"
    );
}

#[test]
fn status_shows_version_and_pid() {
    let d = daemon();
    let (code, out, _) = against(&d, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("bangerd 9.9.9 (pid 4242)") && out.contains("1h 1m"),
        "{out}"
    );
    let (_, out, _) = against(&d, &["status", "--json"]);
    assert_eq!(
        serde_json::from_str::<DaemonStatus>(&out).unwrap(),
        status()
    );
}

fn temp_layout_args(dir: &Path) -> Vec<String> {
    vec![
        "--state-dir".into(),
        dir.join("state").display().to_string(),
        "--config".into(),
        dir.join("config.toml").display().to_string(),
    ]
}

#[test]
fn doctor_adds_config_and_daemon_checks() {
    let d = daemon();
    let dir = tempfile::tempdir().unwrap();
    let mut args = temp_layout_args(dir.path());
    args.extend(["doctor".into(), "--json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = against(&d, &args);
    let checks: Vec<Check> = serde_json::from_str(&out).unwrap();
    // The host checks are the daemon's, between config and daemon.
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(checks[0].name, "config");
    assert!(
        checks[0].detail.contains("using the defaults"),
        "{:?}",
        checks[0]
    );
    assert_eq!(&checks[1..checks.len() - 1], host_checks().as_slice());
    let daemon = checks.last().unwrap();
    assert_eq!(daemon.name, "daemon");
    assert_eq!(daemon.status, CheckStatus::Ok);
    assert!(
        daemon.detail.contains("bangerd 9.9.9 (pid 4242"),
        "{daemon:?}"
    );
    assert!(d.received().contains(&Request::Doctor));
    let (code, out, err) = against(&d, &args[..args.len() - 1]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("SSH keys changed") && out.contains("hint: banger managed-seed refresh"),
        "{out}"
    );
    assert!(err.contains("all checks passed (1 warning(s))"), "{err}");

    // A daemon that does not know `daemon.doctor`: a failed line saying
    // so, and the checks that need no daemon.
    let old = FakeDaemon::start(|r| match r {
        Request::Status => vec![ok(status())],
        other => vec![error(
            ErrorKind::InvalidArgument,
            &format!("unknown method {}", other.method()),
        )],
    });
    let (code, out, _) = against(&old, &args);
    assert_eq!(code, 1, "{out}");
    let checks: Vec<Check> = serde_json::from_str(&out).unwrap();
    let host = checks.iter().find(|c| c.name == "host checks").unwrap();
    assert_eq!(host.status, CheckStatus::Fail);
    assert!(
        host.detail.contains("unknown method daemon.doctor"),
        "{host:?}"
    );
    assert!(checks.iter().any(|c| c.name == "firecracker"));
    assert_eq!(checks.last().unwrap().status, CheckStatus::Ok);

    // No daemon: the check fails with a hint, says the host checks were
    // not run, the binaries are still looked for, and doctor exits 1.
    let fc = dir.path().join("fc");
    std::fs::write(&fc, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&fc, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("firecracker_bin = {:?}\n", fc.display().to_string()),
    )
    .unwrap();
    let mut args = temp_layout_args(dir.path());
    args.extend([
        "--socket".into(),
        dir.path().join("none.sock").display().to_string(),
        "doctor".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = banger(&args);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("daemon") && out.contains("hint: start it with `bangerd`"),
        "{out}"
    );
    assert!(out.contains("run inside bangerd and were not run"), "{out}");
    assert!(
        err.starts_with("error: ") && err.contains("failed"),
        "{err}"
    );
    let mut json = args.clone();
    json.push("--json");
    let (_, out, _) = banger(&json);
    let checks: Vec<Check> = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["config", "firecracker", "bangerd", "daemon"],
        "{out}"
    );
    assert_eq!(checks[1].status, CheckStatus::Ok, "{:?}", checks[1]);
    assert!(checks[1].detail.contains(&fc.display().to_string()));
    std::fs::write(
        dir.path().join("config.toml"),
        "firecracker_bin = \"/nonexistent/fc\"\n",
    )
    .unwrap();
    let (_, out, _) = banger(&json);
    let checks: Vec<Check> = serde_json::from_str(&out).unwrap();
    assert_eq!(checks[1].status, CheckStatus::Fail, "{out}");
    assert!(checks[1].detail.contains("/nonexistent/fc does not exist"));

    // A broken config file is a failed check, not a crash.
    std::fs::write(dir.path().join("config.toml"), "[vm]\nvcpu = 3\n").unwrap();
    let (code, out, _) = banger(&args);
    assert_eq!(code, 1);
    assert!(out.contains("unknown field"), "{out}");
}

#[test]
fn config_default_and_show() {
    let (code, out, _) = banger(&["config", "default"]);
    assert_eq!(code, 0);
    assert_eq!(out, banger_config::EXAMPLE);

    let dir = tempfile::tempdir().unwrap();
    let layout = temp_layout_args(dir.path());
    std::fs::write(dir.path().join("config.toml"), "[vm]\nvcpus = 3\n").unwrap();
    let mut args: Vec<&str> = layout.iter().map(String::as_str).collect();
    args.extend(["config", "show"]);
    let (code, out, err) = banger(&args);
    assert_eq!(code, 0, "{err}");
    let state = dir.path().join("state");
    assert!(
        out.contains(&format!("state_dir   = {}", state.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("{}", state.join("run/bangerd.sock").display())),
        "{out}"
    );
    let parsed: banger_config::Config = toml::from_str(&out).unwrap();
    assert_eq!(parsed.vm.vcpus, 3);

    args.push("--json");
    let (_, out, _) = banger(&args);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["config"]["vm"]["vcpus"], 3);
    assert_eq!(v["mode"], "dev");
    assert_eq!(v["config_file_exists"], true);

    std::fs::write(dir.path().join("config.toml"), "nonsense").unwrap();
    let (code, _, err) = banger(&args);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: invalid config file"), "{err}");
}

#[test]
fn completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, _) = banger(&["completions", shell]);
        assert_eq!(code, 0);
        assert!(out.contains("banger") && out.contains("create"), "{shell}");
    }
}

#[test]
fn logs_print_lines() {
    let d = FakeDaemon::start(|_| {
        vec![ok(banger_api::VmLogs {
            path: "/s/vms/x/console.log".into(),
            lines: vec!["[    0.0] Linux version".into(), "login:".into()],
            end: 30,
        })]
    });
    let (code, out, _) = against(&d, &["vm", "logs", "dev", "--vmm", "-n", "2"]);
    assert_eq!(code, 0);
    assert_eq!(out, "[    0.0] Linux version\nlogin:\n");
    assert_eq!(
        d.received(),
        vec![Request::VmLogs(banger_api::rpc::VmLogsParams {
            vm: "dev".into(),
            source: banger_api::rpc::LogSource::Vmm,
            tail: Some(2),
            since: None,
        })]
    );
}

#[test]
fn slow_daemon_replies_do_not_confuse_progress() {
    // Events that arrive slowly are still shown once each.
    let d = FakeDaemon::start(|_| {
        vec![
            event(op(OpState::Running, 1, "copying root disk")),
            Reply::Sleep(std::time::Duration::from_millis(50)),
            event(op(OpState::Running, 2, "starting VMM")),
            ok(op(OpState::Succeeded, 3, "running")),
        ]
    });
    let (code, out, err) = against(&d, &["operation", "watch", "op7"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        err,
        "operation op7: [1/3] copying root disk\noperation op7: [2/3] starting VMM\n"
    );
    assert!(out.contains("succeeded"), "{out}");
}

#[test]
fn managed_seed_refresh_prints_each_image_and_fails_on_a_failure() {
    let d = FakeDaemon::start(|r| match r {
        Request::ImageRefreshSeed(p) => {
            let mut rows = vec![banger_api::SeedRefresh {
                image: "deb".into(),
                outcome: "refreshed".into(),
                detail: "SSH keys changed".into(),
            }];
            if p.image.is_none() {
                rows.push(banger_api::SeedRefresh {
                    image: "old".into(),
                    outcome: "failed".into(),
                    detail: "debugfs failed".into(),
                });
            }
            vec![ok(rows)]
        }
        other => vec![error(ErrorKind::NotFound, other.method())],
    });
    let (code, out, err) = against(&d, &["managed-seed", "refresh", "--image", "deb"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("deb") && out.contains("refreshed") && out.contains("SSH keys changed"),
        "{out}"
    );
    let (code, out, err) = against(&d, &["managed-seed", "refresh"]);
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("old") && out.contains("failed"), "{out}");
    assert!(err.contains("could not re-seed old"), "{err}");
    assert_eq!(
        d.received()[0],
        Request::ImageRefreshSeed(banger_api::rpc::ImageRefreshSeedParams {
            image: Some("deb".into())
        })
    );
}

#[test]
fn image_build_sends_the_recipe_follows_and_prints_timings() {
    use banger_api::rpc::{ImageBuildParams, NameRef};
    let build_op = |state: OpState, step: u32, stage: &str| Operation {
        kind: "image.build".into(),
        subject: "dev".into(),
        steps: 4,
        ..op(state, step, stage)
    };
    let d = FakeDaemon::start(move |r| match r {
        Request::ImageBuild(_) => vec![ok(build_op(OpState::Running, 0, "queued"))],
        Request::OperationWatch(_) => vec![
            event(build_op(
                OpState::Running,
                1,
                "bootstrapping Debian bookworm",
            )),
            event(build_op(
                OpState::Running,
                2,
                "flattening the root filesystem",
            )),
            ok(build_op(
                OpState::Succeeded,
                4,
                "done (bootstrap 0.0 s, flatten 7.0 s, ext4+kernel 11.0 s, publish 0.0 s)",
            )),
        ],
        Request::ImageShow(NameRef { name }) => vec![ok(Image {
            id: "img9".into(),
            name: name.clone(),
            rootfs_path: "/s/images/img9/rootfs.ext4".into(),
            kernel_path: "/s/images/img9/vmlinux".into(),
            initrd_path: Some("/s/images/img9/initrd".into()),
            size_bytes: 600 << 20,
            source: "build:debian/bookworm".into(),
            created_at: 0,
            seed: None,
            work_seed_path: None,
        })],
        other => vec![error(ErrorKind::NotFound, other.method())],
    });
    let (code, out, err) = against(
        &d,
        &[
            "image",
            "build",
            "--name",
            "dev",
            "--include",
            "vim,curl",
            "--include",
            "htop",
            "--mirror",
            "http://m.example/debian",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("building dev: [1/4] bootstrapping Debian bookworm"),
        "{err}"
    );
    assert!(
        err.contains("built dev: done (bootstrap 0.0 s, flatten 7.0 s"),
        "{err}"
    );
    assert!(out.contains("build:debian/bookworm"), "{out}");
    assert_eq!(
        d.received()[0],
        Request::ImageBuild(ImageBuildParams {
            name: Some("dev".into()),
            suite: Some("bookworm".into()),
            mirror: Some("http://m.example/debian".into()),
            include: vec!["vim,curl".into(), "htop".into()],
            no_cache: false,
            kernel_name: None,
            debian_kernel: false,
        })
    );
    // A bad name is a usage error, before anything is sent.
    let (code, _, _) = against(&d, &["image", "build", "--name", "no/slash"]);
    assert_eq!(code, 2);
    assert_eq!(d.received().len(), 3);
}

#[test]
fn kernel_build_sends_the_name_follows_and_prints_the_kernel() {
    use banger_api::Kernel;
    use banger_api::rpc::KernelBuildParams;
    let kop = |state: OpState, step: u32, stage: &str| Operation {
        kind: "kernel.build".into(),
        subject: "mk".into(),
        steps: 2,
        ..op(state, step, stage)
    };
    let d = FakeDaemon::start(move |r| match r {
        Request::KernelBuild(_) => vec![ok(kop(OpState::Running, 0, "queued"))],
        Request::OperationWatch(_) => vec![
            event(kop(
                OpState::Running,
                1,
                "building the kernel: make bzImage",
            )),
            ok(kop(OpState::Succeeded, 2, "done (6.1.192 built, 900 s)")),
        ],
        Request::KernelList => vec![ok(vec![Kernel {
            id: "k1".into(),
            name: "mk".into(),
            version: Some("6.1.192".into()),
            path: "/s/kernels/k1/vmlinux".into(),
            sha256: "00".into(),
            created_at: 0,
            size_bytes: 1,
            source: "build:linux-source-6.1 6.1.192-3".into(),
        }])],
        other => vec![error(ErrorKind::NotFound, other.method())],
    });
    let (code, out, err) = against(&d, &["kernel", "build", "--name", "mk", "--no-cache"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("[1/2] building the kernel: make bzImage"),
        "{err}"
    );
    assert!(
        err.contains("built kernel mk: done (6.1.192 built"),
        "{err}"
    );
    assert!(out.contains("mk") && out.contains("6.1.192"), "{out}");
    assert_eq!(
        d.received()[0],
        Request::KernelBuild(KernelBuildParams {
            name: Some("mk".into()),
            no_cache: true,
        })
    );
    // A bad name is a usage error, before anything is sent.
    let (code, _, _) = against(&d, &["kernel", "build", "--name", "a/b"]);
    assert_eq!(code, 2);
    // image build: --kernel-name and --debian-kernel exclude each other.
    let (code, _, _) = against(
        &d,
        &["image", "build", "--kernel-name", "mk", "--debian-kernel"],
    );
    assert_eq!(code, 2);
    assert_eq!(d.received().len(), 3);
}

/// The CLI links no daemon or helper code: what it shares with them comes
/// from `banger-config`, `banger-api` and `banger-privops`, plus the leaf
/// `banger-imagemgr` (`kernel check` reads kernel files itself).
#[test]
fn links_no_daemon_or_helper_code() {
    assert_eq!(
        banger_testsupport::banger_dependencies(include_str!("../Cargo.toml")),
        [
            "banger-api",
            "banger-config",
            "banger-imagemgr",
            "banger-privops"
        ]
    );
}
