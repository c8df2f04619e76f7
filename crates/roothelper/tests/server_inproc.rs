//! The helper's server in-process (no root needed): the socket's mode, the
//! client/server round trip, refusals mapped to `PrivOpsError::Refused`,
//! protocol errors, a missing helper reported with a hint, and a client
//! that refuses a helper running as an unexpected uid. The attacks from
//! other uids are in `hostile_sockets.rs`.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_privops::wire::{
    self, Call, MAX_RESPONSE, WireErrorKind, WireRequest, WireResponse, read_frame, write_frame,
};
use banger_privops::{
    LocalPrivOps, Policy, PrivOp, PrivOpsError, PrivilegedOps, RootHelperClient, SpawnVmm,
    VmmSignal,
};
use banger_roothelper::server::{ServeOptions, bind, serve};

struct Fixture {
    _t: tempfile::TempDir,
    root: PathBuf,
    socket: PathBuf,
}

fn start(owner_uid: u32) -> Fixture {
    start_serving(me(), owner_uid)
}

/// A helper whose socket belongs to `socket_uid`, serving `owner_uid`.
fn start_serving(socket_uid: u32, owner_uid: u32) -> Fixture {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("state")).unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    let policy = Policy {
        device_prefix: "bg".into(),
        state_dir: root.join("state"),
        runtime_dir: root.join("run"),
        subnet: (std::net::Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid,
        vmm_binary: PathBuf::from("/bin/true"),
    };
    let socket = root.join("root.sock");
    let bound = bind(&socket, socket_uid).unwrap();
    let opts = ServeOptions {
        request_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        ..ServeOptions::new(owner_uid)
    };
    std::thread::spawn(move || serve(bound, LocalPrivOps::new(policy), opts));
    Fixture {
        _t: t,
        root,
        socket,
    }
}

fn me() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// A client that expects the in-process helper (this test's uid, root
/// when run as root).
fn client(socket: &Path) -> RootHelperClient {
    RootHelperClient::new(socket).expect_peer_uid(me())
}

fn raw(socket: &Path, bytes: &[u8]) -> WireResponse {
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(bytes).unwrap();
    let body = read_frame(&mut s, MAX_RESPONSE).unwrap();
    serde_json::from_slice(&body).unwrap()
}

#[test]
fn socket_is_0600_and_the_owner_is_served() {
    let f = start(me());
    let m = std::fs::metadata(&f.socket).unwrap();
    assert_eq!((m.mode() & 0o777, m.uid()), (0o600, me()));
    let c = client(&f.socket);
    let (version, uid) = c.ping().unwrap();
    assert_eq!((version.as_str(), uid), (env!("CARGO_PKG_VERSION"), me()));
    // A refusal comes back typed, with its reason and the op's name.
    let err = c
        .execute(PrivOp::SignalVmm {
            pid: 1,
            start_time: 0,
            signal: VmmSignal::Term,
        })
        .unwrap_err();
    assert!(
        matches!(&err, PrivOpsError::Refused { op: "signal_vmm", reason } if reason.contains("invalid pid")),
        "{err:?}"
    );
    let err = c
        .spawn_vmm(SpawnVmm {
            binary: "/bin/true".into(),
            api_sock: f.root.join("state/a.sock"),
            id: "vm".into(),
            console_log: "/etc/banger-inproc.log".into(),
            stderr_log: f.root.join("state/e.log"),
            exit_status_file: f.root.join("state/exit"),
            lock_file: f.root.join("state/vmm.lock"),
        })
        .unwrap_err();
    assert!(err.to_string().contains("refused spawn_vmm"), "{err}");
    assert!(!Path::new("/etc/banger-inproc.log").exists());
    // A process that is not a VMM is not signalled: refused.
    let me = std::process::id();
    let start = banger_privops::start_time(Path::new("/proc"), me).unwrap();
    let err = c.signal_vmm(me, start, VmmSignal::Kill).unwrap_err();
    assert!(
        matches!(
            &err,
            PrivOpsError::Refused {
                op: "signal_vmm",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn protocol_errors_are_answered_clearly() {
    let f = start(me());
    let frame = |v: &WireRequest| {
        let mut b = Vec::new();
        write_frame(&mut b, v).unwrap();
        b
    };
    let old = frame(&WireRequest {
        version: 99,
        call: Call::Ping,
    });
    let e = raw(&f.socket, &old).result.unwrap_err();
    assert_eq!(e.kind, WireErrorKind::Version);
    assert!(e.message.contains("99"), "{}", e.message);
    let mut junk = 5u32.to_be_bytes().to_vec();
    junk.extend_from_slice(b"hello");
    assert_eq!(
        raw(&f.socket, &junk).result.unwrap_err().kind,
        WireErrorKind::BadRequest
    );
    let big = ((wire::MAX_REQUEST as u32) + 1).to_be_bytes();
    assert_eq!(
        raw(&f.socket, &big).result.unwrap_err().kind,
        WireErrorKind::TooLarge
    );
}

#[test]
fn another_uid_is_refused() {
    if me() == 0 {
        // Root is always served; tests/e2e/system_path.rs runs a client as
        // 65534 against a real helper for this case.
        banger_testsupport::skip!(
            "another_uid_is_refused",
            "running as root, which the helper always serves (covered by banger's system_path test)"
        );
    }
    let f = start_serving(me(), me() + 1);
    let err = client(&f.socket).ping().unwrap_err();
    assert!(
        err.to_string().contains("may not use bangerd-root"),
        "{err}"
    );
}

#[test]
fn a_missing_helper_is_reported_with_a_hint() {
    let t = tempfile::tempdir().unwrap();
    let err = RootHelperClient::new(t.path().join("none.sock"))
        .with_timeout(Duration::from_millis(200))
        .ping()
        .unwrap_err();
    assert!(matches!(err, PrivOpsError::HelperUnavailable { .. }));
    assert!(err.to_string().contains("banger system status"), "{err}");
    // A stale regular file where the socket goes is refused, not replaced.
    std::fs::write(t.path().join("f.sock"), "x").unwrap();
    assert!(bind(&t.path().join("f.sock"), me()).is_err());
}

#[test]
fn foreign_devices_and_addresses_are_refused_through_the_helper() {
    let f = start(me());
    let c = client(&f.socket);
    let gw = std::net::Ipv4Addr::new(172, 30, 0, 1);
    let cases = [
        PrivOp::CreateTap {
            name: "eth0".into(),
            bridge: "bg0".into(),
        },
        PrivOp::DeleteLink {
            name: "eth0".into(),
        },
        PrivOp::DeleteLink {
            name: "tap0".into(),
        },
        PrivOp::CreateTap {
            name: "bg-much-too-long-name".into(),
            bridge: "bg0".into(),
        },
        PrivOp::EnsureBridge {
            name: "bg0".into(),
            gateway: std::net::Ipv4Addr::new(10, 0, 0, 1),
            prefix: 24,
        },
        PrivOp::EnsureBridge {
            name: "docker0".into(),
            gateway: gw,
            prefix: 24,
        },
        PrivOp::ApplyNat {
            bridge: "bg0".into(),
            network: std::net::Ipv4Addr::new(0, 0, 0, 0),
            prefix: 0,
        },
        PrivOp::ResolverRoute {
            bridge: "bg0".into(),
            dns: std::net::Ipv4Addr::new(8, 8, 8, 8),
            revert: false,
        },
    ];
    for op in cases {
        let shown = format!("{op:?}");
        let err = c.execute(op).unwrap_err();
        assert!(
            matches!(err, PrivOpsError::Refused { .. }),
            "{shown} not refused: {err:?}"
        );
    }
    // Nothing was created: no link of these names exists in this namespace.
    for name in ["eth0", "tap0", "docker0", "bg0"] {
        let out = std::process::Command::new("ip")
            .args(["-j", "link", "show", name])
            .output();
        if let Ok(out) = out
            && name != "eth0"
        {
            assert!(!out.status.success(), "{name} exists");
        }
    }
}

#[test]
fn a_helper_of_an_unexpected_uid_is_sent_nothing() {
    let f = start(me());
    let other = me().wrapping_add(1);
    let err = RootHelperClient::new(&f.socket)
        .expect_peer_uid(other)
        .ping()
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("runs as uid {}", me())) && msg.contains("was sent nothing"),
        "{msg}"
    );
    assert!(msg.contains(&f.socket.display().to_string()), "{msg}");
}
