//! Hostile tests of the sockets (root only): a real helper served
//! in-process for a throwaway owner uid, attacked from other uids (this
//! test binary re-executed as a child with `Command::uid()/gid()`, in the
//! mode named by `$HOSTILE_CHILD`) and from the owner:
//!
//! - a member of the owner's group connects, floods connections to hold
//!   slots, moves or replaces the helper's socket and the daemon's socket;
//! - slow-loris (one byte at a time) and silent connections are cut at the
//!   request deadline and the idle timeout;
//! - the owner holding all its slots still leaves root served;
//! - a second helper on the same socket is refused and takes nothing over;
//! - a fake daemon (another uid) on the daemon socket path is refused by
//!   the CLI's peer check, a fake helper (not root) by `RootHelperClient`,
//!   and neither is sent a byte.
//!
//! Every attempt is counted; every one accepted outside the rules too. It
//! prints `hostile sockets: tried N, accepted outside the rules M` and
//! fails unless M is 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banger_cli::client::{Client, ClientError, TrustedPeers};
use banger_privops::wire::{
    Answer, Call, MAX_RESPONSE, PROTOCOL_VERSION, WireErrorKind, WireRequest, WireResponse,
    read_frame, write_frame,
};
use banger_privops::{LocalPrivOps, Policy, PrivOpsError, RootHelperClient};
use banger_roothelper::server::{ServeOptions, ServerError, bind, serve};

/// The throwaway owner, a member of its group, and a stranger (no passwd
/// entries needed).
const OWNER: u32 = 64_601;
const GROUP_MEMBER: u32 = 64_602;
const STRANGER: u32 = 64_603;
const OWNER_GID: u32 = 64_601;

const REQUEST_DEADLINE: Duration = Duration::from_millis(800);
const IDLE: Duration = Duration::from_millis(1500);
const PER_UID: usize = 4;

/// Attempts and the ones accepted outside the rules.
#[derive(Debug, Default)]
struct Tally {
    tried: u64,
    accepted: u64,
    notes: Vec<String>,
}

impl Tally {
    /// One attempt; `broke_rules` when it was accepted outside the rules.
    fn attempt(&mut self, what: &str, broke_rules: bool) {
        self.tried += 1;
        if broke_rules {
            self.accepted += 1;
            self.notes.push(what.to_string());
        }
    }

    fn add(&mut self, other: Tally) {
        self.tried += other.tried;
        self.accepted += other.accepted;
        self.notes.extend(other.notes);
    }

    /// The line a child prints for its parent.
    fn report(&self) -> String {
        format!(
            "RESULT tried={} accepted={} notes={}",
            self.tried,
            self.accepted,
            self.notes.join(" | ")
        )
    }

    fn parse(out: &str) -> Option<Tally> {
        // The harness prints `test hostile_child ... ` before the line.
        let line = out
            .lines()
            .find_map(|l| l.find("RESULT ").map(|i| &l[i..]))?;
        let mut t = Tally::default();
        let (counts, notes) = line.split_once(" notes=")?;
        for kv in counts.split_whitespace().skip(1) {
            match kv.split_once('=')? {
                ("tried", n) => t.tried = n.parse().ok()?,
                ("accepted", n) => t.accepted = n.parse().ok()?,
                _ => {}
            }
        }
        t.notes = notes
            .split(" | ")
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        Some(t)
    }
}

fn frame(call: Call) -> Vec<u8> {
    let mut b = Vec::new();
    write_frame(
        &mut b,
        &WireRequest {
            version: PROTOCOL_VERSION,
            call,
        },
    )
    .unwrap();
    b
}

/// Ping the helper over a raw stream; the answer (or why none).
fn raw_ping(s: &mut UnixStream) -> Result<WireResponse, String> {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    // A write may fail when the helper already closed; its answer may
    // still be waiting.
    let _ = s.write_all(&frame(Call::Ping));
    let body = read_frame(s, MAX_RESPONSE).map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

fn served(resp: &Result<WireResponse, String>) -> bool {
    matches!(resp, Ok(r) if matches!(r.result, Ok(Answer::Pong { .. })))
}

// ---------------------------------------------------------------- children

/// Entry of the re-executed children; a no-op in a normal run.
#[test]
fn hostile_child() {
    let Ok(mode) = std::env::var("HOSTILE_CHILD") else {
        return;
    };
    let arg = std::env::var("HOSTILE_ARG").unwrap_or_default();
    let tally = match mode.as_str() {
        "group-member" => group_member(Path::new(&arg)),
        "flood" => flood(Path::new(&arg)),
        "owner-hold" => owner_hold(Path::new(&arg)),
        "owner-cli" => owner_cli(Path::new(&arg)),
        "fake-daemon" => {
            fake_daemon(Path::new(&arg));
            return;
        }
        "fake-helper" => {
            fake_helper(Path::new(&arg));
            return;
        }
        "owner-runtime-dir" => {
            owner_runtime_dir(Path::new(&arg));
            return;
        }
        "emfile-helper" => {
            emfile_helper(Path::new(&arg));
            return;
        }
        other => panic!("unknown child mode {other}"),
    };
    println!("{}", tally.report());
}

/// `dir` holds `helper/root.sock` (the helper's) and `owner/run/` (the
/// daemon's runtime dir with `bangerd.sock`).
fn group_member(dir: &Path) -> Tally {
    let mut t = Tally::default();
    let helper_sock = dir.join("helper/root.sock");
    for i in 0..20 {
        let c = UnixStream::connect(&helper_sock);
        let broke = match c {
            Ok(mut s) => served(&raw_ping(&mut s)),
            Err(_) => false,
        };
        t.attempt(&format!("group member connect #{i} served"), broke);
    }
    let helper_dir = dir.join("helper");
    t.attempt(
        "group member renamed the helper socket",
        std::fs::rename(&helper_sock, helper_dir.join("moved.sock")).is_ok(),
    );
    t.attempt(
        "group member unlinked the helper socket",
        std::fs::remove_file(&helper_sock).is_ok(),
    );
    t.attempt(
        "group member created a file in the helper's directory",
        std::fs::write(helper_dir.join("squat"), "x").is_ok(),
    );
    t.attempt(
        "group member bound a socket in the helper's directory",
        UnixListener::bind(helper_dir.join("squat.sock")).is_ok(),
    );
    t.attempt(
        "group member opened the helper's lock for writing",
        std::fs::OpenOptions::new()
            .write(true)
            .open(helper_dir.join("root.lock"))
            .is_ok(),
    );
    let run = dir.join("owner/run");
    let daemon_sock = run.join("bangerd.sock");
    t.attempt(
        "group member renamed bangerd.sock",
        std::fs::rename(&daemon_sock, run.join("moved.sock")).is_ok(),
    );
    t.attempt(
        "group member unlinked bangerd.sock",
        std::fs::remove_file(&daemon_sock).is_ok(),
    );
    t.attempt(
        "group member bound a fake bangerd.sock",
        UnixListener::bind(run.join("fake.sock")).is_ok(),
    );
    t.attempt(
        "group member renamed the daemon's runtime dir",
        std::fs::rename(&run, dir.join("owner/run.moved")).is_ok(),
    );
    t.attempt(
        "group member connected to bangerd.sock",
        UnixStream::connect(&daemon_sock).is_ok(),
    );
    t
}

/// Open many connections at once to an (opened-up) helper socket and keep
/// them: each must be answered `Unauthorized` and closed at once, without
/// the helper waiting for a request.
fn flood(socket: &Path) -> Tally {
    let mut t = Tally::default();
    let mut held = Vec::new();
    for _ in 0..64 {
        if let Ok(s) = UnixStream::connect(socket) {
            held.push(s);
        }
    }
    for (i, mut s) in held.into_iter().enumerate() {
        // Send nothing: the helper must answer and close by itself.
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = Vec::new();
        let closed = s.read_to_end(&mut buf).is_ok();
        let refused = read_frame(&mut buf.as_slice(), MAX_RESPONSE)
            .ok()
            .and_then(|b| serde_json::from_slice::<WireResponse>(&b).ok())
            .is_some_and(|r| matches!(r.result, Err(e) if e.kind == WireErrorKind::Unauthorized));
        t.attempt(
            &format!("flood connection #{i} was kept open or not refused"),
            !(closed && refused),
        );
    }
    t
}

/// The owner takes all its slots and tries one more; then waits (stdin)
/// while the parent checks that root is still served.
fn owner_hold(socket: &Path) -> Tally {
    let mut t = Tally::default();
    let mut held = Vec::new();
    for _ in 0..PER_UID {
        let mut s = UnixStream::connect(socket).unwrap();
        // One ping each proves the slot is taken and served.
        let r = raw_ping(&mut s);
        assert!(served(&r), "owner slot not served: {r:?}");
        held.push(s);
    }
    let mut extra = UnixStream::connect(socket).unwrap();
    let r = raw_ping(&mut extra);
    t.attempt("the owner was served beyond its slots", served(&r));
    println!("HOLDING");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(held);
    t
}

/// The owner's CLI against a fake daemon of another uid.
fn owner_cli(socket: &Path) -> Tally {
    let mut t = Tally::default();
    let got = Client::connect_with(socket, &TrustedPeers::with_owner(Some(OWNER)));
    t.attempt(
        "the owner's CLI talked to another uid's daemon",
        !matches!(got, Err(ClientError::UntrustedPeer { uid: STRANGER, .. })),
    );
    t
}

/// Serve a fake `bangerd` at `socket` (answering every line with a
/// valid hello) for two connections or 10 s; print the bytes received.
fn fake_daemon(socket: &Path) {
    let l = UnixListener::bind(socket).unwrap();
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut conns, mut received) = (0, 0usize);
    while conns < 2 && Instant::now() < deadline {
        let Ok((s, _)) = l.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        conns += 1;
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while let Ok(n) = r.read_line(&mut line) {
            if n == 0 {
                break;
            }
            received += n;
            let id = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                .unwrap_or(0);
            let hello = banger_api::rpc::ResponseEnvelope {
                id,
                body: banger_api::rpc::ResponseBody::Result(
                    serde_json::to_value(banger_api::Hello {
                        protocol: banger_api::PROTOCOL_VERSION,
                        version: "fake".into(),
                    })
                    .unwrap(),
                ),
            };
            let _ = writeln!(&s, "{}", serde_json::to_string(&hello).unwrap());
            line.clear();
        }
    }
    println!("RECEIVED {received}");
}

/// Serve a fake `bangerd-root` at `socket` (answering every frame with a
/// pong) for one connection or 10 s; print the bytes received.
fn fake_helper(socket: &Path) {
    let l = UnixListener::bind(socket).unwrap();
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut received = 0usize;
    while Instant::now() < deadline {
        let Ok((mut s, _)) = l.accept() else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        s.set_nonblocking(false).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        if let Ok(body) = read_frame(&mut s, 1 << 20) {
            received += 4 + body.len();
            let pong = WireResponse {
                version: PROTOCOL_VERSION,
                result: Ok(Answer::Pong {
                    helper_version: "fake".into(),
                    peer_uid: 0,
                }),
            };
            let _ = write_frame(&mut s, &pong);
        }
        let mut rest = Vec::new();
        received += s.read_to_end(&mut rest).unwrap_or(0);
        break;
    }
    println!("RECEIVED {received}");
}

/// As the owner: make the daemon's runtime dir the way `bangerd` does and
/// leave a socket in it.
fn owner_runtime_dir(run: &Path) {
    banger_config::secure_runtime_dir(run).unwrap();
    let _l = UnixListener::bind(run.join("bangerd.sock")).unwrap();
    println!("DONE");
}

/// As root: serve a helper at `socket` with a descriptor limit only a few
/// above what is open, so held connections make `accept` fail (EMFILE).
fn emfile_helper(socket: &Path) {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let bound = bind(socket, OWNER).unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = libc::rlimit {
        rlim_cur: open + 4,
        rlim_max: open + 4,
    };
    // SAFETY: setrlimit reads the struct it is given; no memory is shared.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let policy = Policy {
        device_prefix: "bg".into(),
        state_dir: "/nonexistent/state".into(),
        runtime_dir: "/nonexistent/run".into(),
        subnet: (std::net::Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: OWNER,
        vmm_binary: PathBuf::from("/bin/true"),
    };
    println!("READY");
    std::io::stdout().flush().unwrap();
    serve(
        bound,
        LocalPrivOps::new(policy),
        ServeOptions {
            idle_timeout: Duration::from_secs(30),
            ..ServeOptions::new(OWNER)
        },
    );
}

// ------------------------------------------------------------------ parent

struct Child {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

fn exe() -> PathBuf {
    std::env::current_exe().unwrap()
}

fn spawn_child(mode: &str, arg: &Path, uid: u32, gid: u32) -> Child {
    let mut child = Command::new(exe())
        .args([
            "hostile_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOSTILE_CHILD", mode)
        .env("HOSTILE_ARG", arg)
        .uid(uid)
        .gid(gid)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    Child { child, out }
}

impl Child {
    /// Read lines until one starts with `prefix`; returns it.
    fn wait_for(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            if self.out.read_line(&mut line).unwrap() == 0 {
                panic!("child ended before printing {prefix}");
            }
            // The harness prints `test hostile_child ... ` before it.
            if let Some(i) = line.find(prefix) {
                return line[i..].trim().to_string();
            }
        }
    }

    /// Wait for the child; its tally.
    fn finish(mut self) -> Tally {
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).unwrap();
        let st = self.child.wait().unwrap();
        assert!(st.success(), "child failed ({st}): {rest}");
        Tally::parse(&rest).unwrap_or_else(|| panic!("no RESULT line from child: {rest}"))
    }
}

fn run(mode: &str, arg: &Path, uid: u32, gid: u32) -> Tally {
    spawn_child(mode, arg, uid, gid).finish()
}

fn mkdir(p: &Path, uid: u32, gid: u32, mode: u32) {
    std::fs::create_dir_all(p).unwrap();
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn root_client(socket: &Path) -> RootHelperClient {
    RootHelperClient::new(socket).with_timeout(Duration::from_secs(5))
}

#[test]
fn hostile_sockets() {
    if std::env::var_os("HOSTILE_CHILD").is_some() {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        banger_testsupport::skip!(
            "hostile_sockets",
            "needs root to serve the helper and switch to throwaway uids"
        );
    }
    let started = Instant::now();
    let t = tempfile::Builder::new()
        .prefix("banger-hostile-")
        .tempdir()
        .unwrap();
    let base = t.path().canonicalize().unwrap();
    mkdir(&base, 0, 0, 0o755);
    // The helper's directory, as systemd's RuntimeDirectory=banger-root.
    let helper_dir = base.join("helper");
    mkdir(&helper_dir, 0, 0, 0o755);
    // The owner's area with the daemon's runtime dir made by bangerd.
    mkdir(&base.join("owner"), OWNER, OWNER_GID, 0o755);
    let run_dir = base.join("owner/run");
    let mut c = spawn_child("owner-runtime-dir", &run_dir, OWNER, OWNER_GID);
    c.wait_for("DONE");
    let _ = c.child.wait();
    mkdir(&base.join("state"), OWNER, OWNER_GID, 0o755);

    let socket = helper_dir.join("root.sock");
    let policy = Policy {
        device_prefix: "bg".into(),
        state_dir: base.join("state"),
        runtime_dir: run_dir.clone(),
        subnet: (std::net::Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: OWNER,
        vmm_binary: PathBuf::from("/bin/true"),
    };
    let bound = bind(&socket, OWNER).unwrap();
    let opts = ServeOptions {
        request_timeout: REQUEST_DEADLINE,
        idle_timeout: IDLE,
        max_per_uid: PER_UID,
        ..ServeOptions::new(OWNER)
    };
    std::thread::spawn(move || serve(bound, LocalPrivOps::new(policy), opts));
    let root = root_client(&socket);
    root.ping().expect("root is served");

    let mut tally = Tally::default();

    // 1. A member of the owner's group: connects, squats, moves sockets.
    tally.add(run("group-member", &base, GROUP_MEMBER, OWNER_GID));
    root.ping()
        .expect("root is still served after the group member");

    // 2. With the socket opened up (say the owner loosened it), the peer
    //    check alone refuses: a flood from the group member and from a
    //    stranger is answered and closed at once, holds no slot.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let flood_member = spawn_child("flood", &socket, GROUP_MEMBER, OWNER_GID);
    let flood_stranger = spawn_child("flood", &socket, STRANGER, STRANGER);
    tally.add(flood_member.finish());
    tally.add(flood_stranger.finish());
    // Their connections left every slot free: the owner gets all of its.
    let mut owner = spawn_child("owner-hold", &socket, OWNER, OWNER_GID);
    owner.wait_for("HOLDING");
    // 3. The owner holds all its slots: root is still served.
    tally.attempt(
        "root was not served while the owner held its slots",
        root.ping().is_err(),
    );
    writeln!(owner.child.stdin.as_ref().unwrap()).unwrap();
    tally.add(owner.finish());
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).unwrap();

    // 4. Slow-loris as root (served): one byte every 100 ms of a valid
    //    ping is cut at the request deadline, never answered.
    for i in 0..3 {
        let mut s = UnixStream::connect(&socket).unwrap();
        let bytes = frame(Call::Ping);
        let mut sent = 0;
        for byte in &bytes {
            if s.write_all(&[*byte]).is_err() {
                break;
            }
            sent += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let answered = read_frame(&mut s, MAX_RESPONSE).is_ok_and(|body| {
            serde_json::from_slice::<WireResponse>(&body)
                .is_ok_and(|r| matches!(r.result, Ok(Answer::Pong { .. })))
        });
        // Cut before the whole frame (31 bytes, 3 s) could be sent.
        tally.attempt(
            &format!(
                "slow-loris #{i} was answered or not cut ({sent} of {} bytes sent)",
                bytes.len()
            ),
            answered || sent == bytes.len(),
        );
    }
    // A connection that never sends is closed after the idle timeout.
    {
        let mut s = UnixStream::connect(&socket).unwrap();
        s.set_read_timeout(Some(IDLE * 4)).unwrap();
        let start = Instant::now();
        let mut b = [0u8; 1];
        let closed = matches!(s.read(&mut b), Ok(0));
        tally.attempt(
            "a silent connection outlived the idle timeout",
            !closed || start.elapsed() >= IDLE * 4,
        );
    }
    // Slots of cut connections came back.
    tally.attempt("root not served after slow-loris", root.ping().is_err());

    // 5. A second helper on the same socket is refused and takes nothing.
    let second = bind(&socket, OWNER);
    let refused = matches!(
        &second,
        Err(ServerError::AlreadyRunning { pid: Some(p), .. }) if *p == std::process::id() as i32
    );
    tally.attempt("a second helper was not refused", !refused);
    if let Err(e) = &second {
        let msg = e.to_string();
        assert!(
            msg.contains("bangerd-root already runs (pid") && msg.contains("systemctl stop"),
            "{msg}"
        );
    }
    drop(second);
    tally.attempt(
        "the first helper lost its socket to the second",
        root.ping().is_err(),
    );

    // 6. A fake daemon of another uid where the CLI looks: refused by the
    //    CLI's peer check (root's CLI and the owner's), sent nothing.
    let fake_dir = base.join("fake");
    mkdir(&fake_dir, STRANGER, STRANGER, 0o755);
    let fake_sock = fake_dir.join("bangerd.sock");
    let mut fake = spawn_child("fake-daemon", &fake_sock, STRANGER, STRANGER);
    fake.wait_for("READY");
    let got = Client::connect_with(&fake_sock, &TrustedPeers::with_owner(Some(OWNER)));
    tally.attempt(
        "root's CLI talked to another uid's daemon",
        !matches!(&got, Err(ClientError::UntrustedPeer { uid: STRANGER, .. })),
    );
    if let Err(e) = &got {
        let msg = e.to_string();
        assert!(
            msg.contains(&fake_sock.display().to_string())
                && msg.contains(&format!("uid {STRANGER}"))
                && msg.contains("restart bangerd"),
            "{msg}"
        );
        assert_eq!(e.exit_code(), 5);
    }
    tally.add(run("owner-cli", &fake_sock, OWNER, OWNER_GID));
    let received = fake.wait_for("RECEIVED");
    tally.attempt(
        &format!("the fake daemon was sent bytes ({received})"),
        received != "RECEIVED 0",
    );
    let _ = fake.child.wait();

    // 7. A fake helper (not root) where the daemon looks: refused by
    //    RootHelperClient, sent nothing.
    let fake_helper_sock = fake_dir.join("root.sock");
    let mut fake = spawn_child("fake-helper", &fake_helper_sock, STRANGER, STRANGER);
    fake.wait_for("READY");
    let got = root_client(&fake_helper_sock).ping();
    let refused = matches!(&got, Err(PrivOpsError::Helper { message, .. })
        if message.contains(&format!("runs as uid {STRANGER}, not root")));
    tally.attempt("RootHelperClient talked to a non-root helper", !refused);
    let received = fake.wait_for("RECEIVED");
    tally.attempt(
        &format!("the fake helper was sent bytes ({received})"),
        received != "RECEIVED 0",
    );
    let _ = fake.child.wait();

    // Straight to stderr, so the line shows in a captured (normal) run too.
    let _ = writeln!(
        std::io::stderr(),
        "hostile sockets: tried {}, accepted outside the rules {}",
        tally.tried,
        tally.accepted
    );
    eprintln!("(took {:.1}s)", started.elapsed().as_secs_f64());
    assert_eq!(
        tally.accepted, 0,
        "accepted outside the rules: {:#?}",
        tally.notes
    );
}

/// Out of descriptors, the helper's `accept` fails on every try: it backs
/// off (a handful of failures in seconds, not a spin), logs at most one
/// line a second with the count held back, and serves again once
/// descriptors are free.
#[test]
fn accept_errors_back_off_with_rate_limited_logs() {
    if std::env::var_os("HOSTILE_CHILD").is_some() {
        return;
    }
    if !nix::unistd::geteuid().is_root() {
        banger_testsupport::skip!(
            "accept_errors_back_off_with_rate_limited_logs",
            "needs root to serve the helper"
        );
    }
    let t = tempfile::tempdir().unwrap();
    let socket = t.path().join("helper/root.sock");
    let log = t.path().join("helper.log");
    let mut child = Command::new(exe())
        .args([
            "hostile_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOSTILE_CHILD", "emfile-helper")
        .env("HOSTILE_ARG", &socket)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "helper child ended");
    }
    // Hold connections: the first few are accepted (and held by their
    // threads), the rest wait in the backlog while accept fails.
    let mut held: Vec<UnixStream> = (0..24)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(2500));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("accept failed; backing off"))
        .collect();
    let held_back: u64 = lines
        .iter()
        .filter_map(|l| l.split("suppressed=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(!lines.is_empty(), "accept never failed; log:\n{text}");
    let failures = lines.len() as u64 + held_back;
    // 2.5 s of back-off from 5 ms doubling to 1 s is about 10 failures;
    // without it, millions.
    assert!(
        failures < 50,
        "{failures} accept failures in 2.5 s:\n{text}"
    );
    assert!(lines.len() <= 4, "more than one line a second:\n{text}");
    // Descriptors come back: it serves again.
    held.clear();
    let got = root_client(&socket)
        .with_timeout(Duration::from_secs(10))
        .ping();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        got.is_ok(),
        "not served after descriptors came back: {got:?}"
    );
}
