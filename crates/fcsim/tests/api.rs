//! Behaviour beyond the recording: wire format, keep-alive, snapshots,
//! serial console, logs and metrics, hotplug with `--enable-pci`.

mod support;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Sim, read_response, sim_binary, sparse_file, write_kernel};

fn put(sim: &Sim, path: &str, body: Value) {
    let got = sim.http("PUT", path, Some(&body.to_string()));
    assert_eq!(got.status, 204, "PUT {path}: {}", got.text());
}

fn boot(sim: &Sim, dir: &Path, boot_args: &str) {
    let kernel = write_kernel(dir);
    let rootfs = dir.join("rootfs.ext4");
    sparse_file(&rootfs, 8);
    put(
        sim,
        "/machine-config",
        json!({"vcpu_count": 2, "mem_size_mib": 64}),
    );
    put(
        sim,
        "/boot-source",
        json!({"kernel_image_path": kernel, "boot_args": boot_args}),
    );
    put(
        sim,
        "/drives/rootfs",
        json!({"drive_id": "rootfs", "path_on_host": rootfs, "is_root_device": true}),
    );
    put(sim, "/actions", json!({"action_type": "InstanceStart"}));
}

#[test]
fn status_line_and_headers_look_like_firecracker() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), "wire", &[], &[]);
    let got = sim.http("GET", "/version", None);
    assert_eq!(got.status_line, "HTTP/1.1 200 ");
    assert_eq!(got.header("Server"), Some("Firecracker API"));
    assert_eq!(got.header("Connection"), Some("keep-alive"));
    assert!(got.header("Date").is_none());
    assert_eq!(got.text(), r#"{"firecracker_version":"1.17.0-dev"}"#);
    let got = sim.http(
        "PUT",
        "/machine-config",
        Some(r#"{"vcpu_count": 1, "mem_size_mib": 128}"#),
    );
    assert_eq!(got.status_line, "HTTP/1.1 204 ");
    let info = sim.http("GET", "/", None).text();
    assert_eq!(
        info,
        r#"{"id":"wire","state":"Not started","vmm_version":"1.17.0-dev","app_name":"Firecracker"}"#
    );
}

#[test]
fn connections_are_kept_alive() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), "alive", &[], &[]);
    let mut stream = UnixStream::connect(&sim.sock).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    for _ in 0..3 {
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let got = read_response(&mut stream).unwrap();
        assert_eq!(got.status, 200);
    }
}

#[test]
fn payload_limit_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(
        dir.path(),
        "limit",
        &["--http-api-max-payload-size", "100"],
        &[],
    );
    let body = json!({"latest": "x".repeat(200)}).to_string();
    let got = sim.http("PUT", "/mmds", Some(&body));
    assert_eq!(got.status, 400);
    assert!(
        got.json()["fault_message"]
            .as_str()
            .unwrap()
            .contains("larger than the limit of 100")
    );
}

#[test]
fn serial_console_prints_boot_lines_with_ttys0_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(dir.path(), "talkative", &[], &[]);
    boot(&sim, dir.path(), "console=ttyS0 reboot=k panic=1");
    assert_eq!(sim.http("GET", "/", None).json()["state"], "Running");
    sim.signal(libc::SIGTERM);
    sim.wait(Duration::from_secs(5)).unwrap();
    let out = sim.stdout();
    assert!(
        out.contains("Command line: console=ttyS0 reboot=k panic=1 root=/dev/vda rw pci=off"),
        "{out}"
    );
    assert!(out.contains("banger-fcsim guest talkative is up"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(dir.path(), "quiet", &[], &[]);
    boot(&sim, dir.path(), "reboot=k panic=1");
    sim.signal(libc::SIGTERM);
    sim.wait(Duration::from_secs(5)).unwrap();
    assert!(!sim.stdout().contains("Command line:"), "{}", sim.stdout());
}

#[test]
fn serial_out_path_receives_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), "serial", &[], &[]);
    let serial = dir.path().join("serial.log");
    put(&sim, "/serial", json!({"serial_out_path": serial}));
    boot(&sim, dir.path(), "console=ttyS0");
    let text = std::fs::read_to_string(&serial).unwrap();
    assert!(text.contains("Linux version"), "{text}");
}

#[test]
fn metrics_and_log_files_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), "observed", &[], &[]);
    let log = dir.path().join("fc.log");
    let metrics = dir.path().join("metrics.json");
    put(
        &sim,
        "/logger",
        json!({"log_path": log, "level": "Info", "show_level": true}),
    );
    put(
        &sim,
        "/metrics",
        json!({"metrics_path": metrics, "emit_id": true}),
    );
    boot(&sim, dir.path(), "console=ttyS0");
    put(&sim, "/actions", json!({"action_type": "FlushMetrics"}));
    let lines: Vec<Value> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "one line at InstanceStart, one per FlushMetrics"
    );
    assert_eq!(lines[0]["id"], "observed");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(
            "[observed:fc_api:INFO] The API server received a Put request on \"/actions\""
        ),
        "{text}"
    );
    assert!(
        text.contains("[observed:main:INFO] Starting microVM observed"),
        "{text}"
    );
}

#[test]
fn snapshot_round_trip_restores_the_devices() {
    let dir = tempfile::tempdir().unwrap();
    let state_file = dir.path().join("snap.vmstate");
    let mem_file = dir.path().join("snap.mem");
    let vsock = dir.path().join("v.sock");
    let origin_dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(origin_dir.path(), "origin", &[], &[]);
    put(&sim, "/vsock", json!({"guest_cid": 3, "uds_path": vsock}));
    boot(&sim, dir.path(), "console=ttyS0");
    let body =
        json!({"snapshot_type": "Full", "snapshot_path": state_file, "mem_file_path": mem_file});
    let refused = sim.http("PUT", "/snapshot/create", Some(&body.to_string()));
    assert_eq!(refused.status, 400, "a running VM cannot be snapshotted");
    assert_eq!(
        sim.http("PATCH", "/vm", Some(r#"{"state": "Paused"}"#))
            .status,
        204
    );
    put(&sim, "/snapshot/create", body);
    assert_eq!(std::fs::metadata(&mem_file).unwrap().len(), 64 << 20);
    drop(sim);
    std::fs::remove_file(&vsock).unwrap();

    let restored_dir = tempfile::tempdir().unwrap();
    let restored = Sim::start(restored_dir.path(), "restored", &[], &[]);
    let load = json!({"snapshot_path": state_file, "mem_backend": {"backend_type": "File", "backend_path": mem_file}});
    put(&restored, "/snapshot/load", load);
    assert_eq!(restored.http("GET", "/", None).json()["state"], "Paused");
    let config = restored.http("GET", "/vm/config", None).json();
    assert_eq!(config["machine-config"]["mem_size_mib"], 64);
    assert_eq!(config["drives"][0]["drive_id"], "rootfs");
    assert_eq!(config["boot-source"]["kernel_image_path"], "");
    assert!(vsock.exists(), "the vsock socket is bound again");
    assert_eq!(
        restored
            .http("PATCH", "/vm", Some(r#"{"state": "Resumed"}"#))
            .status,
        204
    );
}

#[test]
fn failed_snapshot_load_is_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut sim = Sim::start(dir.path(), "doomed", &[], &[]);
    let load = json!({"snapshot_path": dir.path().join("none"), "mem_file_path": dir.path().join("none.mem")});
    let got = sim.http("PUT", "/snapshot/load", Some(&load.to_string()));
    assert_eq!(got.status, 400);
    assert!(
        got.json()["fault_message"]
            .as_str()
            .unwrap()
            .starts_with("Load snapshot error: ")
    );
    let status = sim
        .wait(Duration::from_secs(5))
        .expect("the simulator exits");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn hotplug_needs_enable_pci() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(dir.path(), "pci", &["--enable-pci"], &[]);
    boot(&sim, dir.path(), "console=ttyS0");
    let extra = dir.path().join("extra.ext4");
    sparse_file(&extra, 1);
    put(
        &sim,
        "/drives/extra",
        json!({"drive_id": "extra", "path_on_host": extra, "is_root_device": false}),
    );
    assert_eq!(sim.http("DELETE", "/drives/extra", None).status, 204);
    let config = sim.http("GET", "/vm/config", None).json();
    assert_eq!(config["drives"].as_array().unwrap().len(), 1);
}

#[test]
fn version_flags_print_and_exit() {
    let out = Command::new(sim_binary())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Firecracker v1.17.0-dev"));
    let out = Command::new(sim_binary())
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(153));
    let out = Command::new(sim_binary())
        .args([
            "--api-sock",
            "/nonexistent/x.sock",
            "--config-file",
            "/tmp/c.json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unsupported(\"--config-file\")"));
}
