//! Hostile-client suite for the helper's disk and network operations.
//!
//! As root, a real helper (`server::serve` with `LocalPrivOps`) serves a
//! socket in a temp dir, inside a throwaway network namespace, for a
//! throwaway owner uid (no passwd entry) whose state directory it is.
//! Requests that must be refused are fired at it — most of them by a child
//! process running as the owner (this test binary re-executed in client
//! mode), some by another uid, some as raw malformed frames — and a thread
//! swaps a directory and a symlink thousands of times while `LoopAttach`
//! is asked for the path through them. Every request is counted, and
//! every one accepted outside the rules (or leaving a foreign object
//! changed) is counted too; the test prints
//! `hostile disk+net: tried N, accepted outside the rules M` and fails
//! unless M is 0. Afterwards the helper's log must show each execution
//! refusal with the caller and the real object.
//!
//! Not runnable here: device-mapper (this host has none). A
//! `DmCreateSnapshot` within the rules ends in "no device-mapper", after
//! every check; those outside the rules must be refused before that.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_privops::wire::{
    Answer, Call, MAX_REQUEST, MAX_RESPONSE, PROTOCOL_VERSION, WireErrorKind, WireRequest,
    WireResponse, read_frame, write_frame,
};
use banger_privops::{
    DiskOps, LocalPrivOps, NetOps, Policy, PrivOp, PrivOpsError, PrivReply, RootHelperClient,
    loop_backing_file,
};
use banger_roothelper::server::{ServeOptions, bind, serve};

const CLIENT_ENV: &str = "BANGER_HOSTILE_CLIENT";
const RACE_ROUNDS: usize = 3000;

/// Client mode: send each request of the JSON file named by
/// `BANGER_HOSTILE_CLIENT` (`socket\nrequests.json`) as its own frame and
/// print each response as one JSON line. Does nothing in a normal run.
#[test]
fn client_mode() {
    let Ok(spec) = std::env::var(CLIENT_ENV) else {
        return;
    };
    let (socket, file) = spec.split_once('\n').unwrap();
    let ops: Vec<PrivOp> = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    let mut out = std::io::stdout().lock();
    for op in ops {
        // The socket is the owner's, mode 0600: another uid cannot even
        // connect, which is the strongest refusal.
        let mut s = match UnixStream::connect(socket) {
            Ok(s) => s,
            Err(e) => {
                let refused = WireResponse {
                    version: PROTOCOL_VERSION,
                    result: Err(banger_privops::wire::RemoteError {
                        kind: WireErrorKind::Unauthorized,
                        message: format!("connect refused: {e}"),
                    }),
                };
                writeln!(out, "\n@@ {}", serde_json::to_string(&refused).unwrap()).unwrap();
                continue;
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let req = WireRequest {
            version: PROTOCOL_VERSION,
            call: Call::Op(op),
        };
        let line = match write_frame(&mut s, &req)
            .ok()
            .and_then(|()| read_frame(&mut s, MAX_RESPONSE).ok())
        {
            Some(body) => String::from_utf8_lossy(&body).into_owned(),
            None => "null".into(),
        };
        writeln!(out, "\n@@ {line}").unwrap();
    }
}

/// Owner of the policy, and another uid of the owner's group.
fn uids() -> (u32, u32) {
    let base = 64_000 + (std::process::id() % 900);
    (base, base + 1000)
}

struct Tally {
    tried: usize,
    accepted: usize,
    notes: Vec<String>,
}

impl Tally {
    fn check(&mut self, what: &str, ok: bool) {
        self.tried += 1;
        if !ok {
            self.accepted += 1;
            self.notes.push(what.to_string());
        }
    }
}

fn refused(r: &Option<WireResponse>) -> bool {
    matches!(r, Some(WireResponse { result: Err(e), .. }) if matches!(e.kind, WireErrorKind::Refused | WireErrorKind::BadRequest | WireErrorKind::TooLarge | WireErrorKind::Unauthorized | WireErrorKind::Version))
}

/// Run `ops` through a child process as `uid:gid`.
fn as_uid(
    uid: u32,
    gid: u32,
    socket: &Path,
    dir: &Path,
    ops: &[PrivOp],
) -> Vec<Option<WireResponse>> {
    let file = dir.join(format!("requests-{uid}.json"));
    std::fs::write(&file, serde_json::to_vec(ops).unwrap()).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["client_mode", "--exact", "--nocapture", "--test-threads=1"])
        .env(
            CLIENT_ENV,
            format!("{}\n{}", socket.display(), file.display()),
        )
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Option<WireResponse>> = text
        .lines()
        .filter_map(|l| l.strip_prefix("@@ "))
        .map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(
        lines.len(),
        ops.len(),
        "client as uid {uid}: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

/// A raw frame's answer (`None`: the helper closed without answering).
fn raw(socket: &Path, bytes: &[u8]) -> Option<WireResponse> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let body = read_frame(&mut s, MAX_RESPONSE).ok()?;
    serde_json::from_slice(&body).ok()
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn ip_json(ns: &str, name: &str) -> Option<serde_json::Value> {
    let out = Command::new("ip")
        .args(["-n", ns, "-d", "-j", "link", "show", "dev", name])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some(v[0].clone())
}

struct NetNs(String);
impl Drop for NetNs {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.0]);
    }
}

/// Loop devices attached by the test itself (root), detached at the end.
struct Foreign(Vec<PathBuf>);
impl Foreign {
    fn attach(&mut self, file: &Path, ro: bool) -> PathBuf {
        let ctl = loopdev::LoopControl::open().unwrap();
        // Someone else may take the free device first: retry on EBUSY.
        for _ in 0..20 {
            let dev = ctl.next_free().unwrap();
            match dev.with().read_only(ro).attach(file) {
                Ok(()) => {
                    let p = dev.path().unwrap();
                    self.0.push(p.clone());
                    return p;
                }
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free loop device")
    }
}
impl Drop for Foreign {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = loopdev::LoopDevice::open(d).and_then(|l| l.detach());
        }
    }
}

/// Captured helper log.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);
impl Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn chown_tree(p: &Path, stop: &Path, uid: u32) {
    for d in p.ancestors() {
        if d == stop {
            break;
        }
        std::os::unix::fs::chown(d, Some(uid), Some(uid)).unwrap();
    }
}

#[test]
fn hostile_disk_and_net_requests_are_refused() {
    if std::env::var(CLIENT_ENV).is_ok() {
        return;
    }
    if !nix::unistd::geteuid().is_root()
        || !Path::new("/dev/loop-control").exists()
        || !ip(&["netns", "list"])
    {
        banger_testsupport::skip!(
            "hostile_disk_and_net_requests_are_refused",
            "needs root, /dev/loop-control and ip netns"
        );
    }
    let log = Log::default();
    let w = log.clone();
    let _ = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || w.clone())
        .try_init();

    let (owner, other) = uids();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = root.join("state");
    for d in ["state/images", "state/vms/a", "run"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
        chown_tree(&root.join(d), &root, owner);
    }
    let policy = Policy {
        device_prefix: "bg".into(),
        state_dir: state.clone(),
        runtime_dir: root.join("run"),
        subnet: (std::net::Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: owner,
        vmm_binary: PathBuf::from("/bin/true"),
    };
    let ns = NetNs(format!("bghostile{}", std::process::id()));
    assert!(ip(&["netns", "add", &ns.0]), "ip netns add");
    let socket = root.join("root.sock");
    let listener = bind(&socket, owner).unwrap();
    let opts = ServeOptions {
        request_timeout: Duration::from_secs(10),
        ..ServeOptions::new(owner)
    };
    let ns_path = format!("/run/netns/{}", ns.0);
    let ops = LocalPrivOps::new(policy.clone());
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        serve(listener, ops, opts);
    });
    let c = RootHelperClient::new(&socket);
    let mut tally = Tally {
        tried: 0,
        accepted: 0,
        notes: Vec::new(),
    };

    // --- Files: the owner's, root's, links, special files.
    let owned = |rel: &str, len: u64| {
        let p = state.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::File::create(&p).unwrap().set_len(len).unwrap();
        chown_tree(&p, &root, owner);
        p
    };
    let img = owned("images/a.ext4", 1 << 20);
    let cow = owned("vms/a/root.cow", 1 << 20);
    let cow2 = owned("vms/a/other.cow", 1 << 20);
    let ro_file = owned("vms/a/readonly", 1 << 20);
    std::fs::set_permissions(&ro_file, std::fs::Permissions::from_mode(0o400)).unwrap();
    let secret = root.join("secret");
    std::fs::write(&secret, vec![0u8; 1 << 20]).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let outside = root.join("outside.img");
    std::fs::File::create(&outside)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let root_in_state = state.join("vms/a/roots.img");
    std::fs::File::create(&root_in_state)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    std::fs::set_permissions(&root_in_state, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::hard_link(&secret, state.join("vms/a/hard")).unwrap();
    std::os::unix::fs::symlink(&secret, state.join("vms/a/link")).unwrap();
    std::os::unix::fs::symlink(&root, state.join("vms/up")).unwrap();
    std::os::unix::fs::symlink("/dev/null", state.join("vms/a/null")).unwrap();
    nix::unistd::mkfifo(
        &state.join("vms/a/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o666),
    )
    .unwrap();
    std::os::unix::fs::chown(state.join("vms/a/fifo"), Some(owner), Some(owner)).unwrap();
    let private = state.join("vms/private");
    std::fs::create_dir_all(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(private.join("disk"), vec![0u8; 1 << 20]).unwrap();

    // --- Loops: foreign ones (attached by root) and banger's own.
    let mut foreign = Foreign(Vec::new());
    let f_out = foreign.attach(&outside, false);
    let f_in = foreign.attach(&root_in_state, true);
    let f_secret = foreign.attach(&secret, true);
    let base_l = c.loop_attach(&img, true).unwrap();
    let cow_l = c.loop_attach(&cow, false).unwrap();
    let cow_l_ro = c.loop_attach(&cow2, true).unwrap();

    let attach = |p: &Path, ro: bool| PrivOp::LoopAttach {
        file: p.into(),
        read_only: ro,
    };
    let detach = |d: &Path, f: &Path| PrivOp::LoopDetach {
        device: d.into(),
        backing_file: f.into(),
    };
    let snap = |name: &str, b: &Path, bf: &Path, c: &Path, cf: &Path, chunk: u32| {
        PrivOp::DmCreateSnapshot {
            name: name.into(),
            sectors: 2048,
            base: b.into(),
            base_file: bf.into(),
            cow: c.into(),
            cow_file: cf.into(),
            chunk_sectors: chunk,
        }
    };
    let mut hostile: Vec<(String, PrivOp)> = Vec::new();
    for p in [
        PathBuf::from("/etc/shadow"),
        PathBuf::from("/etc/passwd"),
        state.join("../secret"),
        state.join("vms/../../secret"),
        state.join("./vms/a/root.cow/.."),
        secret.clone(),
        outside.clone(),
        state.clone(),
        root.join("run/x.img"),
        PathBuf::from("state/vms/a/root.cow"),
        root_in_state.clone(),
        state.join("vms/a/hard"),
        state.join("vms/a/link"),
        state.join("vms/up/secret"),
        state.join("vms/a/null"),
        state.join("vms/a/fifo"),
        state.join("vms/a"),
        private.join("disk"),
        state.join(format!("vms/{}", "x".repeat(300))),
    ] {
        for ro in [true, false] {
            hostile.push((format!("attach {} ro={ro}", p.display()), attach(&p, ro)));
        }
    }
    hostile.push((
        "attach read-only file read-write".into(),
        attach(&ro_file, false),
    ));
    for (dev, file) in [
        (&f_out, &img),
        (&f_out, &outside),
        (&f_in, &root_in_state),
        (&f_secret, &state.join("vms/a/hard")),
        (&f_secret, &state.join("vms/a/link")),
        (&cow_l, &cow2),
        (&base_l, &cow),
    ] {
        hostile.push((
            format!("detach {} naming {}", dev.display(), file.display()),
            detach(dev, file),
        ));
    }
    for d in [
        "/dev/sda",
        "/dev/loop-control",
        "/dev/mapper/control",
        "/dev/loop0/../sda",
    ] {
        hostile.push((format!("detach {d}"), detach(Path::new(d), &img)));
    }
    for (what, op) in [
        (
            "snapshot over a foreign base",
            snap("bgroot-h1", &f_in, &img, &cow_l, &cow, 8),
        ),
        (
            "snapshot over a foreign cow",
            snap("bgroot-h2", &base_l, &img, &f_out, &cow, 8),
        ),
        (
            "snapshot over root's secret",
            snap("bgroot-h3", &f_secret, &img, &cow_l, &cow, 8),
        ),
        (
            "snapshot naming foreign files",
            snap("bgroot-h4", &f_in, &root_in_state, &f_out, &outside, 8),
        ),
        (
            "snapshot with a read-write base",
            snap("bgroot-h5", &cow_l, &cow, &base_l, &img, 8),
        ),
        (
            "snapshot with files swapped",
            snap("bgroot-h6", &base_l, &cow, &cow_l, &img, 8),
        ),
        (
            "snapshot with a read-only cow as base of wrong file",
            snap("bgroot-h7", &cow_l_ro, &img, &cow_l, &cow, 8),
        ),
        (
            "snapshot base == cow",
            snap("bgroot-h8", &base_l, &img, &base_l, &img, 8),
        ),
        (
            "snapshot foreign name",
            snap("vg0-root", &base_l, &img, &cow_l, &cow, 8),
        ),
        (
            "snapshot bad chunk",
            snap("bgroot-h9", &base_l, &img, &cow_l, &cow, 12),
        ),
        (
            "snapshot of /dev/sda",
            snap("bgroot-h10", Path::new("/dev/sda"), &img, &cow_l, &cow, 8),
        ),
    ] {
        hostile.push((what.into(), op));
    }
    for n in [
        "vg0-root",
        "control",
        "bg",
        "../bgroot",
        "bgROOT",
        "docker-thin",
    ] {
        hostile.push((
            format!("dm_remove {n}"),
            PrivOp::DmRemove { name: n.into() },
        ));
    }

    // --- Network: foreign links in the helper's namespace.
    let n = ns.0.as_str();
    let other_s = other.to_string();
    let owner_s = owner.to_string();
    for args in [
        // (veth pairs: this kernel has no dummy driver)
        vec![
            "-n", n, "link", "add", "eth7", "type", "veth", "peer", "name", "xpeer7",
        ],
        vec![
            "-n", n, "link", "add", "bgveth0", "type", "veth", "peer", "name", "xpeer0",
        ],
        vec![
            "-n",
            n,
            "tuntap",
            "add",
            "bgtapforeign",
            "mode",
            "tap",
            "user",
            &other_s,
        ],
        vec!["-n", n, "tuntap", "add", "bgtapnoown", "mode", "tap"],
        vec![
            "-n", n, "tuntap", "add", "bgtunx", "mode", "tun", "user", &owner_s,
        ],
        vec!["-n", n, "link", "add", "bgbrx", "type", "bridge"],
        vec![
            "-n", n, "link", "add", "bgport0", "type", "veth", "peer", "name", "xpeer1",
        ],
        vec!["-n", n, "link", "set", "bgport0", "master", "bgbrx"],
    ] {
        assert!(ip(&args), "ip {args:?}");
    }
    let gw = std::net::Ipv4Addr::new(172, 30, 0, 1);
    let foreign_links = [
        "eth7",
        "bgveth0",
        "bgtapforeign",
        "bgtapnoown",
        "bgtunx",
        "bgbrx",
        "bgport0",
    ];
    let before: Vec<Option<serde_json::Value>> =
        foreign_links.iter().map(|l| ip_json(n, l)).collect();
    for l in foreign_links {
        hostile.push((
            format!("delete_link {l}"),
            PrivOp::DeleteLink { name: l.into() },
        ));
        hostile.push((
            format!("create_tap over {l}"),
            PrivOp::CreateTap {
                name: l.into(),
                bridge: "bg0".into(),
            },
        ));
        hostile.push((
            format!("ensure_bridge over {l}"),
            PrivOp::EnsureBridge {
                name: l.into(),
                gateway: gw,
                prefix: 24,
            },
        ));
    }
    for l in ["bgveth0", "bgbrx", "bgtapforeign"] {
        for revert in [false, true] {
            hostile.push((
                format!("resolver_route on {l} revert={revert}"),
                PrivOp::ResolverRoute {
                    bridge: l.into(),
                    dns: gw,
                    revert,
                },
            ));
        }
    }
    hostile.push((
        "create_tap on a foreign bridge".into(),
        PrivOp::CreateTap {
            name: "bgtapnew".into(),
            bridge: "bgbrx".into(),
        },
    ));

    // Within the rules, the same helper works (control: must succeed).
    c.ensure_bridge("bg0", gw, 24).unwrap();
    c.create_tap("bgtap0", "bg0").unwrap();

    let ops: Vec<PrivOp> = hostile.iter().map(|(_, op)| op.clone()).collect();
    let answers = as_uid(owner, owner, &socket, &root, &ops);
    for ((what, _), a) in hostile.iter().zip(&answers) {
        let mut ok = refused(a);
        if what.starts_with("resolver_route") {
            // Refused for the link itself, whether or not resolved runs.
            ok &= matches!(a, Some(WireResponse { result: Err(e), .. }) if e.message.contains("not banger's bridge"));
        }
        tally.check(&format!("{what}: {a:?}"), ok);
        // Clean up anything attached against the rules.
        if let Some(WireResponse {
            result: Ok(Answer::Reply(PrivReply::LoopAttached { device })),
            ..
        }) = a
        {
            foreign.0.push(device.clone());
        }
    }

    // Listing shows only banger's loops and links.
    let (_, loops) = c.list_disks().unwrap();
    tally.check(
        &format!("list_disks shows foreign loops: {loops:?}"),
        !loops
            .iter()
            .any(|l| [&f_out, &f_in, &f_secret].contains(&&l.device)),
    );
    let links = c.list_links().unwrap();
    tally.check(
        &format!("list_links shows foreign links: {links:?}"),
        !links
            .iter()
            .any(|l| foreign_links.contains(&l.name.as_str())),
    );
    tally.check(
        "list_links misses banger's TAP and bridge",
        links.iter().any(|l| l.name == "bgtap0") && links.iter().any(|l| l.name == "bg0"),
    );

    // Another uid (in the owner's group) is not served at all.
    let legit = vec![
        attach(&img, true),
        detach(&base_l, &img),
        PrivOp::DeleteLink {
            name: "bgtap0".into(),
        },
    ];
    for (op, a) in legit
        .iter()
        .zip(as_uid(other, owner, &socket, &root, &legit))
    {
        tally.check(&format!("uid {other}: {op:?}: {a:?}"), refused(&a));
    }

    // Malformed and oversized frames.
    let frame = |v: &serde_json::Value| {
        let b = serde_json::to_vec(v).unwrap();
        let mut f = (b.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&b);
        f
    };
    let old_detach = serde_json::json!({"version": PROTOCOL_VERSION, "call": {"Op": {"LoopDetach": {"device": f_out, "backing_file": null}}}});
    let old_snap = serde_json::json!({"version": PROTOCOL_VERSION, "call": {"Op": {"DmCreateSnapshot": {"name": "bgroot-x", "sectors": 8, "base": f_in, "cow": f_out, "chunk_sectors": 8}}}});
    let extra = serde_json::json!({"version": PROTOCOL_VERSION, "call": {"Op": {"LoopAttach": {"file": secret, "read_only": true}}}, "as_root": true});
    let mut big = ((MAX_REQUEST as u32) + 1).to_be_bytes().to_vec();
    big.extend(std::iter::repeat_n(b'{', 1024));
    let mut nonutf8 = 6u32.to_be_bytes().to_vec();
    nonutf8.extend_from_slice(&[0xff, 0xfe, b'{', 0x80, b'}', 0]);
    for (what, bytes) in [
        ("old-shape detach", frame(&old_detach)),
        ("old-shape snapshot", frame(&old_snap)),
        ("unknown field", frame(&extra)),
        ("oversized", big),
        ("u32::MAX length", u32::MAX.to_be_bytes().to_vec()),
        ("truncated", {
            let mut f = frame(&old_detach);
            f.truncate(f.len() / 2);
            f
        }),
        ("zero length", 0u32.to_be_bytes().to_vec()),
        ("non-UTF-8", nonutf8),
        (
            "wrong version",
            frame(&serde_json::json!({"version": 0, "call": {"Op": "ListDisks"}})),
        ),
        ("junk", b"\x00\x00\x00\x05hello".to_vec()),
    ] {
        let a = raw(&socket, &bytes);
        // No answer (closed) is a refusal too; an Ok answer is not.
        let ok = !matches!(&a, Some(WireResponse { result: Ok(_), .. }));
        tally.check(&format!("{what}: {a:?}"), ok);
    }

    // --- The race: a directory and a symlink to root's directory swapped
    // (renameat2 RENAME_EXCHANGE) while LoopAttach asks for the path
    // through them. Accepted attaches are fine only of the owner's file.
    let race_dir = state.join("vms/race");
    std::fs::create_dir_all(&race_dir).unwrap();
    let good = owned("vms/race/disk", 1 << 20);
    let evil_dir = root.join("evil");
    std::fs::create_dir_all(&evil_dir).unwrap();
    std::fs::write(evil_dir.join("disk"), vec![0u8; 1 << 20]).unwrap();
    std::fs::set_permissions(
        evil_dir.join("disk"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::symlink(&evil_dir, state.join("vms/swap")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let flipper = {
        let stop = stop.clone();
        let (a, b) = (race_dir.clone(), state.join("vms/swap"));
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = nix::fcntl::renameat2(
                    nix::fcntl::AT_FDCWD,
                    &a,
                    nix::fcntl::AT_FDCWD,
                    &b,
                    nix::fcntl::RenameFlags::RENAME_EXCHANGE,
                );
                n += 1;
            }
            n
        })
    };
    let (mut attached, mut wrong) = (0usize, 0usize);
    for _ in 0..RACE_ROUNDS {
        if let Ok(dev) = c.loop_attach(&good, true) {
            attached += 1;
            let backing = loop_backing_file(&dev);
            let is_good = backing.as_deref() == Some(good.as_path())
                || backing.as_deref() == Some(state.join("vms/swap/disk").as_path());
            let via_evil = backing.as_deref().is_some_and(|b| b.starts_with(&evil_dir));
            if via_evil || !is_good {
                wrong += 1;
            }
            let _ = loopdev::LoopDevice::open(&dev).and_then(|l| l.detach());
        }
        tally.tried += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let flips = flipper.join().unwrap();
    tally.accepted += wrong;
    if wrong > 0 {
        tally
            .notes
            .push(format!("{wrong} attaches of the wrong file in the race"));
    }
    let _ = writeln!(
        std::io::stderr(),
        "race: {RACE_ROUNDS} LoopAttach requests against {flips} swaps: {attached} attached the owner's file, {wrong} attached another"
    );

    // --- Nothing foreign changed.
    tally.check(
        "foreign loops still attached to their files",
        loop_backing_file(&f_out).as_deref() == Some(outside.as_path())
            && loop_backing_file(&f_in).as_deref() == Some(root_in_state.as_path())
            && loop_backing_file(&f_secret).as_deref() == Some(secret.as_path()),
    );
    let after: Vec<Option<serde_json::Value>> =
        foreign_links.iter().map(|l| ip_json(n, l)).collect();
    for ((l, b), a) in foreign_links.iter().zip(&before).zip(&after) {
        let same = |v: &Option<serde_json::Value>| {
            v.as_ref().map(|v| {
                (
                    v["ifindex"].clone(),
                    v["master"].clone(),
                    v["linkinfo"]["info_data"].clone(),
                    v["addr_info"].clone(),
                )
            })
        };
        tally.check(
            &format!("{l} unchanged: {b:?} -> {a:?}"),
            a.is_some() && same(a) == same(b),
        );
    }

    tally.check(
        "a TAP was made for a foreign bridge",
        ip_json(n, "bgtapnew").is_none(),
    );

    // Banger's own objects still work within the rules (not counted).
    assert!(c.delete_link("bgtap0").unwrap());
    for (d, f) in [(&base_l, &img), (&cow_l, &cow), (&cow_l_ro, &cow2)] {
        assert!(c.loop_detach(d, f).unwrap(), "{d:?}");
    }
    let within = c.dm_create_snapshot(
        "bgroot-ok",
        2048,
        (&f_in, &root_in_state),
        (&cow_l, &cow),
        8,
    );
    assert!(
        matches!(within, Err(PrivOpsError::Refused { .. })),
        "{within:?}"
    );

    // --- The log names the caller and the real object of refusals made
    // during execution.
    let text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    let caller = format!("caller_uid={owner}");
    let refusal_lines: Vec<&str> = text.lines().filter(|l| l.contains("refused")).collect();
    for needle in [
        outside.display().to_string(),
        root_in_state.display().to_string(),
        "is owned by uid 0".to_string(),
        "goes through a symlink".to_string(),
        "bgtapforeign".to_string(),
    ] {
        assert!(
            refusal_lines
                .iter()
                .any(|l| l.contains(&caller) && l.contains(&needle)),
            "no refusal logged with {caller} and {needle:?}:\n{}",
            refusal_lines.join("\n")
        );
    }

    let _ = writeln!(
        std::io::stderr(),
        "hostile disk+net: tried {}, accepted outside the rules {}",
        tally.tried,
        tally.accepted
    );
    drop(foreign);
    assert_eq!(
        tally.accepted,
        0,
        "accepted outside the rules:\n{}",
        tally.notes.join("\n")
    );
}
