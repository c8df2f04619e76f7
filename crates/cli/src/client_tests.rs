use std::time::Duration;

use banger_api::rpc::VmRef;
use banger_api::{DaemonStatus, ErrorKind, OpState, Operation, Request};

use super::*;
use crate::testing::{FakeDaemon, Reply, error, event, ok};

fn op(state: OpState, step: u32, stage: &str) -> Operation {
    Operation {
        id: "op1".into(),
        kind: "vm.create".into(),
        subject: "dev".into(),
        state,
        stage: stage.into(),
        step,
        steps: 3,
        error: None,
        created_at: 0,
        updated_at: 0,
    }
}

fn status() -> DaemonStatus {
    DaemonStatus {
        version: "9.9.9".into(),
        pid: 42,
        uptime_secs: 3,
        state_dir: "/s".into(),
        runtime_dir: "/r".into(),
        firecracker_bin: "firecracker".into(),
        vms_total: 1,
        vms_running: 0,
    }
}

#[test]
fn hello_then_result() {
    let daemon = FakeDaemon::start(|_| vec![ok(status())]);
    let mut c = Client::connect(&daemon.socket).unwrap();
    assert_eq!(c.hello().version, "9.9.9");
    assert_eq!(c.hello().protocol, PROTOCOL_VERSION);
    let s: DaemonStatus = c.call(Request::Status).unwrap();
    assert_eq!(s, status());
    let again: DaemonStatus = c.call(Request::Status).unwrap();
    assert_eq!(again.pid, 42);
    assert_eq!(daemon.received(), vec![Request::Status, Request::Status]);
}

#[test]
fn daemon_errors_are_typed_with_exit_codes() {
    let daemon = FakeDaemon::start(|r| match r {
        Request::VmShow(v) if v.vm == "gone" => {
            vec![error(ErrorKind::NotFound, "no VM named gone")]
        }
        _ => vec![error(ErrorKind::Conflict, "dev is running")],
    });
    let mut c = Client::connect(&daemon.socket).unwrap();
    let e = c
        .call::<serde_json::Value>(Request::VmShow(VmRef { vm: "gone".into() }))
        .unwrap_err();
    assert!(
        matches!(&e, ClientError::Rpc(r) if r.kind == ErrorKind::NotFound),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "no VM named gone");
    assert_eq!(e.exit_code(), 3);
    let e = c.call::<serde_json::Value>(Request::VmList).unwrap_err();
    assert_eq!(e.rpc().unwrap().kind, ErrorKind::Conflict);
    assert_eq!(e.exit_code(), 4);
}

#[test]
fn watch_streams_events_then_the_result() {
    let daemon = FakeDaemon::start(|r| match r {
        Request::OperationWatch(o) if o.id == "op1" => vec![
            event(op(OpState::Running, 1, "copying root disk")),
            event(op(OpState::Running, 2, "starting VMM")),
            ok(op(OpState::Succeeded, 3, "running")),
        ],
        _ => vec![error(ErrorKind::NotFound, "no such operation")],
    });
    let mut c = Client::connect(&daemon.socket).unwrap();
    let mut seen = Vec::new();
    let last = c.watch("op1", |o| seen.push(o.stage.clone())).unwrap();
    assert_eq!(seen, ["copying root disk", "starting VMM"]);
    assert_eq!(last.state, OpState::Succeeded);
    let e = c
        .watch("nope", |_| panic!("no events expected"))
        .unwrap_err();
    assert_eq!(e.exit_code(), 3);
}

#[test]
fn call_skips_events() {
    let daemon = FakeDaemon::start(|_| vec![event(op(OpState::Running, 1, "x")), ok(status())]);
    let mut c = Client::connect(&daemon.socket).unwrap();
    let s: DaemonStatus = c.call(Request::Status).unwrap();
    assert_eq!(s.pid, 42);
}

#[test]
fn version_mismatch_is_refused() {
    let daemon = FakeDaemon::with_protocol(PROTOCOL_VERSION + 1, |_| vec![ok(status())]);
    let e = Client::connect(&daemon.socket).unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::VersionMismatch {
                daemon: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
    let msg = e.to_string();
    assert!(msg.contains("restart bangerd after an upgrade"), "{msg}");
    assert!(
        msg.contains(&format!("protocol {}", PROTOCOL_VERSION + 1)),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 5);
    assert!(
        daemon.received().is_empty(),
        "nothing may be sent after a refused handshake"
    );

    // The daemon refusing our version is reported the same way.
    let daemon = FakeDaemon::with_hello(
        || error(ErrorKind::VersionMismatch, "protocol 1 is not supported"),
        |_| vec![],
    );
    let e = Client::connect(&daemon.socket).unwrap_err();
    assert!(
        matches!(e, ClientError::VersionMismatch { daemon: None, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("restart bangerd"), "{e}");
}

#[test]
fn unreachable_socket_says_how_to_start_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bangerd.sock");
    let e = Client::connect(&socket).unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(&socket.display().to_string()), "{msg}");
    assert!(
        msg.contains("`bangerd`") && msg.contains("--socket"),
        "{msg}"
    );
    assert_eq!(e.exit_code(), 6);
    assert!(std::error::Error::source(&e).is_some());

    // A stale socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let e = Client::connect(&socket).unwrap_err();
    assert!(matches!(e, ClientError::Connect { .. }), "{e:?}");
}

#[test]
fn bad_answers_are_protocol_errors() {
    let daemon = FakeDaemon::start(|r| match r {
        Request::VmList => vec![Reply::Raw("this is not json".into())],
        Request::ImageList => vec![Reply::Raw(r#"{"id":999,"result":[]}"#.into())],
        Request::OperationList => vec![ok("a string, not a list")],
        _ => vec![Reply::Close],
    });
    let connect = || Client::connect(&daemon.socket).unwrap();
    let e = connect()
        .call::<Vec<serde_json::Value>>(Request::VmList)
        .unwrap_err();
    assert!(matches!(e, ClientError::Protocol { .. }), "{e:?}");
    assert!(e.to_string().contains("vm.list"), "{e}");
    let e = connect()
        .call::<Vec<serde_json::Value>>(Request::ImageList)
        .unwrap_err();
    assert!(e.to_string().contains("response id 999"), "{e}");
    let e = connect()
        .call::<Vec<Operation>>(Request::OperationList)
        .unwrap_err();
    assert!(e.to_string().contains("invalid result"), "{e}");
    let e = connect().call::<DaemonStatus>(Request::Status).unwrap_err();
    assert!(matches!(e, ClientError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("still running"), "{e}");
}

#[test]
fn slow_answers_time_out_and_the_connection_recovers() {
    let daemon = FakeDaemon::start(|r| match r {
        Request::VmList => vec![
            Reply::Sleep(Duration::from_millis(600)),
            ok(Vec::<u8>::new()),
        ],
        _ => vec![ok(status())],
    });
    let mut c = Client::connect(&daemon.socket).unwrap();
    c.set_timeout(Some(Duration::from_millis(100)));
    let e = c.call::<Vec<u8>>(Request::VmList).unwrap_err();
    assert!(matches!(e, ClientError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("did not answer vm.list"), "{e}");
    c.set_timeout(Some(Duration::from_secs(10)));
    // The late answer to vm.list is skipped; this call gets its own.
    let s: DaemonStatus = c.call(Request::Status).unwrap();
    assert_eq!(s.pid, 42);
}

#[test]
fn one_client_per_thread() {
    let daemon = FakeDaemon::start(|_| vec![ok(status())]);
    let socket = daemon.socket.clone();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(&socket).unwrap();
                for _ in 0..20 {
                    let s: DaemonStatus = c.call(Request::Status).unwrap();
                    assert_eq!(s.pid, 42);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(daemon.received().len(), 160);
}

#[test]
fn trusted_peers_are_me_root_and_the_installed_owner() {
    let p = TrustedPeers {
        me: 1000,
        owner: Some(1001),
    };
    assert!(p.allows(1000) && p.allows(1001) && p.allows(0));
    assert!(!p.allows(1002) && !p.allows(65534));
    assert!(p.describe().contains("installed owner (uid 1001)"));
    let alone = TrustedPeers {
        me: 1000,
        owner: None,
    };
    assert!(!alone.allows(1001));
    assert_eq!(alone.describe(), "you (uid 1000) or root");
    // The install metadata names the owner.
    let t = tempfile::tempdir().unwrap();
    let meta = crate::system::install::meta_for("alice", 4242, 4242);
    std::fs::write(t.path().join("install.toml"), meta.to_toml()).unwrap();
    let from_meta = TrustedPeers::from_install_meta(&t.path().join("install.toml"));
    assert!(from_meta.allows(4242));
    assert!(!TrustedPeers::from_install_meta(&t.path().join("none.toml")).allows(4243));
}
