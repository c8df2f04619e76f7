//! Hostile requests against the helper's process operations (`SpawnVmm`,
//! `SignalVmm`), performed by the executor the helper runs
//! (`LocalPrivOps`: validate, then execute) as root, for a throwaway owner
//! uid that has no passwd entry.
//!
//! Signals aimed at root's processes, another uid's, the owner's non-VMM
//! processes (one with a VMM-looking `--api-sock`/`--id` command line), a
//! VMM named with the wrong start time (a recycled pid) and special pids;
//! spawns whose log, exit-status, lock or socket path is a symlink, a
//! foreign file or outside banger's directories, onto an existing socket,
//! under a held lock, of a foreign binary, and a directory/symlink swap
//! raced against spawns. Prints `hostile process: tried N, accepted outside
//! the rules M` and fails unless M is 0.
//!
//! The test binary doubles as the fake VMM (`harness = false`): run with
//! `--api-sock`, it sleeps when its `--id` starts with `live`, else exits.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use banger_privops::{
    LocalPrivOps, Policy, PrivOp, PrivOpsError, PrivilegedOps, SpawnVmm, VMM_LOCK_HELD, VmmSignal,
};

const OWNER: u32 = 64123;
const OTHER: u32 = 64124;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--id") {
        // Fake VMM mode.
        if args.get(i + 1).is_some_and(|id| id.starts_with("live")) {
            std::thread::sleep(Duration::from_secs(120));
        }
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("hostile_process: test");
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        banger_testsupport::skip!(
            "hostile_process",
            "needs root (to act for a throwaway owner uid)"
        );
    }
    let mut t = Tally::default();
    let env = Env::new();
    signal_cases(&env, &mut t);
    spawn_cases(&env, &mut t);
    symlink_race(&env, &mut t);
    println!(
        "hostile process: tried {}, accepted outside the rules {}",
        t.tried, t.outside
    );
    for f in &t.failures {
        eprintln!("accepted outside the rules: {f}");
    }
    if t.outside > 0 {
        std::process::exit(1);
    }
}

#[derive(Default)]
struct Tally {
    tried: usize,
    outside: usize,
    failures: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, refused: bool) {
        self.tried += 1;
        if !refused {
            self.outside += 1;
            self.failures.push(what.to_string());
        }
    }
}

struct Env {
    _t: tempfile::TempDir,
    root: PathBuf,
    vmm: PathBuf,
    ops: LocalPrivOps,
    children: std::cell::RefCell<Vec<Child>>,
}

impl Env {
    fn new() -> Env {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["state/vms/a", "run/vms/a", "outside", "bin"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for d in [
            "state",
            "state/vms",
            "state/vms/a",
            "run",
            "run/vms",
            "run/vms/a",
        ] {
            std::os::unix::fs::chown(root.join(d), Some(OWNER), Some(OWNER)).unwrap();
        }
        std::fs::write(root.join("outside/victim"), "root's\n").unwrap();
        let vmm = root.join("bin/fakevmm");
        std::fs::copy(std::env::current_exe().unwrap(), &vmm).unwrap();
        std::fs::set_permissions(&vmm, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ops = LocalPrivOps::new(Policy {
            device_prefix: "bg".into(),
            state_dir: root.join("state"),
            runtime_dir: root.join("run"),
            subnet: (std::net::Ipv4Addr::new(172, 30, 0, 0), 24),
            owner_uid: OWNER,
            vmm_binary: vmm.clone(),
        });
        Env {
            _t: t,
            root,
            vmm,
            ops,
            children: Default::default(),
        }
    }

    fn spec(&self, id: &str) -> SpawnVmm {
        let vm = self.root.join("state/vms/a");
        SpawnVmm {
            binary: self.vmm.clone(),
            api_sock: self.root.join("run/vms/a/api.sock"),
            id: id.into(),
            console_log: vm.join("console.log"),
            stderr_log: vm.join("vmm.stderr"),
            exit_status_file: vm.join("vmm.exit"),
            lock_file: vm.join("vmm.lock"),
        }
    }

    /// Start `cmd` as `uid` (root when 0) and keep it for cleanup.
    fn start(&self, mut cmd: Command, uid: u32) -> (u32, u64) {
        if uid != 0 {
            cmd.uid(uid).gid(uid);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        self.children.borrow_mut().push(child);
        // Past exec: the command line and executable are the final ones.
        std::thread::sleep(Duration::from_millis(100));
        (
            pid,
            banger_privops::start_time(Path::new("/proc"), pid).unwrap(),
        )
    }

    fn outside_untouched(&self) -> bool {
        let names: Vec<_> = std::fs::read_dir(self.root.join("outside"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.len() == 1
            && std::fs::read_to_string(self.root.join("outside/victim")).unwrap() == "root's\n"
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in self.children.borrow_mut().iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn alive(pid: u32) -> bool {
    banger_privops::read_identity(Path::new("/proc"), pid).is_some_and(|i| !i.zombie)
}

/// Refused (an error) and the target still runs.
fn refused_and_alive(r: Result<bool, PrivOpsError>, pid: u32) -> bool {
    r.is_err() && alive(pid)
}

fn signal_cases(env: &Env, t: &mut Tally) {
    let kill = |pid, start| env.ops.signal_vmm(pid, start, VmmSignal::Kill);
    let fake_vmm = |uid| {
        let mut c = Command::new(&env.vmm);
        c.args(["--api-sock", "/nonexistent", "--id", "live-x"]);
        env.start(c, uid)
    };
    let sleep = || {
        let mut c = Command::new("sleep");
        c.arg("300");
        c
    };
    // Root's processes: a plain one and one running the VMM binary.
    let (pid, start) = env.start(sleep(), 0);
    t.check(
        "SIGKILL to root's sleep",
        refused_and_alive(kill(pid, start), pid),
    );
    let (pid, start) = fake_vmm(0);
    t.check(
        "SIGKILL to the VMM binary run by root",
        refused_and_alive(kill(pid, start), pid),
    );
    // Another uid's VMM binary.
    let (pid, start) = fake_vmm(OTHER);
    t.check(
        "SIGKILL to the VMM binary of another uid",
        refused_and_alive(kill(pid, start), pid),
    );
    // The owner's non-VMM processes, one dressed up as a VMM.
    let (pid, start) = env.start(sleep(), OWNER);
    t.check(
        "SIGKILL to the owner's sleep",
        refused_and_alive(kill(pid, start), pid),
    );
    let mut c = Command::new("sh");
    let api = env.root.join("run/vms/a/api.sock");
    c.args(["-c", "sleep 300; true", "sh", "--api-sock"])
        .arg(&api)
        .args(["--id", "banger-a"]);
    let (pid, start) = env.start(c, OWNER);
    t.check(
        "SIGTERM to the owner's sh with a VMM command line",
        env.ops.signal_vmm(pid, start, VmmSignal::Term).is_err() && alive(pid),
    );
    // The owner's real VMM named with another start time (a recycled pid).
    let (pid, start) = fake_vmm(OWNER);
    for wrong in [start.wrapping_add(1), start.wrapping_sub(1), 0, u64::MAX] {
        t.check(
            &format!("SIGKILL to the owner's VMM with start time {wrong} (is {start})"),
            refused_and_alive(kill(pid, wrong), pid),
        );
    }
    // Special pids: refused, or at most "not delivered" for a free one.
    for p in [0u32, 1, u32::MAX, i32::MAX as u32 + 1, 4_000_000_000] {
        let r = kill(p, 0);
        t.check(
            &format!("SIGKILL to pid {p}"),
            matches!(r, Err(PrivOpsError::Refused { .. })),
        );
    }
    let r = kill(i32::MAX as u32, 0);
    t.check("SIGKILL to a free pid", !matches!(r, Ok(true)));
    // Through the wire type too (validate + execute), pid 1 as root's init.
    t.check(
        "SignalVmm pid 1",
        env.ops
            .execute(PrivOp::SignalVmm {
                pid: 1,
                start_time: 0,
                signal: VmmSignal::Kill,
            })
            .is_err(),
    );
    // The control: the owner's VMM with its own start time is signalled.
    assert!(
        matches!(kill(pid, start), Ok(true)),
        "the rules must still let the owner's VMM be signalled"
    );
}

fn spawn_cases(env: &Env, t: &mut Tally) {
    let vm = env.root.join("state/vms/a");
    let outside = env.root.join("outside");
    let victim = outside.join("victim");
    let refused = |s: SpawnVmm| env.ops.spawn_vmm(s).is_err();
    let symlink = |to: &Path, at: &Path| {
        let _ = std::fs::remove_file(at);
        std::os::unix::fs::symlink(to, at).unwrap();
    };
    let clear = |at: &Path| {
        let _ = std::fs::remove_file(at);
    };
    type Field = fn(&mut SpawnVmm) -> &mut PathBuf;
    let fields: [(&str, Field); 4] = [
        ("console log", |s| &mut s.console_log),
        ("stderr log", |s| &mut s.stderr_log),
        ("exit-status file", |s| &mut s.exit_status_file),
        ("lock file", |s| &mut s.lock_file),
    ];
    for (what, field) in fields {
        let mut s = env.spec("live-spawn");
        let at = field(&mut s).clone();
        // A symlink to a root file outside, and one to a missing file there.
        symlink(&victim, &at);
        t.check(
            &format!("{what} symlinked to a root file"),
            refused(s.clone()),
        );
        symlink(&outside.join("new"), &at);
        t.check(
            &format!("{what} symlinked to a new file outside"),
            refused(s.clone()),
        );
        clear(&at);
        // A root-owned file (world-writable, so only ownership stands).
        std::fs::write(&at, "").unwrap();
        std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o666)).unwrap();
        t.check(&format!("{what} owned by root"), refused(s.clone()));
        clear(&at);
        // A hard link to the root file.
        std::fs::hard_link(&victim, &at).unwrap();
        t.check(
            &format!("{what} hard-linked to a root file"),
            refused(s.clone()),
        );
        clear(&at);
        // A FIFO (would hang a blocking open) and a directory.
        nix::unistd::mkfifo(&at, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        std::os::unix::fs::chown(&at, Some(OWNER), Some(OWNER)).unwrap();
        t.check(&format!("{what} that is a FIFO"), refused(s.clone()));
        clear(&at);
        std::fs::create_dir(&at).unwrap();
        std::os::unix::fs::chown(&at, Some(OWNER), Some(OWNER)).unwrap();
        t.check(&format!("{what} that is a directory"), refused(s.clone()));
        std::fs::remove_dir(&at).unwrap();
        // Outside banger's directories, and escaping with `..`.
        *field(&mut s) = PathBuf::from("/etc/banger-hostile");
        t.check(&format!("{what} in /etc"), refused(s.clone()));
        *field(&mut s) = vm.join("../../../outside/new");
        t.check(&format!("{what} escaping with .."), refused(s.clone()));
        // Through a symlinked directory.
        symlink(&outside, &vm.join("d"));
        *field(&mut s) = vm.join("d/new");
        t.check(&format!("{what} through a symlinked directory"), refused(s));
        clear(&vm.join("d"));
    }
    // The socket: its directory a symlink, outside, or the name taken.
    let run = env.root.join("run/vms");
    symlink(&outside, &run.join("l"));
    let mut s = env.spec("live-spawn");
    s.api_sock = run.join("l/api.sock");
    t.check("API socket under a symlinked directory", refused(s.clone()));
    s.api_sock = PathBuf::from("/tmp/banger-hostile.sock");
    t.check("API socket outside", refused(s.clone()));
    let taken = run.join("a/api.sock");
    let _l = std::os::unix::net::UnixListener::bind(&taken).unwrap();
    s.api_sock = taken.clone();
    t.check("API socket that exists", refused(s.clone()));
    symlink(&victim, &run.join("a/api2.sock"));
    s.api_sock = run.join("a/api2.sock");
    t.check("API socket name that is a symlink", refused(s));
    clear(&run.join("a/api2.sock"));
    // A foreign binary, and a bad id.
    let mut s = env.spec("live-spawn");
    s.binary = "/bin/sh".into();
    t.check("foreign binary", refused(s));
    let mut s = env.spec("live/../x");
    s.api_sock = run.join("a/api3.sock");
    t.check("id with a slash", refused(s));
    // A held lock: the first spawn runs, the second on the same lock is refused.
    let mut first = env.spec("live-first");
    first.api_sock = run.join("a/first.sock");
    let (pid, start) = env.ops.spawn_vmm(first).expect("a correct spawn is served");
    let mut second = env.spec("live-second");
    second.api_sock = run.join("a/second.sock");
    let r = env.ops.spawn_vmm(second);
    t.check(
        "second VMM under a held lock",
        matches!(&r, Err(PrivOpsError::Refused { reason, .. }) if reason.contains(VMM_LOCK_HELD)),
    );
    // And a lock held by someone else than a VMM (the owner's flock).
    assert!(env.ops.signal_vmm(pid, start, VmmSignal::Kill).unwrap());
    while alive(pid) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let lock = std::fs::File::open(vm.join("vmm.lock")).unwrap();
    // SAFETY: flock on an fd we own.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let mut third = env.spec("live-third");
    third.api_sock = run.join("a/third.sock");
    t.check("VMM under a lock held elsewhere", refused(third));
    drop(lock);
    t.check(
        "nothing outside was created or changed",
        env.outside_untouched() && !Path::new("/etc/banger-hostile").exists(),
    );
}

/// Swap `state/vms/r` between a directory of the owner's and a symlink to
/// the outside while spawns name a log below it.
fn symlink_race(env: &Env, t: &mut Tally) {
    const ROUNDS: usize = 2000;
    let vms = env.root.join("state/vms");
    let r = vms.join("r");
    let other = vms.join("r.other");
    std::fs::create_dir_all(&r).unwrap();
    std::os::unix::fs::chown(&r, Some(OWNER), Some(OWNER)).unwrap();
    std::os::unix::fs::symlink(env.root.join("outside"), &other).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|sc| {
        sc.spawn(|| {
            use std::os::unix::ffi::OsStrExt;
            let a = std::ffi::CString::new(r.as_os_str().as_bytes()).unwrap();
            let b = std::ffi::CString::new(other.as_os_str().as_bytes()).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: two valid C strings; atomically exchanges the two
                // entries (a directory and a symlink).
                unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    );
                }
            }
        });
        let mut served = 0;
        for i in 0..ROUNDS {
            let mut s = env.spec("race");
            s.console_log = r.join("console.log");
            s.stderr_log = r.join("vmm.stderr");
            s.exit_status_file = r.join("vmm.exit");
            s.lock_file = r.join("vmm.lock");
            s.api_sock = env.root.join(format!("run/vms/a/race{i}.sock"));
            served += usize::from(env.ops.spawn_vmm(s).is_ok());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // The race has teeth only if spawns through the real directory
        // were served too.
        println!("symlink race: {served} of {ROUNDS} spawns served (through the real directory)");
        assert!(served > 0, "no spawn was served: the race tested nothing");
    });
    t.tried += ROUNDS - 1;
    t.check(
        &format!("{ROUNDS} spawns raced against a directory/symlink swap wrote outside"),
        env.outside_untouched(),
    );
}
