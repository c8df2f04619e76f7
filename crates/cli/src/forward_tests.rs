//! `banger vm forward` and the forwards in `vm ports` and `vm show`,
//! against the fake daemon.

use banger_api::forward::{PortForward, VmForwardParams};
use banger_api::rpc::VmRef;
use banger_api::{ErrorKind, Request};

use crate::testing::{FakeDaemon, error, ok, run_cli};

fn forward(host_port: u16, guest_port: u16, listening: bool) -> PortForward {
    PortForward {
        vm_id: "0123456789abcdef".into(),
        vm: "dev".into(),
        address: "127.0.0.1".parse().unwrap(),
        host_port,
        guest_port,
        created_at: 0,
        listening,
        error: (!listening).then(|| "host address 127.0.0.1:8080 is already in use".into()),
    }
}

fn against(d: &FakeDaemon, args: &[&str]) -> (i32, String, String) {
    let mut argv = vec!["--socket", d.socket.to_str().unwrap()];
    argv.extend_from_slice(args);
    run_cli(&argv)
}

#[test]
fn bad_specs_and_addresses_are_refused_before_connecting() {
    for (args, words) in [
        (
            &["vm", "forward", "dev", "abc"][..],
            "invalid guest port \"abc\"",
        ),
        (&["vm", "forward", "dev", "8080:0"], "guest port 0"),
        (&["vm", "forward", "dev", "99999:80"], "out of range"),
        (
            &["vm", "forward", "dev", "80", "--address", "localhost"],
            "invalid address \"localhost\"",
        ),
    ] {
        let (code, out, err) =
            run_cli(&[&["--socket", "/nonexistent/banger.sock"][..], args].concat());
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(words), "{args:?}: {err}");
    }
}

#[test]
fn add_sends_the_spec_and_prints_the_host_port() {
    let d = FakeDaemon::start(|r| match r {
        Request::VmForward(p) => {
            let mut f = forward(p.host_port.unwrap_or(40123), p.guest_port, true);
            f.address = p.address.unwrap_or(f.address);
            vec![ok(f)]
        }
        _ => vec![error(ErrorKind::InvalidArgument, "unexpected")],
    });
    let (code, out, err) = against(&d, &["vm", "forward", "dev", "80"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "forwarding 127.0.0.1:40123 -> dev port 80\n");
    let (code, out, _) = against(
        &d,
        &["vm", "forward", "dev", "8080:80", "--address", "0.0.0.0"],
    );
    assert_eq!(code, 0);
    assert_eq!(out, "forwarding 0.0.0.0:8080 -> dev port 80\n");
    assert_eq!(
        d.received(),
        vec![
            Request::VmForward(VmForwardParams {
                vm: "dev".into(),
                guest_port: 80,
                host_port: None,
                address: None,
            }),
            Request::VmForward(VmForwardParams {
                vm: "dev".into(),
                guest_port: 80,
                host_port: Some(8080),
                address: Some("0.0.0.0".parse().unwrap()),
            }),
        ]
    );
}

#[test]
fn remove_names_what_it_removed_and_errors_keep_their_exit_codes() {
    let d = FakeDaemon::start(|r| match r {
        Request::VmForwardRemove(p) if p.guest_port == 80 => {
            vec![ok(vec![forward(8080, 80, false)])]
        }
        Request::VmForwardRemove(_) => vec![error(
            ErrorKind::NotFound,
            "VM dev has no forward to guest port 81; see `banger vm ports dev`",
        )],
        Request::VmForward(_) => vec![error(
            ErrorKind::Conflict,
            "host address 127.0.0.1:8080 is already in use by another program",
        )],
        _ => vec![error(ErrorKind::InvalidArgument, "unexpected")],
    });
    let (code, out, _) = against(&d, &["vm", "forward", "dev", "80", "--remove"]);
    assert_eq!(code, 0);
    assert_eq!(out, "removed 127.0.0.1:8080 -> dev port 80\n");
    let (code, _, err) = against(&d, &["vm", "forward", "dev", "81", "--remove"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no forward to guest port 81"), "{err}");
    let (code, _, err) = against(&d, &["vm", "forward", "dev", "8080:80"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("127.0.0.1:8080 is already in use"), "{err}");
    assert_eq!(
        d.received()[0],
        Request::VmForwardRemove(VmForwardParams {
            vm: "dev".into(),
            guest_port: 80,
            host_port: None,
            address: None,
        })
    );
}

#[test]
fn ports_lists_forwards_even_when_the_guest_cannot_be_asked() {
    let d = FakeDaemon::start(|r| match r {
        Request::VmPorts(_) => vec![error(
            ErrorKind::Conflict,
            "VM dev is stopped; start it first",
        )],
        Request::VmForwards(VmRef { vm }) if vm == "dev" => {
            vec![ok(vec![forward(8080, 80, false), forward(9000, 22, true)])]
        }
        Request::VmForwards(_) => vec![ok(Vec::<PortForward>::new())],
        _ => vec![error(ErrorKind::InvalidArgument, "unexpected")],
    });
    let (code, out, err) = against(&d, &["vm", "ports", "dev"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("note: cannot list the guest's listening ports: VM dev is stopped"),
        "{err}"
    );
    assert!(out.contains("FORWARD"), "{out}");
    assert!(out.contains("127.0.0.1:9000"), "{out}");
    assert!(out.contains("dev.vm:22"), "{out}");
    assert!(
        out.contains("not listening: host address 127.0.0.1:8080"),
        "{out}"
    );
    // Without forwards the guest's error is the command's.
    let (code, _, err) = against(&d, &["vm", "ports", "other"]);
    assert_eq!(code, 4, "{err}");
    // --json keeps its shape (the listening ports) and its error.
    let (code, _, _) = against(&d, &["vm", "ports", "dev", "--json"]);
    assert_eq!(code, 4);
}

#[test]
fn ports_against_a_daemon_without_forwards_still_lists_the_guest_ports() {
    let d = FakeDaemon::start(|r| match r {
        Request::VmPorts(_) => vec![ok(vec![banger_api::guest::GuestPort {
            proto: "tcp".into(),
            address: "0.0.0.0".into(),
            port: 22,
            process: Some("sshd".into()),
            endpoint: "dev.vm:22".into(),
        }])],
        _ => vec![error(
            ErrorKind::InvalidArgument,
            "unknown method vm.forwards",
        )],
    });
    let (code, out, err) = against(&d, &["vm", "ports", "dev"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("dev.vm:22"), "{out}");
    assert!(!out.contains("FORWARD"), "{out}");
    assert!(
        err.contains("note: cannot list the VM's forwards: unknown method"),
        "{err}"
    );
}
