//! Tests of the everyday verbs (`shell`, `vm cp`, several names, `-q`,
//! `logs -f`, `vm create -f` and `--provision`) against the fake daemon.
//! The fake answers `vm.ssh_argv` with `sh -c COMMAND`, so the commands
//! that run in a guest run in a local shell instead.

use std::sync::{Arc, Mutex};

use banger_api::guest::SshArgv;
use banger_api::rpc::{VmDeleteParams, VmRef};
use banger_api::{
    Deleted, ErrorKind, OpState, ProvisionRun, ProvisionState, Request, VmCreated, VmLogs, VmState,
};
use clap::Parser;

use crate::args::{Cli, Command, VmCommand};
use crate::testing::{FakeDaemon, error, ok};
use crate::tests::{against, banger, detail, op, vm};

fn parses(args: &[&str]) -> Cli {
    let argv = std::iter::once("banger").chain(args.iter().copied());
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn refused(args: &[&str]) -> String {
    let argv = std::iter::once("banger").chain(args.iter().copied());
    match Cli::try_parse_from(argv) {
        Ok(_) => panic!("{args:?} parsed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn verbs_parse() {
    let Command::Shell(s) = parses(&["shell"]).command else {
        panic!()
    };
    assert_eq!((s.name, s.command.len()), (None, 0));
    let Command::Shell(s) = parses(&["shell", "dev", "--", "ls", "-la"]).command else {
        panic!()
    };
    assert_eq!(s.name.as_deref(), Some("dev"));
    assert_eq!(s.command, ["ls", "-la"]);
    let Command::Vm(VmCommand::Cp(c)) = parses(&["vm", "cp", "-r", "./d", "dev:/tmp"]).command
    else {
        panic!()
    };
    assert_eq!((c.src.as_str(), c.dst.as_str()), ("./d", "dev:/tmp"));
    let Command::Vm(VmCommand::Start(a)) = parses(&["vm", "start", "a", "b", "c"]).command else {
        panic!()
    };
    assert_eq!(a.names, ["a", "b", "c"]);
    let Command::Vm(VmCommand::Delete(a)) = parses(&["vm", "rm", "-f", "a", "b"]).command else {
        panic!()
    };
    assert_eq!((a.names.len(), a.force), (2, true));
    let Command::Vm(VmCommand::Stop(a)) =
        parses(&["vm", "stop", "a", "b", "--timeout", "3"]).command
    else {
        panic!()
    };
    assert_eq!((a.names.len(), a.timeout), (2, Some(3)));
    let Command::Vm(VmCommand::Logs(l)) = parses(&["vm", "logs", "-f", "dev"]).command else {
        panic!()
    };
    assert!(l.follow);
    let Command::Vm(VmCommand::Create(c)) = parses(&[
        "vm",
        "create",
        "-f",
        "vm.toml",
        "--provision",
        "a.sh",
        "--provision",
        "b.sh",
    ])
    .command
    else {
        panic!()
    };
    assert_eq!(c.name, None);
    assert_eq!(c.more.provision.len(), 2);
    assert!(parses(&["-q", "vm", "list"]).global.quiet);
    assert!(parses(&["vm", "list", "--quiet"]).global.quiet);
    assert!(matches!(
        parses(&["__complete", "vms"]).command,
        Command::Complete(_)
    ));
}

#[test]
fn verb_usage_errors() {
    refused(&["vm", "start"]);
    refused(&["vm", "delete"]);
    refused(&["vm", "create"]);
    refused(&["vm", "cp", "only-one"]);
    refused(&["vm", "logs", "dev", "-f", "--json"]);
    let e = refused(&["vm", "create", "x", "--provision", "a.sh", "--detach"]);
    assert!(e.contains("cannot be used with"), "{e}");
    refused(&["vm", "create", "x", "--provision", "a.sh", "--no-start"]);
}

fn deleting_daemon() -> FakeDaemon {
    FakeDaemon::start(|r| match r {
        Request::VmDelete(VmDeleteParams { vm: name, .. }) if name != "missing" => {
            vec![ok(Deleted {
                id: format!("{name}-id"),
                name: name.clone(),
            })]
        }
        Request::VmDelete(_) => vec![error(ErrorKind::NotFound, "no VM named \"missing\"")],
        _ => vec![error(ErrorKind::Internal, "unexpected")],
    })
}

#[test]
fn several_names_go_on_after_a_failure_and_fail_at_the_end() {
    let d = deleting_daemon();
    let (code, out, err) = against(&d, &["vm", "delete", "a", "missing", "c"]);
    assert_eq!(code, 3, "the failures' own exit code: {err}");
    assert_eq!(out, "deleted VM a (a-id)\ndeleted VM c (c-id)\n");
    assert!(err.contains("could not delete 1 of 3 VMs"), "{err}");
    assert!(err.contains("missing: no VM named"), "{err}");
    let asked: Vec<String> = d
        .received()
        .into_iter()
        .filter_map(|r| match r {
            Request::VmDelete(p) => Some(p.vm),
            _ => None,
        })
        .collect();
    assert_eq!(asked, ["a", "missing", "c"], "in order, none skipped");
    // All succeed: exit 0; -q prints the names only.
    let (code, out, err) = against(&d, &["-q", "vm", "delete", "a", "c"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "a\nc\n", ""));
    // --json with several names: an array of what succeeded.
    let (code, out, _) = against(&d, &["vm", "delete", "a", "c", "--json"]);
    assert_eq!(code, 0);
    let v: Vec<Deleted> = serde_json::from_str(&out).unwrap();
    assert_eq!(v.len(), 2);
    // One name keeps its error as before.
    let (code, _, err) = against(&d, &["vm", "delete", "missing"]);
    assert_eq!(code, 3);
    assert!(err.starts_with("error: no VM named"), "{err}");
}

#[test]
fn start_and_stop_take_several_names() {
    let d = FakeDaemon::start(|r| match r {
        Request::VmStartOp(VmRef { vm: n }) => vec![ok(banger_api::VmCreated {
            vm: vm(n, VmState::Running),
            operation: None,
        })],
        Request::VmStop(p) => vec![ok(vm(&p.vm, VmState::Stopped))],
        _ => vec![error(ErrorKind::Internal, "unexpected")],
    });
    let (code, out, _) = against(&d, &["vm", "start", "a", "b"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "a is running at 172.30.0.2\nb is running at 172.30.0.2\n"
    );
    let (code, out, _) = against(&d, &["-q", "vm", "stop", "a", "b"]);
    assert_eq!((code, out.as_str()), (0, "a\nb\n"));
}

#[test]
fn quiet_lists_print_names_and_hide_notes() {
    let d = FakeDaemon::start(|r| match r {
        Request::VmList => vec![ok(vec![
            vm("dev", VmState::Running),
            vm("web", VmState::Stopped),
        ])],
        Request::ImageList => vec![ok(Vec::<banger_api::Image>::new())],
        _ => vec![error(ErrorKind::NotFound, "no such thing")],
    });
    let (code, out, err) = against(&d, &["-q", "vm", "list"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "dev\nweb\n", ""));
    let (code, out, err) = against(&d, &["image", "list", "-q"]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, "", ""), "no hint");
    // Errors still reach stderr.
    let (code, _, err) = against(&d, &["-q", "vm", "show", "x"]);
    assert_eq!(code, 3);
    assert!(err.contains("no such thing"), "{err}");
    // __complete lists names for the completion scripts.
    let (code, out, _) = against(&d, &["__complete", "vms"]);
    assert_eq!((code, out.as_str()), (0, "dev\nweb\n"));
}

#[test]
fn logs_follow_asks_from_the_last_offset() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let d = FakeDaemon::start(move |r| {
        let Request::VmLogs(p) = r else {
            return vec![error(ErrorKind::Internal, "unexpected")];
        };
        let mut n = c.lock().unwrap();
        *n += 1;
        match (*n, p.since) {
            (1, None) => vec![ok(VmLogs {
                path: "/c.log".into(),
                lines: vec!["boot".into()],
                end: 5,
            })],
            (2, Some(5)) => vec![ok(VmLogs {
                path: "/c.log".into(),
                lines: vec!["login:".into(), "more".into()],
                end: 17,
            })],
            (3, Some(17)) => vec![error(ErrorKind::NotFound, "the VM was deleted")],
            other => vec![error(ErrorKind::Internal, &format!("unexpected {other:?}"))],
        }
    });
    let (code, out, err) = against(&d, &["vm", "logs", "dev", "-f"]);
    assert_eq!(code, 3, "{err}");
    assert_eq!(out, "boot\nlogin:\nmore\n");
    assert!(err.contains("the VM was deleted"), "{err}");
}

#[test]
fn show_prints_the_provisioning_record() {
    let d = FakeDaemon::start(|_| {
        let mut d = detail(vm("dev", VmState::Running));
        d.provision = vec![
            ProvisionRun {
                script: "a.sh".into(),
                state: ProvisionState::Ok,
                exit_code: Some(0),
                started_at: Some(1000),
                finished_at: Some(3500),
            },
            ProvisionRun {
                script: "b.sh".into(),
                state: ProvisionState::Failed,
                exit_code: Some(7),
                started_at: Some(3500),
                finished_at: Some(4000),
            },
        ];
        vec![ok(d)]
    });
    let (code, out, _) = against(&d, &["vm", "show", "dev"]);
    assert_eq!(code, 0);
    assert!(out.contains("a.sh: ok (exit 0, 2.5s)"), "{out}");
    assert!(out.contains("b.sh: failed (exit 7, 0.5s)"), "{out}");
}

/// A daemon whose VM `dev` is created at once, whose "guest" is a local
/// shell, and which keeps the provisioning records it is sent.
fn guest_daemon(records: Arc<Mutex<Vec<Vec<ProvisionRun>>>>) -> FakeDaemon {
    FakeDaemon::start(move |r| match r {
        Request::VmCreate(p) => vec![ok(VmCreated {
            vm: vm(&p.name, VmState::Running),
            operation: Some(op(OpState::Running, 1, "boot")),
        })],
        Request::OperationWatch(_) => vec![ok(op(OpState::Succeeded, 3, "running"))],
        Request::VmShow(VmRef { vm: n }) => vec![ok(detail(vm(n, VmState::Running)))],
        Request::VmSshArgv(p) => vec![ok(SshArgv {
            argv: vec!["sh".into(), "-c".into(), p.command.join(" ")],
        })],
        Request::VmProvisionRecord(p) => {
            records.lock().unwrap().push(p.runs.clone());
            vec![ok(p.runs.clone())]
        }
        Request::GuestSshConfig => vec![error(ErrorKind::Internal, "no")],
        other => vec![error(
            ErrorKind::Internal,
            &format!("unexpected {}", other.method()),
        )],
    })
}

#[test]
fn provision_runs_scripts_in_order_and_records_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("marker");
    let ok_script = dir.path().join("ok.sh");
    std::fs::write(&ok_script, format!("echo first >> {}\n", marker.display())).unwrap();
    let bad = dir.path().join("bad.sh");
    std::fs::write(&bad, "#!/bin/sh\necho failing >&2\nexit 7\n").unwrap();
    let never = dir.path().join("never.sh");
    std::fs::write(&never, format!("echo never >> {}\n", marker.display())).unwrap();
    let records = Arc::new(Mutex::new(Vec::new()));
    let d = guest_daemon(records.clone());
    let p = |p: &std::path::Path| p.display().to_string();
    let (code, out, err) = against(
        &d,
        &[
            "vm",
            "create",
            "dev",
            "--provision",
            &p(&ok_script),
            "--provision",
            &p(&bad),
            "--provision",
            &p(&never),
        ],
    );
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "", "no VM table after a failed provisioning");
    assert!(err.contains("provisioning dev failed"), "{err}");
    assert!(err.contains("exited with 7"), "{err}");
    assert!(err.contains("the VM is running"), "{err}");
    assert!(err.contains("1 later script(s) not run"), "{err}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "first\n");
    let records = records.lock().unwrap();
    let last = records.last().unwrap();
    let states: Vec<_> = last.iter().map(|r| (r.state, r.exit_code)).collect();
    assert_eq!(
        states,
        [
            (ProvisionState::Ok, Some(0)),
            (ProvisionState::Failed, Some(7)),
            (ProvisionState::Pending, None)
        ]
    );
    assert!(last[1].finished_at.is_some() && last[1].started_at.is_some());
    // Each step was recorded as it happened: pending, running, done.
    assert_eq!(records[0][0].state, ProvisionState::Pending);
    assert_eq!(records[1][0].state, ProvisionState::Running);
}

#[test]
fn create_from_a_spec_merges_flags_and_provisions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("setup.sh"),
        format!("touch {}\n", dir.path().join("done").display()),
    )
    .unwrap();
    let spec = dir.path().join("vm.toml");
    std::fs::write(
        &spec,
        "name = \"web\"\nimage = \"base\"\nvcpus = 3\nmemory = \"2G\"\nprovision = [\"setup.sh\"]\n",
    )
    .unwrap();
    let records = Arc::new(Mutex::new(Vec::new()));
    let d = guest_daemon(records.clone());
    let (code, out, err) = against(
        &d,
        &[
            "-q",
            "vm",
            "create",
            "-f",
            spec.to_str().unwrap(),
            "--vcpus",
            "4",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "web\n");
    assert!(dir.path().join("done").exists(), "the spec's script ran");
    let sent = d
        .received()
        .into_iter()
        .find_map(|r| match r {
            Request::VmCreate(p) => Some(p),
            _ => None,
        })
        .unwrap();
    assert_eq!(sent.name, "web");
    assert_eq!(sent.image.as_deref(), Some("base"));
    assert_eq!(
        (sent.vcpus, sent.memory_mib),
        (Some(4), Some(2048)),
        "flags win"
    );
    // A spec with a bad forward is refused before anything is sent.
    std::fs::write(&spec, "forwards = [\"8080:0\"]\n").unwrap();
    let before = d.received().len();
    let (code, _, err) = against(&d, &["vm", "create", "x", "-f", spec.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("forwards: guest port 0"), "{err}");
    assert_eq!(d.received().len(), before);
    // A missing script changes nothing either.
    let (code, _, err) = against(&d, &["vm", "create", "x", "--provision", "/no/such.sh"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(d.received().len(), before);
}

#[test]
fn cp_both_ways_through_the_ssh_command() {
    let d = guest_daemon(Arc::new(Mutex::new(Vec::new())));
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("tree");
    std::fs::create_dir_all(src.join("a")).unwrap();
    std::fs::write(src.join("a/f.txt"), "hello").unwrap();
    let guest = dir.path().join("guest");
    std::fs::create_dir(&guest).unwrap();
    let g = |p: &std::path::Path| format!("dev:{}", p.display());
    let (code, _, err) = against(&d, &["vm", "cp", src.to_str().unwrap(), &g(&guest)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(guest.join("tree/a/f.txt")).unwrap(),
        "hello"
    );
    let back = dir.path().join("back");
    let (code, _, err) = against(
        &d,
        &["vm", "cp", &g(&guest.join("tree")), back.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(back.join("a/f.txt")).unwrap(),
        "hello"
    );
    // A missing guest file fails with ssh's (here sh's) exit status.
    let (code, _, err) = against(
        &d,
        &["vm", "cp", &g(&guest.join("none")), back.to_str().unwrap()],
    );
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = against(&d, &["vm", "cp", "/etc/hostname", "/tmp/x"]);
    assert_eq!(code, 2);
    assert!(err.contains("NAME:PATH"), "{err}");
}

#[test]
fn help_names_the_new_verbs() {
    let (code, out, _) = banger(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("shell"), "{out}");
    assert!(!out.contains("__complete"), "hidden");
    let (_, out, _) = banger(&["vm", "--help"]);
    assert!(out.contains("cp "), "{out}");
}

#[test]
fn provisioning_waits_for_sshd_to_answer() {
    // The "guest" refuses the first two ssh connections (exit 255), as a
    // VM whose readiness is `none` does before its sshd listens.
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let marker = dir.path().join("ran");
    let script = dir.path().join("s.sh");
    std::fs::write(&script, format!("touch {}\n", marker.display())).unwrap();
    let prefix = format!(
        "n=$(cat {c} 2>/dev/null || echo 0); echo $((n + 1)) > {c}; [ \"$n\" -ge 2 ] || exit 255; ",
        c = count.display()
    );
    let d = FakeDaemon::start(move |r| match r {
        Request::VmSshArgv(p) => vec![ok(SshArgv {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("{prefix}{}", p.command.join(" ")),
            ],
        })],
        Request::VmCreate(p) => vec![ok(VmCreated {
            vm: vm(&p.name, VmState::Running),
            operation: None,
        })],
        Request::VmProvisionRecord(p) => vec![ok(p.runs.clone())],
        _ => vec![error(ErrorKind::Internal, "no")],
    });
    let (code, _, err) = against(
        &d,
        &[
            "vm",
            "create",
            "dev",
            "--provision",
            script.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(marker.exists(), "the script ran once ssh answered");
    assert_eq!(
        std::fs::read_to_string(&count).unwrap().trim(),
        "4",
        "2 refused, 1 probe, 1 run"
    );
}
