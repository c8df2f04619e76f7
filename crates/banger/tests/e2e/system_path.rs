//! The system path end to end: `bangerd-root` started by the test as root,
//! the owner daemon under a non-root uid (65534, via `setpriv`) talking to
//! it, the simulator as Firecracker; and the helper's refusals seen from
//! outside. Root-only: each test prints SKIP and passes elsewhere.

use crate::util;

use banger_testsupport::skip;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use banger_api::{ErrorKind, Vm, VmDetail, VmState};
use banger_privops::wire::{self, MAX_REQUEST, WireErrorKind, WireResponse};
use banger_privops::{PrivOp, PrivOpsError, PrivilegedOps, RootHelperClient, SpawnVmm, VmmSignal};
use util::{Fixtures, TestDaemon, bin, is_root};

const NOBODY: u32 = 65534;

/// A `bangerd-root` process serving `socket` for `owner_uid`.
struct Helper {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
}

impl Helper {
    fn start(dir: &Path, owner_uid: u32, state_dir: &Path, runtime_dir: &Path) -> Helper {
        let socket = dir.join("root.sock");
        let meta = format!(
            "version = \"test\"\nowner = \"nobody\"\nowner_uid = {owner_uid}\nowner_gid = {owner_uid}\n\
             [paths]\nconfig = {:?}\nstate_dir = {:?}\nruntime_dir = {:?}\nhelper_socket = {:?}\n\
             bin_dir = \"/usr/local/bin\"\nunit_dir = \"/etc/systemd/system\"\n",
            dir.join("config.toml"),
            state_dir,
            runtime_dir,
            socket
        );
        std::fs::write(dir.join("install.toml"), meta).unwrap();
        let log = dir.join("bangerd-root.log");
        // systemd's side of Type=notify: READY=1 arrives here.
        let notify = std::os::unix::net::UnixDatagram::bind(dir.join("notify.sock")).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let child = Command::new(bin("bangerd-root"))
            .arg("--config")
            .arg(dir.join("install.toml"))
            .args(["--log", "debug", "--request-timeout-secs", "2"])
            .env("NOTIFY_SOCKET", dir.join("notify.sock"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let h = Helper { child, socket, log };
        let mut buf = [0u8; 4096];
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no READY=1 from bangerd-root ({e}): {}", h.log()));
        let msg = String::from_utf8_lossy(&buf[..n]);
        assert!(msg.lines().any(|l| l == "READY=1"), "{msg}");
        assert!(
            msg.contains(&format!(
                "STATUS=serving {} for uid {owner_uid}",
                h.socket.display()
            )),
            "{msg}"
        );
        // Ready means listening: the first connection succeeds, no retry.
        UnixStream::connect(&h.socket).expect("bangerd-root said READY=1 but its socket refuses");
        h
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open_dir(p: &Path) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A test dir with `config.toml` (simulator as firecracker, helper socket
/// inside) and a `state` dir owned by `owner`.
fn system_dir(owner: u32) -> TestDaemon {
    let dir = tempfile::Builder::new()
        .prefix("banger-sys-")
        .tempdir()
        .unwrap();
    open_dir(dir.path());
    let config = format!(
        "firecracker_bin = {:?}\nprivileged_helper = {:?}\n[network]\nenabled = false\n[guest]\nreadiness = \"none\"\nsync_identity = false\n[daemon]\nstop_timeout_secs = 2\nstats_interval_secs = 1\n",
        bin("banger-fcsim").display().to_string(),
        dir.path().join("root.sock")
    );
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("run")).unwrap();
    for d in [&state, &state.join("run")] {
        std::os::unix::fs::chown(d, Some(owner), Some(owner)).unwrap();
    }
    TestDaemon {
        dir,
        env: Vec::new(),
        child: None,
        netns: None,
        launcher: [
            "setpriv",
            &format!("--reuid={owner}"),
            &format!("--regid={owner}"),
            "--clear-groups",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    }
}

/// Whether `test` can run here: root (to start `bangerd-root` and switch
/// uids) and `setpriv`; otherwise it prints why.
fn can_run(test: &str) -> bool {
    if !is_root() {
        skip!(return false; test, "needs root to start bangerd-root and switch uids");
    }
    let ok = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip!(return false; test, "setpriv is not installed (apt-get install util-linux)");
    }
    true
}

/// `banger system ping` of the helper at `socket`, run as uid/gid 65534.
fn ping_as_nobody(socket: &Path) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin("banger"))
        .env("HOME", "/nonexistent")
        .args(["system", "ping", "--helper-socket"])
        .arg(socket)
        .output()
        .unwrap()
}

#[test]
fn non_root_daemon_runs_the_full_vm_flow_through_the_helper() {
    const T: &str = "non_root_daemon_runs_the_full_vm_flow_through_the_helper";
    if !can_run(T) {
        return;
    }
    let Some(fx) = Fixtures::new(T) else {
        return;
    };
    open_dir(fx.dir.path());
    let mut d = system_dir(NOBODY);
    let helper = Helper::start(
        d.dir.path(),
        NOBODY,
        &d.state_dir(),
        &d.state_dir().join("run"),
    );
    d.spawn();
    let daemon_pid = d.child.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{daemon_pid}/status")).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("65534")),
        "the daemon runs as 65534:\n{status}"
    );

    let rootfs = fx.rootfs.display().to_string();
    let kernel = fx.kernel.display().to_string();
    d.cli_ok(&[
        "image", "register", "base", "--rootfs", &rootfs, "--kernel", &kernel,
    ]);
    d.cli_ok(&[
        "vm", "create", "dev", "--image", "base", "--vcpus", "1", "--memory", "256M",
    ]);
    let vm: VmDetail = d.cli_json(&["vm", "show", "dev"]);
    assert_eq!(vm.vm.state, VmState::Running, "{}", helper.log());
    let pid1 = vm.runtime.as_ref().unwrap().pid;
    let meta = std::fs::metadata(format!("/proc/{pid1}")).unwrap();
    assert_eq!(
        meta.uid(),
        NOBODY,
        "the helper started the VMM as the owner"
    );
    let console = d
        .state_dir()
        .join("vms")
        .join(&vm.vm.id)
        .join("console.log");
    let m = std::fs::metadata(&console).unwrap();
    assert_eq!(m.uid(), NOBODY, "{} is the owner's", console.display());
    // The owner reaches the helper and is seen as itself.
    let out = ping_as_nobody(&helper.socket);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("sees uid 65534"),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    d.cli_ok(&["vm", "stop", "dev"]);
    assert_eq!(d.vm("dev").unwrap().state, VmState::Stopped);
    d.start_then_restart("dev");
    let out = d.cli(&["vm", "set", "dev", "--vcpus", "2"]);
    assert_eq!(out.status.code(), Some(ErrorKind::Conflict.exit_code()));
    d.cli_ok(&["vm", "stop", "dev"]);
    d.cli_ok(&["vm", "set", "dev", "--vcpus", "2", "--memory", "512M"]);
    let vm: Vm = d.cli_json(&["vm", "show", "dev"]);
    assert_eq!((vm.vcpus, vm.memory_mib), (2, 512));
    d.cli_ok(&["vm", "start", "dev"]);
    let pid3 = d
        .cli_json::<VmDetail>(&["vm", "show", "dev"])
        .runtime
        .unwrap()
        .pid;
    d.cli_ok(&["vm", "kill", "dev"]);
    assert_eq!(d.vm("dev").unwrap().state, VmState::Stopped);
    assert!(!alive(pid3), "kill went through the helper");
    d.cli_ok(&["vm", "delete", "dev"]);
    assert!(d.vm_dirs().is_empty());
    let log = helper.log();
    for op in ["spawn_vmm", "signal_vmm"] {
        assert!(
            log.contains(&format!("op=\"{op}\"")) || log.contains(&format!("op={op}")),
            "helper logged {op} with its caller:\n{log}"
        );
    }
    assert!(log.contains("caller_uid=65534"), "{log}");
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let st = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            !matches!(st, Some(Some('Z')) | None)
        })
        .unwrap_or(false)
}

#[test]
fn helper_refuses_escapes_other_uids_and_oversized_requests() {
    const T: &str = "helper_refuses_escapes_other_uids_and_oversized_requests";
    if !can_run(T) {
        return;
    }
    // Owner 4242: neither we (root, allowed) nor 65534 (refused).
    let d = system_dir(4242);
    let state = d.state_dir();
    let helper = Helper::start(d.dir.path(), 4242, &state, &state.join("run"));

    // The socket: the owner's, 0600 (root connects anyway); the lock
    // beside it names the helper's pid.
    let m = std::fs::metadata(&helper.socket).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o777), (4242, 0o600));
    let lock = std::fs::read_to_string(helper.socket.with_extension("lock")).unwrap();
    assert_eq!(lock.trim(), helper.child.id().to_string());

    // Another uid is refused with a clear error (the socket is opened up so
    // the refusal comes from SO_PEERCRED, not from file permissions).
    std::fs::set_permissions(&helper.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = ping_as_nobody(&helper.socket);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("uid 65534 may not use bangerd-root"), "{err}");
    // Root is served.
    let client = RootHelperClient::new(&helper.socket);
    assert_eq!(client.ping().unwrap().1, 0);

    let fc = bin("banger-fcsim");
    let spec = |api: PathBuf, console: PathBuf| SpawnVmm {
        binary: fc.clone(),
        api_sock: api,
        id: "vm-1".into(),
        console_log: console,
        stderr_log: state.join("stderr.log"),
        exit_status_file: state.join("exit"),
        lock_file: state.join("vmm.lock"),
    };
    std::os::unix::fs::symlink("/etc", state.join("evil")).unwrap();
    let cases: Vec<(&str, PrivOp)> = vec![
        (
            "../ escape",
            PrivOp::SpawnVmm(spec(state.join("../../x.sock"), state.join("c.log"))),
        ),
        (
            "symlink into /etc",
            PrivOp::SpawnVmm(spec(
                state.join("a.sock"),
                state.join("evil/banger-evil.log"),
            )),
        ),
        (
            "absolute path elsewhere",
            PrivOp::SpawnVmm(spec(
                state.join("a.sock"),
                PathBuf::from("/etc/banger-evil.log"),
            )),
        ),
        (
            "foreign binary",
            PrivOp::SpawnVmm(SpawnVmm {
                binary: "/bin/sh".into(),
                ..spec(state.join("a.sock"), state.join("c.log"))
            }),
        ),
        (
            "pid 1",
            PrivOp::SignalVmm {
                pid: 1,
                start_time: 0,
                signal: VmmSignal::Kill,
            },
        ),
    ];
    for (what, op) in cases {
        match client.execute(op) {
            Err(PrivOpsError::Refused { reason, .. }) => assert!(!reason.is_empty(), "{what}"),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
    }
    assert!(!Path::new("/etc/banger-evil.log").exists());
    assert!(!state.join("a.sock").exists() && !state.join("c.log").exists());
    assert!(!state.join("stderr.log").exists(), "nothing was created");

    // Oversized: the length alone is refused, the body never read.
    let mut s = UnixStream::connect(&helper.socket).unwrap();
    s.write_all(&((MAX_REQUEST as u32) + 1).to_be_bytes())
        .unwrap();
    let body = wire::read_frame(&mut s, wire::MAX_RESPONSE).unwrap();
    let resp: WireResponse = serde_json::from_slice(&body).unwrap();
    assert_eq!(resp.result.unwrap_err().kind, WireErrorKind::TooLarge);
    // A slow client is cut off by the request timeout (2 s here).
    let mut s = UnixStream::connect(&helper.socket).unwrap();
    s.write_all(&[0, 0]).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 1];
    let t0 = Instant::now();
    assert_eq!(std::io::Read::read(&mut s, &mut buf).unwrap_or(0), 0);
    assert!(t0.elapsed() < Duration::from_secs(9));
    let log = helper.log();
    assert!(
        log.contains("refused connection") && log.contains("caller_uid=65534"),
        "{log}"
    );
}
