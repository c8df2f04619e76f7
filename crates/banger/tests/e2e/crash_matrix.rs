//! Crash matrix: SIGKILL `bangerd` at each step of create, start, stop and
//! delete, restart it on the same state, and check that what it reports is
//! true and that nothing leaked: no VMM carrying a VM's `--id` beyond the
//! one a `running` VM has, no loop device over banger's files, no stale
//! socket, partial file or crash record, no operation stuck `running`.
//!
//! The simulator's delay switches widen the windows: `FCSIM_START_DELAY_MS`
//! (between the spawn and InstanceStart's answer, i.e. before the daemon
//! writes `handles.json`), `FCSIM_SHUTDOWN_DELAY_MS` (a slow guest
//! shutdown), and a readiness wait on a guest that never answers. The
//! network stays disabled (TAP leaks are covered by the network tests).

use crate::util;

use banger_testsupport::skip;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use banger_api::rpc::{VmCreateParams, VmDeleteParams, VmRef, VmStopParams};
use banger_api::{OpState, Operation, Request, Vm, VmCreated, VmState};
use util::{Fixtures, TestDaemon, tail};

/// Live (non-zombie) processes whose command line carries `--id <id>`.
fn vmms_with_id(id: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let mut args = cmd.split(|b| *b == 0);
        let mut hit = false;
        while let Some(a) = args.next() {
            if a == b"--id" && args.next() == Some(id.as_bytes()) {
                hit = true;
                break;
            }
        }
        if hit && alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| !r.trim_start().starts_with(['Z', 'X']))
        })
        .unwrap_or(false)
}

/// Every live VMM of this daemon's state dir (any `--id`).
fn all_vmms(d: &TestDaemon) -> Vec<u32> {
    let marker = d.state_dir().display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains(&marker) && cmd.contains("--api-sock") && alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn vmm_id(vm: &Vm) -> String {
    format!("banger-{}", vm.id)
}

fn vm_dir(d: &TestDaemon, vm: &Vm) -> PathBuf {
    d.state_dir().join("vms").join(&vm.id)
}

/// Files anywhere below `p` whose name matches `bad`.
fn find_files(p: &Path, bad: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(p) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            find_files(&path, bad, out);
        } else if bad(&e.file_name().to_string_lossy()) {
            out.push(path);
        }
    }
}

/// The invariants after a restart: true states and no leaks.
fn assert_true_and_clean(d: &TestDaemon) {
    let mut c = d.client();
    let vms: Vec<Vm> = c.call(Request::VmList).unwrap();
    let mut expected = 0;
    for vm in &vms {
        let n = vmms_with_id(&vmm_id(vm)).len();
        match vm.state {
            VmState::Running => {
                assert_eq!(n, 1, "running VM {} has {n} VMMs", vm.name);
                expected += 1;
            }
            VmState::Created | VmState::Stopped | VmState::Error => {
                assert_eq!(n, 0, "VM {} is {} but has {n} VMMs", vm.name, vm.state);
                let run = d.state_dir().join("run/vms").join(&vm.id);
                for s in ["api.sock", "vsock.sock"] {
                    assert!(!run.join(s).exists(), "stale {s} of {}", vm.name);
                }
                assert!(
                    !vm_dir(d, vm).join("handles.json").exists(),
                    "handles of a VM without a VMM"
                );
            }
            other => panic!(
                "VM {} is {other} after reconcile; log:\n{}",
                vm.name,
                tail(&d.log(), 40)
            ),
        }
    }
    let all = all_vmms(d);
    assert_eq!(all.len(), expected, "leaked VMMs: {all:?}");
    let mut bad = Vec::new();
    find_files(
        &d.state_dir().join("vms"),
        &|n| n.ends_with(".partial") || n.ends_with(".tmp") || n == "vmm.intent",
        &mut bad,
    );
    assert!(bad.is_empty(), "leftover files: {bad:?}");
    // VM directories of VMs that no longer exist are gone.
    let ids: Vec<&str> = vms.iter().map(|v| v.id.as_str()).collect();
    for dir in util::list_dir(&d.state_dir().join("vms")) {
        assert!(ids.contains(&dir.as_str()), "orphan VM directory {dir}");
    }
    let ops: Vec<Operation> = c.call(Request::OperationList).unwrap();
    assert!(
        !ops.iter().any(|o| o.state == OpState::Running),
        "operations left running: {ops:?}"
    );
    // No loop device over banger's files.
    let state = d.state_dir().display().to_string();
    for e in std::fs::read_dir("/sys/block")
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            assert!(
                !b.contains(&state),
                "leaked loop {:?} over {b}",
                e.file_name()
            );
        }
    }
}

fn create_async(d: &TestDaemon, name: &str) -> Vm {
    let created: VmCreated = d
        .client()
        .call(Request::VmCreate(VmCreateParams {
            name: name.into(),
            image: Some("base".into()),
            ..Default::default()
        }))
        .unwrap();
    created.vm
}

/// Send `req` on a thread (the daemon will die under it).
fn call_in_background(d: &TestDaemon, req: Request) -> std::thread::JoinHandle<()> {
    let mut c = d.client();
    std::thread::spawn(move || {
        let _ = c.call::<serde_json::Value>(req);
    })
}

fn set_env(d: &mut TestDaemon, key: &str, value: Option<&str>) {
    d.env.retain(|(k, _)| k != key);
    if let Some(v) = value {
        d.env.push((key.into(), v.into()));
    }
}

/// Kill the daemon, restart it without the delay switches, check.
fn crash_and_restart(d: &mut TestDaemon) {
    d.kill_hard();
    for k in ["FCSIM_START_DELAY_MS", "FCSIM_SHUTDOWN_DELAY_MS"] {
        set_env(d, k, None);
    }
    d.spawn();
    assert_true_and_clean(d);
}

/// After the crash: the VM starts again with exactly one VMM, and a forced
/// delete leaves nothing.
fn restartable_and_deletable(d: &TestDaemon, name: &str) {
    let vm = d.vm(name).unwrap();
    if vm.state != VmState::Running {
        d.client()
            .call::<Vm>(Request::VmStart(VmRef { vm: name.into() }))
            .unwrap();
    }
    assert_eq!(vmms_with_id(&vmm_id(&vm)).len(), 1);
    assert_true_and_clean(d);
    d.client()
        .call::<serde_json::Value>(Request::VmDelete(VmDeleteParams {
            vm: name.into(),
            force: true,
        }))
        .unwrap();
    assert!(vmms_with_id(&vmm_id(&vm)).is_empty());
    assert_true_and_clean(d);
}

#[test]
fn crash_between_spawn_and_record_in_create() {
    let Some(fx) = Fixtures::new("crash_between_spawn_and_record_in_create") else {
        return;
    };
    let mut d = TestDaemon::start(&[("FCSIM_START_DELAY_MS", "5000")]);
    d.register_image(&fx, "base");
    let vm = create_async(&d, "dev");
    wait_until("the VMM", 20, || !vmms_with_id(&vmm_id(&vm)).is_empty());
    let dir = vm_dir(&d, &vm);
    assert!(
        dir.join("vmm.intent").exists(),
        "intent recorded before the spawn"
    );
    assert!(!dir.join("handles.json").exists(), "inside the window");
    crash_and_restart(&mut d);
    let after = d.vm("dev").unwrap();
    assert_eq!(after.state, VmState::Error, "{after:?}");
    assert!(
        after
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("while the VM was starting"),
        "{after:?}"
    );
    restartable_and_deletable(&d, "dev");
}

#[test]
fn crash_between_spawn_and_record_in_start() {
    let Some(fx) = Fixtures::new("crash_between_spawn_and_record_in_start") else {
        return;
    };
    let mut d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    let vm = d.create("dev", "base").unwrap();
    d.cli_ok(&["vm", "stop", "dev"]);
    d.kill_hard();
    set_env(&mut d, "FCSIM_START_DELAY_MS", Some("5000"));
    d.spawn();
    let _t = call_in_background(&d, Request::VmStart(VmRef { vm: "dev".into() }));
    wait_until("the VMM", 20, || !vmms_with_id(&vmm_id(&vm)).is_empty());
    crash_and_restart(&mut d);
    assert_eq!(d.vm("dev").unwrap().state, VmState::Error);
    restartable_and_deletable(&d, "dev");
}

#[test]
fn crash_during_the_readiness_wait() {
    let Some(fx) = Fixtures::new("crash_during_the_readiness_wait") else {
        return;
    };
    // The simulator's vsock accepts and never answers: the wait lasts.
    let mut d = TestDaemon::start_with(
        &[],
        "[guest]\nreadiness = \"vsock\"\nreadiness_timeout_secs = 60\nsync_identity = false\n",
    );
    d.register_image(&fx, "base");
    let vm = create_async(&d, "dev");
    let dir = vm_dir(&d, &vm);
    wait_until("handles.json", 20, || dir.join("handles.json").exists());
    assert_eq!(d.vm("dev").unwrap().state, VmState::Starting);
    crash_and_restart(&mut d);
    let after = d.vm("dev").unwrap();
    assert_eq!(
        after.state,
        VmState::Error,
        "an interrupted readiness wait is not running: {after:?}"
    );
    d.cli_ok(&["vm", "delete", "dev", "--force"]);
    assert_true_and_clean(&d);
}

#[test]
fn crash_during_stop() {
    let Some(fx) = Fixtures::new("crash_during_stop") else {
        return;
    };
    let mut d = TestDaemon::start(&[("FCSIM_SHUTDOWN_DELAY_MS", "5000")]);
    d.register_image(&fx, "base");
    let vm = d.create("dev", "base").unwrap();
    let _t = call_in_background(
        &d,
        Request::VmStop(VmStopParams {
            vm: "dev".into(),
            timeout_secs: Some(30),
        }),
    );
    wait_until("stopping", 10, || {
        d.vm("dev").is_ok_and(|v| v.state == VmState::Stopping)
    });
    assert_eq!(vmms_with_id(&vmm_id(&vm)).len(), 1);
    crash_and_restart(&mut d);
    assert_eq!(d.vm("dev").unwrap().state, VmState::Stopped);
    restartable_and_deletable(&d, "dev");
}

#[test]
fn crash_during_create_and_delete_at_any_moment() {
    let Some(fx) = Fixtures::new("crash_during_create_and_delete") else {
        return;
    };
    let mut d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    for (i, delay_ms) in [0u64, 5, 20, 60, 150].into_iter().enumerate() {
        // Create, killed somewhere between the reply and the end.
        let name = format!("c{i}");
        create_async(&d, &name);
        std::thread::sleep(Duration::from_millis(delay_ms));
        crash_and_restart(&mut d);
        // Delete --force, killed somewhere in it.
        let name = format!("d{i}");
        d.create(&name, "base").unwrap();
        let _t = call_in_background(
            &d,
            Request::VmDelete(VmDeleteParams {
                vm: name.clone(),
                force: true,
            }),
        );
        std::thread::sleep(Duration::from_millis(delay_ms));
        crash_and_restart(&mut d);
    }
    // Whatever survived can be deleted, leaving nothing.
    let vms: Vec<Vm> = d.client().call(Request::VmList).unwrap();
    for vm in vms {
        d.cli_ok(&["vm", "delete", &vm.name, "--force"]);
    }
    assert_true_and_clean(&d);
    assert!(d.vm_dirs().is_empty(), "{:?}", d.vm_dirs());
}

#[test]
fn handles_of_older_versions_are_adopted_with_a_start_time() {
    let Some(fx) = Fixtures::new("handles_of_older_versions") else {
        return;
    };
    let mut d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    let vm = d.create("dev", "base").unwrap();
    d.kill_hard();
    let file = vm_dir(&d, &vm).join("handles.json");
    let mut h: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(h["start_time"].is_u64(), "{h}");
    h.as_object_mut().unwrap().remove("start_time");
    std::fs::write(&file, serde_json::to_vec(&h).unwrap()).unwrap();
    d.spawn();
    assert_eq!(d.vm("dev").unwrap().state, VmState::Running, "adopted");
    assert_true_and_clean(&d);
    let h: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        h["start_time"].is_u64(),
        "rewritten with the start time: {h}"
    );
    // And it can be signalled: stop through SIGKILL after the timeout.
    d.cli_ok(&["vm", "kill", "dev"]);
    assert!(vmms_with_id(&vmm_id(&vm)).is_empty());
    assert_true_and_clean(&d);
}

#[test]
fn a_restart_leaves_the_vmms_of_another_state_dir_alone() {
    let Some(fx) = Fixtures::new("another_state_dir") else {
        return;
    };
    let mut a = TestDaemon::start(&[]);
    let b = TestDaemon::start(&[]);
    a.register_image(&fx, "base");
    b.register_image(&fx, "base");
    let theirs = b.create("theirs", "base").unwrap();
    // A crash in a's create leaves a VMM reconcile must end; b's is not a's.
    set_env(&mut a, "FCSIM_START_DELAY_MS", Some("5000"));
    a.kill_hard();
    a.spawn();
    let ours = create_async(&a, "ours");
    wait_until("the VMM", 20, || !vmms_with_id(&vmm_id(&ours)).is_empty());
    crash_and_restart(&mut a);
    assert!(vmms_with_id(&vmm_id(&ours)).is_empty());
    assert_eq!(vmms_with_id(&vmm_id(&theirs)).len(), 1, "b's VMM survives");
    assert_eq!(b.vm("theirs").unwrap().state, VmState::Running);
}

/// A VMM no record names, holding the VM's lock the way a VMM spawned by
/// the helper does (an inherited locked fd): `flock(1)` locks the file and
/// runs the simulator with the fd open.
fn unrecorded_vmm(d: &TestDaemon, vm: &Vm) -> std::process::Child {
    let dir = vm_dir(d, vm);
    let run = d.state_dir().join("run/vms").join(&vm.id);
    std::fs::create_dir_all(&run).unwrap();
    let child = std::process::Command::new("flock")
        .arg("-n")
        .arg(dir.join("vmm.lock"))
        .arg(util::bin("banger-fcsim"))
        .arg("--api-sock")
        .arg(run.join("api.sock"))
        .arg("--id")
        .arg(vmm_id(vm))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("the unrecorded VMM", 10, || run.join("api.sock").exists());
    child
}

#[test]
fn start_ends_an_unrecorded_vmm_holding_the_lock_instead_of_running_a_second() {
    let Some(fx) = Fixtures::new("start_ends_an_unrecorded_vmm") else {
        return;
    };
    if std::process::Command::new("flock")
        .arg("-V")
        .output()
        .is_err()
    {
        skip!("start_ends_an_unrecorded_vmm", "flock(1) is not installed");
    }
    let d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    let vm = d.create("dev", "base").unwrap();
    d.cli_ok(&["vm", "stop", "dev"]);
    let mut orphan = unrecorded_vmm(&d, &vm);
    // flock(1) and the simulator both carry the id.
    let old = vmms_with_id(&vmm_id(&vm));
    d.cli_ok(&["vm", "start", "dev"]);
    // flock(1) exits once its child was ended.
    orphan.wait().unwrap();
    let now = vmms_with_id(&vmm_id(&vm));
    assert_eq!(now.len(), 1, "one VMM on the VM's disks: {now:?}");
    assert!(
        !old.iter().any(|p| now.contains(p)),
        "the unrecorded VMM was ended, a new one runs"
    );
    assert!(d.log().contains("held the VM's lock"), "said so in the log");
    assert_true_and_clean(&d);
}

#[test]
fn delete_ends_an_unrecorded_vmm() {
    let Some(fx) = Fixtures::new("delete_ends_an_unrecorded_vmm") else {
        return;
    };
    if std::process::Command::new("flock")
        .arg("-V")
        .output()
        .is_err()
    {
        skip!("delete_ends_an_unrecorded_vmm", "flock(1) is not installed");
    }
    let d = TestDaemon::start(&[]);
    d.register_image(&fx, "base");
    d.cli_ok(&["vm", "create", "dev", "--image", "base", "--no-start"]);
    let vm = d.vm("dev").unwrap();
    let mut orphan = unrecorded_vmm(&d, &vm);
    d.cli_ok(&["vm", "delete", "dev"]);
    orphan.wait().unwrap();
    assert!(vmms_with_id(&vmm_id(&vm)).is_empty());
    assert_true_and_clean(&d);
    assert!(d.vm_dirs().is_empty());
}

/// banger's TAPs inside network namespace `ns`.
fn taps_in(ns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-j", "-d", "link", "show"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v.as_array()
        .map(|links| {
            links
                .iter()
                .filter(|l| l["linkinfo"]["info_kind"] == "tun")
                .filter_map(|l| l["ifname"].as_str())
                .filter(|n| n.starts_with("bgt"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

struct NetNs(String);

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

#[test]
fn crash_between_spawn_and_record_with_the_network_leaks_no_tap() {
    const T: &str = "crash_with_the_network";
    if !util::is_root() {
        skip!(T, "needs root (network namespace, TAPs)");
    }
    let ns_ok = ["ip", "nft"].iter().all(|t| {
        std::process::Command::new(t)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ns_ok {
        skip!(T, "ip or nft is not installed");
    }
    let Some(fx) = Fixtures::new(T) else { return };
    let ns = NetNs(format!("bgtest-crash-{}", std::process::id()));
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &ns.0])
        .output();
    assert!(
        std::process::Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success()
    );
    let keys = "dns_port = 5355\ntap_pool_size = 2\nguest_dns = \"172.30.0.1\"\n";
    let mut d = TestDaemon::start_full(&[("FCSIM_START_DELAY_MS", "5000")], "", keys, Some(&ns.0));
    wait_until("the TAP pool", 10, || taps_in(&ns.0).len() == 2);
    d.register_image(&fx, "base");
    let vm = create_async(&d, "dev");
    wait_until("the VMM", 20, || !vmms_with_id(&vmm_id(&vm)).is_empty());
    let intent: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vm_dir(&d, &vm).join("vmm.intent")).unwrap())
            .unwrap();
    assert!(
        intent["tap"].is_string(),
        "the intent names the TAP: {intent}"
    );
    crash_and_restart(&mut d);
    assert_eq!(d.vm("dev").unwrap().state, VmState::Error);
    // The TAP went back to the pool (or was deleted): only the pool remains.
    wait_until("the TAP pool after the restart", 10, || {
        taps_in(&ns.0).len() == 2
    });
    restartable_and_deletable(&d, "dev");
    wait_until("the TAP pool after the delete", 10, || {
        taps_in(&ns.0).len() == 2
    });
}
