//! The `--sim-*` / `FCSIM_*` misbehaviour switches, and the normal shutdown path.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Sim, describe_status, sparse_file, write_kernel};

/// Configures a bootable VM (console on ttyS0, logger to `fc.log`).
fn configure(sim: &Sim, dir: &Path) {
    let kernel = write_kernel(dir);
    let rootfs = dir.join("rootfs.ext4");
    sparse_file(&rootfs, 16);
    let log = dir.join("fc.log");
    let calls = [
        (
            "/machine-config",
            r#"{"vcpu_count": 2, "mem_size_mib": 256}"#.to_string(),
        ),
        (
            "/boot-source",
            format!(
                r#"{{"kernel_image_path": "{}", "boot_args": "console=ttyS0 reboot=k panic=1"}}"#,
                kernel.display()
            ),
        ),
        (
            "/drives/rootfs",
            format!(
                r#"{{"drive_id": "rootfs", "path_on_host": "{}", "is_root_device": true, "is_read_only": false}}"#,
                rootfs.display()
            ),
        ),
        (
            "/logger",
            format!(
                r#"{{"log_path": "{}", "level": "Info", "show_level": true}}"#,
                log.display()
            ),
        ),
    ];
    for (path, body) in calls {
        let got = sim.http("PUT", path, Some(&body));
        assert_eq!(got.status, 204, "PUT {path}: {}", got.text());
    }
}

fn instance_start(sim: &Sim) -> support::HttpResponse {
    sim.http(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "InstanceStart"}"#),
    )
}

fn state(sim: &Sim) -> String {
    sim.http("GET", "/", None).json()["state"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn socket_delay_postpones_the_api_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("api.sock");
    let args: Vec<String> = [
        "--api-sock",
        sock.to_str().unwrap(),
        "--sim-socket-delay-ms",
        "400",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    let mut sim = Sim::spawn(&args, &[], &sock);
    std::thread::sleep(Duration::from_millis(150));
    assert!(!sock.exists(), "the socket appeared before the delay");
    assert!(sim.wait_for_socket(Duration::from_secs(10)));
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(sim.http("GET", "/", None).status, 200);
}

#[test]
fn socket_delay_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let sim = Sim::start(
        dir.path(),
        "env-delay",
        &[],
        &[("FCSIM_SOCKET_DELAY_MS", "300")],
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(sim.http("GET", "/version", None).status, 200);
}

#[test]
fn crash_after_start_exits_one_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(
        dir.path(),
        "crashy",
        &[],
        &[("FCSIM_CRASH_AFTER_START_MS", "150")],
    );
    configure(&sim, dir.path());
    assert_eq!(instance_start(&sim).status, 204);
    assert_eq!(state(&sim), "Running");
    let status = sim
        .wait(Duration::from_secs(10))
        .expect("the simulator crashes");
    assert_eq!(describe_status(status), (Some(1), None));
    let stderr = sim.stderr();
    assert!(
        stderr.contains("simulated guest crash 150 ms after InstanceStart"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Error: RunWithApi(MicroVMStoppedWithError(GenericError))"),
        "{stderr}"
    );
    let log = std::fs::read_to_string(dir.path().join("fc.log")).unwrap();
    assert!(
        log.contains(":ERROR] fcsim: simulated guest crash"),
        "{log}"
    );
    assert!(
        log.contains("Firecracker exiting with error. exit_code=1"),
        "{log}"
    );
    assert!(sim.sock.exists(), "Firecracker leaves its socket behind");
}

#[test]
fn refuse_start_answers_400_and_stays_configurable() {
    for (flags, env) in [
        (&["--sim-refuse-start"][..], &[][..]),
        (&[][..], &[("FCSIM_REFUSE_START", "1")][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sim = Sim::start(dir.path(), "refuser", flags, env);
        configure(&sim, dir.path());
        let got = instance_start(&sim);
        assert_eq!(got.status, 400);
        let message = got.json()["fault_message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(message.starts_with("Start microvm error: "), "{message}");
        assert_eq!(state(&sim), "Not started");
        assert_eq!(
            sim.http(
                "PUT",
                "/machine-config",
                Some(r#"{"vcpu_count": 1, "mem_size_mib": 128}"#)
            )
            .status,
            204
        );
    }
}

#[test]
fn ctrl_alt_del_exits_zero_after_the_shutdown_delay() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(
        dir.path(),
        "polite",
        &[],
        &[("FCSIM_SHUTDOWN_DELAY_MS", "300")],
    );
    configure(&sim, dir.path());
    assert_eq!(instance_start(&sim).status, 204);
    let sent = Instant::now();
    let got = sim.http(
        "PUT",
        "/actions",
        Some(r#"{"action_type": "SendCtrlAltDel"}"#),
    );
    assert_eq!(got.status, 204);
    let status = sim
        .wait(Duration::from_secs(10))
        .expect("the simulator exits");
    assert!(sent.elapsed() >= Duration::from_millis(300));
    assert_eq!(describe_status(status), (Some(0), None));
    assert!(sim.stderr().is_empty(), "{}", sim.stderr());
    assert!(
        sim.stdout().contains("reboot: Restarting system"),
        "{}",
        sim.stdout()
    );
    assert!(sim.sock.exists());
}

#[test]
fn default_shutdown_delay_is_short() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(dir.path(), "quick", &[], &[]);
    configure(&sim, dir.path());
    assert_eq!(instance_start(&sim).status, 204);
    let sent = Instant::now();
    assert_eq!(
        sim.http(
            "PUT",
            "/actions",
            Some(r#"{"action_type": "SendCtrlAltDel"}"#)
        )
        .status,
        204
    );
    let status = sim
        .wait(Duration::from_secs(10))
        .expect("the simulator exits");
    assert_eq!(status.code(), Some(0));
    assert!(sent.elapsed() < Duration::from_secs(2));
}

#[test]
fn ignore_ctrl_alt_del_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(dir.path(), "stubborn", &["--sim-ignore-ctrl-alt-del"], &[]);
    configure(&sim, dir.path());
    assert_eq!(instance_start(&sim).status, 204);
    assert_eq!(
        sim.http(
            "PUT",
            "/actions",
            Some(r#"{"action_type": "SendCtrlAltDel"}"#)
        )
        .status,
        204
    );
    std::thread::sleep(Duration::from_millis(400));
    assert!(sim.try_status().is_none(), "the simulator exited");
    assert_eq!(state(&sim), "Running");
}
