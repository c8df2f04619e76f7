//! Replays every request recorded from real Firecracker against the simulator.
//!
//! Source: `shared/firecracker/observed.jsonl` beside the workspace (see
//! OBSERVED.md). Each scenario gets a fresh simulator, started like the
//! recording's Firecracker (`--api-sock <fresh> --id <scenario with - for _>`),
//! and fresh files for the placeholders (`${KERNEL}` is a fake bzImage the
//! simulator accepts, `${NOTKERNEL}` 4 KiB of zeros, disks 64 MiB sparse
//! files). Requests are replayed in `seq` order; for each one:
//! - the state seen by a `GET /` just before must equal `state_before`;
//! - the status must be equal;
//! - a 400's `fault_message` must be equal after placeholder substitution and
//!   after dropping serde's trailing ` at line N column M.` (the column
//!   depends on path lengths); non-JSON bodies must be byte-equal;
//! - a 200's JSON must be equal (paths substituted; nothing else is host-specific).
//!
//! Teardowns (signal, exit status, files left) and startup-only scenarios
//! (exit status or signal, stdout head with timestamps masked, stderr, socket
//! left) are checked too. When the recording is absent the test prints a
//! `SKIP:` line and passes.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use support::{Sim, describe_status, http, signal_number, sparse_file, visible, write_kernel};

/// Scenarios not replayed, with the reason (OBSERVED.md).
const SKIPPED_SCENARIOS: &[(&str, &str)] = &[(
    "guest_crash_64mib",
    "host-specific: a real guest triple-faulted on the recording host (KVM-PVM)",
)];

/// Individual pairs whose text cannot be reproduced: (scenario, seq, reason). Keep tiny.
const KNOWN_DIFFERENCES: &[(&str, u32, &str)] = &[];

/// One line of observed.jsonl.
#[derive(Debug, Deserialize)]
struct Line {
    scenario: String,
    seq: Option<u32>,
    state_before: Option<String>,
    method: Option<String>,
    path: Option<String>,
    body: Option<Box<RawValue>>,
    status: Option<u16>,
    response: Option<Box<RawValue>>,
    note: Option<String>,
    teardown: Option<Map<String, Value>>,
    startup: Option<Map<String, Value>>,
}

fn shared_dir() -> PathBuf {
    std::env::var_os("BANGER_FIRECRACKER_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/firecracker")
        })
}

/// The files a scenario's placeholders stand for.
struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        write_kernel(dir.path());
        sparse_file(&dir.path().join("rootfs.ext4"), 64);
        sparse_file(&dir.path().join("work.ext4"), 64);
        std::fs::write(dir.path().join("notkernel.bin"), vec![0u8; 4096]).expect("write notkernel");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn subst(&self, text: &str) -> String {
        let p = |name: &str| self.path(name).display().to_string();
        text.replace("${KERNEL}", &p("vmlinux.bin"))
            .replace("${ROOTFS}", &p("rootfs.ext4"))
            .replace("${WORKDRIVE}", &p("work.ext4"))
            .replace("${NOTKERNEL}", &p("notkernel.bin"))
            .replace("${API_SOCK}", &p("api.sock"))
            .replace("${TMP}", &self.dir.path().display().to_string())
    }
}

/// Drops serde's position suffix: `... at line 1 column 44.` -> `....`
fn strip_position(message: &str) -> String {
    if let Some(index) = message.rfind(" at line ") {
        let tail = &message[index + " at line ".len()..];
        let shaped = tail
            .trim_end_matches('.')
            .split_once(" column ")
            .is_some_and(|(l, c)| l.parse::<u32>().is_ok() && c.parse::<u32>().is_ok());
        if shaped {
            return format!("{}.", &message[..index]);
        }
    }
    message.to_string()
}

/// Masks a leading Firecracker timestamp as `<ts>`.
fn mask_timestamp(line: &str) -> String {
    let b = line.as_bytes();
    let shaped = b.len() > 30
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[29] == b' '
        && b[..4].iter().all(u8::is_ascii_digit);
    if shaped {
        format!("<ts>{}", &line[29..])
    } else {
        line.to_string()
    }
}

/// The body bytes to send: `None` for JSON null, the decoded string for a
/// raw (possibly malformed) body, else the recorded JSON text.
fn request_body(fx: &Fixtures, body: Option<&RawValue>) -> Option<Vec<u8>> {
    let raw = body?.get();
    if raw.starts_with('"') {
        let text: String = serde_json::from_str(raw).expect("string body");
        return Some(fx.subst(&text).into_bytes());
    }
    Some(fx.subst(raw).into_bytes())
}

/// Creates files the recording's notes say existed before the request.
fn precreate(fx: &Fixtures, line: &Line) {
    let note = line.note.as_deref().unwrap_or("");
    if !(note.contains("file pre-created") || note.contains("already exists")) {
        return;
    }
    let body: Value = line
        .body
        .as_ref()
        .and_then(|b| serde_json::from_str(&fx.subst(b.get())).ok())
        .unwrap_or(Value::Null);
    for key in ["log_path", "metrics_path", "uds_path"] {
        if let Some(path) = body.get(key).and_then(Value::as_str) {
            std::fs::write(path, b"").expect("pre-create file");
        }
    }
}

fn compare_response(fx: &Fixtures, line: &Line, got: &support::HttpResponse) -> Result<(), String> {
    let expected_status = line.status.unwrap_or(0);
    if got.status != expected_status {
        return Err(format!(
            "status {} != recorded {expected_status}; body {}",
            got.status,
            got.text()
        ));
    }
    let Some(response) = &line.response else {
        return if got.body.is_empty() {
            Ok(())
        } else {
            Err(format!("expected an empty body, got {}", got.text()))
        };
    };
    let raw = fx.subst(response.get());
    if raw.starts_with('"') {
        let expected: String = serde_json::from_str(&raw).expect("string response");
        return if got.text() == expected {
            Ok(())
        } else {
            Err(format!(
                "raw body {:?} != recorded {expected:?}",
                got.text()
            ))
        };
    }
    let expected: Value = serde_json::from_str(&raw).expect("JSON response");
    let actual = got.json();
    if let Some(message) = expected.get("fault_message").and_then(Value::as_str) {
        let ours = actual
            .get("fault_message")
            .and_then(Value::as_str)
            .unwrap_or("<no fault_message>");
        let known = KNOWN_DIFFERENCES
            .iter()
            .any(|(s, n, _)| *s == line.scenario && Some(*n) == line.seq);
        if strip_position(ours) != strip_position(message) && !known {
            return Err(format!(
                "fault_message\n    ours:     {ours}\n    recorded: {message}"
            ));
        }
        return Ok(());
    }
    if actual != expected {
        return Err(format!(
            "body\n    ours:     {actual}\n    recorded: {expected}"
        ));
    }
    Ok(())
}

/// Replays one HTTP scenario; returns (pairs matched, failures).
fn replay_scenario(name: &str, lines: &[&Line]) -> (usize, Vec<String>) {
    let fx = Fixtures::new();
    let id = name.replace('_', "-");
    let mut sim = Sim::start(
        fx.dir.path(),
        &id,
        &[],
        // The recorded guest never ran, so it ignored Ctrl+Alt+Del.
        &[("FCSIM_IGNORE_CTRL_ALT_DEL", "1")],
    );
    let mut matched = 0;
    let mut failures = Vec::new();
    let mut last_snapshot: Option<Value> = None;
    for line in lines.iter().filter(|l| l.seq.is_some()) {
        let seq = line.seq.unwrap_or(0);
        let context = format!(
            "{name} #{seq} {} {}",
            line.method.as_deref().unwrap_or(""),
            line.path.as_deref().unwrap_or("")
        );
        precreate(&fx, line);
        let mut result = Ok(());
        if let Some(expected) = line.state_before.as_deref().filter(|s| *s != "?") {
            let state = sim.http("GET", "/", None).json()["state"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if state != expected {
                result = Err(format!("state before {state:?} != recorded {expected:?}"));
            }
        }
        let body = request_body(&fx, line.body.as_deref());
        let method = line.method.as_deref().unwrap_or("GET");
        let path = line.path.as_deref().unwrap_or("/");
        let result = result.and_then(|()| match http(&sim.sock, method, path, body.as_deref()) {
            Ok(got) => compare_response(&fx, line, &got),
            Err(e) => Err(format!("no HTTP answer: {e}")),
        });
        match result {
            Ok(()) => matched += 1,
            Err(e) => failures.push(format!("{context}: {e}")),
        }
        if path == "/snapshot/create" && line.status == Some(204) {
            last_snapshot = body.and_then(|b| serde_json::from_slice(&b).ok());
        }
    }
    if let Some(teardown) = lines.iter().find_map(|l| l.teardown.as_ref())
        && let Err(e) = check_teardown(&fx, &mut sim, teardown, last_snapshot.as_ref())
    {
        failures.push(format!("{name} teardown: {e}"));
    }
    (matched, failures)
}

fn file_exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

fn check_exit(fx: &Fixtures, sim: &mut Sim, expected: &Map<String, Value>) -> Result<(), String> {
    let status = sim
        .wait(Duration::from_secs(10))
        .ok_or("the process did not exit")?;
    let (code, signal) = describe_status(status);
    let expected_code = expected
        .get("returncode")
        .and_then(Value::as_i64)
        .map(|c| c as i32);
    let expected_signal = expected
        .get("killed_by_signal")
        .and_then(Value::as_str)
        .and_then(signal_number);
    if code != expected_code || signal != expected_signal {
        return Err(format!(
            "exit (code {code:?}, signal {signal:?}) != recorded (code {expected_code:?}, signal {expected_signal:?})"
        ));
    }
    let shell = code.unwrap_or_else(|| 128 + signal.unwrap_or(0));
    if let Some(expected_shell) = expected.get("shell_style_status").and_then(Value::as_i64)
        && i64::from(shell) != expected_shell
    {
        return Err(format!("shell status {shell} != recorded {expected_shell}"));
    }
    let first = sim.stderr().lines().next().map(str::to_string);
    let expected_first = expected
        .get("stderr_first_line")
        .and_then(Value::as_str)
        .map(|l| fx.subst(l));
    if first != expected_first {
        return Err(format!(
            "stderr first line {first:?} != recorded {expected_first:?}"
        ));
    }
    Ok(())
}

fn check_teardown(
    fx: &Fixtures,
    sim: &mut Sim,
    teardown: &Map<String, Value>,
    snapshot: Option<&Value>,
) -> Result<(), String> {
    let alive = sim.try_status().is_none();
    if teardown.get("alive_before_kill").and_then(Value::as_bool) != Some(alive) {
        return Err(format!("alive before the signal: {alive}"));
    }
    if let Some(signal) = teardown
        .get("signal_sent")
        .and_then(Value::as_str)
        .and_then(signal_number)
    {
        sim.signal(signal);
    }
    check_exit(fx, sim, teardown)?;
    for (key, value) in teardown {
        let path = match key.as_str() {
            "returncode" | "killed_by_signal" | "shell_style_status" | "alive_before_kill"
            | "signal_sent" | "stderr_first_line" | "note" => continue,
            "api_socket_left" => fx.path("api.sock"),
            "vsock_uds_left" | "v_sock_left" => fx.path("v.sock"),
            "snapshot_state_file_exists" | "snapshot_mem_file_exists" => {
                let field = if key.contains("state") {
                    "snapshot_path"
                } else {
                    "mem_file_path"
                };
                let path = snapshot
                    .and_then(|s| s[field].as_str())
                    .ok_or("no snapshot was created")?;
                PathBuf::from(path)
            }
            other => match other.strip_suffix("_sock_left") {
                Some(stem) => fx.path(&format!("{stem}.sock")),
                None => return Err(format!("unknown teardown key {other}")),
            },
        };
        let expected = value.as_bool().unwrap_or(false);
        if file_exists(&path) != expected {
            return Err(format!(
                "{key}: {} exists = {}, recorded {expected}",
                path.display(),
                !expected
            ));
        }
    }
    Ok(())
}

fn replay_startup(name: &str, startup: &Map<String, Value>) -> Result<(), String> {
    let fx = Fixtures::new();
    let sock = fx.path("api.sock");
    if startup
        .get("note")
        .and_then(Value::as_str)
        .is_some_and(|n| n.contains("pre-created"))
    {
        std::fs::write(&sock, b"").expect("pre-create the socket path");
    }
    let args: Vec<String> = startup["args"]
        .as_array()
        .ok_or("no args")?
        .iter()
        .map(|a| fx.subst(a.as_str().unwrap_or("")))
        .collect();
    let sock = PathBuf::from(
        args.iter()
            .skip_while(|a| *a != "--api-sock")
            .nth(1)
            .ok_or("no --api-sock")?,
    );
    let mut sim = Sim::spawn(&args, &[], &sock);
    let served = sim.wait_for_socket(Duration::from_secs(10));
    if Some(served) != startup.get("api_socket_served").and_then(Value::as_bool) {
        return Err(format!("{name}: socket served = {served}"));
    }
    if let Some(get_root) = startup.get("get_root") {
        let got = sim.http("GET", "/", None);
        if get_root["status"] != got.status || got.json() != get_root["response"] {
            return Err(format!(
                "{name}: GET / answered {} {}",
                got.status,
                got.text()
            ));
        }
    }
    if let Some(signal) = startup
        .get("signal_sent")
        .and_then(Value::as_str)
        .and_then(signal_number)
    {
        sim.signal(signal);
    }
    check_exit(&fx, &mut sim, startup).map_err(|e| format!("{name}: {e}"))?;
    let stdout: Vec<String> = sim.stdout().lines().map(mask_timestamp).collect();
    for (index, expected) in startup["stdout_head"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let expected = fx.subst(expected.as_str().unwrap_or(""));
        let ours = stdout.get(index).cloned().unwrap_or_default();
        if ours != expected {
            return Err(format!(
                "{name}: stdout line {index}\n    ours:     {ours}\n    recorded: {expected}"
            ));
        }
    }
    let left = file_exists(&sock);
    if Some(left) != startup.get("api_socket_left").and_then(Value::as_bool) {
        return Err(format!("{name}: socket left = {left}"));
    }
    Ok(())
}

#[test]
fn replay_observed_firecracker_behaviour() {
    let path = shared_dir().join("observed.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        visible(&format!("SKIP: replay: {} not present", path.display()));
        return;
    };
    let lines: Vec<Line> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("observed.jsonl line parses"))
        .collect();
    let mut scenarios: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for line in &lines {
        scenarios
            .entry(line.scenario.as_str())
            .or_default()
            .push(line);
    }
    let mut failures = Vec::new();
    let (mut matched, mut total, mut startups, mut teardowns, mut skipped) = (0, 0, 0, 0, 0);
    for (name, mut group) in scenarios {
        if let Some((_, reason)) = SKIPPED_SCENARIOS.iter().find(|(s, _)| *s == name) {
            let pairs = group.iter().filter(|l| l.seq.is_some()).count();
            skipped += pairs;
            visible(&format!(
                "replay: skipping {name} ({pairs} pairs): {reason}"
            ));
            continue;
        }
        group.sort_by_key(|l| l.seq.unwrap_or(u32::MAX));
        if let Some(startup) = group.iter().find_map(|l| l.startup.as_ref()) {
            startups += 1;
            if let Err(e) = replay_startup(name, startup) {
                failures.push(e);
            }
            continue;
        }
        total += group.iter().filter(|l| l.seq.is_some()).count();
        teardowns += usize::from(group.iter().any(|l| l.teardown.is_some()));
        let (ok, errors) = replay_scenario(name, &group);
        matched += ok;
        failures.extend(errors);
    }
    visible(&format!(
        "replay: {matched}/{total} request pairs matched ({skipped} skipped, {} known differences); {teardowns} teardowns and {startups} startup scenarios checked; {} failures",
        KNOWN_DIFFERENCES.len(),
        failures.len()
    ));
    assert!(total > 0, "observed.jsonl had no request pairs");
    assert!(
        failures.is_empty(),
        "replay mismatches:\n{}",
        failures.join("\n")
    );
    assert_eq!(matched, total);
}

#[test]
fn position_suffix_is_dropped_only_when_shaped() {
    assert_eq!(
        strip_position("missing field `x` at line 1 column 21."),
        "missing field `x`."
    );
    assert_eq!(strip_position("Empty PUT request."), "Empty PUT request.");
    assert_eq!(
        mask_timestamp("2026-01-02T03:04:05.123456789 [a:main] x"),
        "<ts> [a:main] x"
    );
}
