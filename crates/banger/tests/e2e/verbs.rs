//! The everyday verbs end to end: a simulator daemon whose "guest" is a
//! real OpenSSH `sshd` in a network namespace (see `guestnet/mod.rs`; the
//! guest shares the host's files, so every guest path here is absolute and
//! inside the test's own directory). `banger shell` (the default VM
//! created on first use, exit codes), `vm cp` both ways, `vm create
//! --provision` and `-f` (record in `vm show`, a failing script), `vm logs
//! -f`, several names for `vm delete`, `-q` and `__complete`. Daemon and
//! CLI run with the test's own `HOME`.

use crate::guestnet;
use crate::util;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banger_api::{
    ErrorKind, ProvisionRun, ProvisionState, Request, VmDetail, VmProvisionParams, VmState,
};
use guestnet::GuestNet;
use util::{Fixtures, TestDaemon};

struct Setup {
    net: GuestNet,
    d: TestDaemon,
    _fx: Fixtures,
}

fn setup(test: &str) -> Option<Setup> {
    let fx = Fixtures::new(test)?;
    let net = GuestNet::new(test)?;
    net.enter_host();
    let home = net.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let keys = format!(
        "{}\n[vm]\nimage = \"base\"\ndefault_name = \"main\"\n",
        net.guest_toml(&net.dir.path().join("guest-work"), "ssh")
    );
    let home = home.display().to_string();
    let d = TestDaemon::start_with(&[("HOME", home.as_str())], &keys);
    d.register_image(&fx, "base");
    Some(Setup { net, d, _fx: fx })
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn shell_cp_logs_delete_and_quiet() {
    let Some(s) = setup("verbs_shell_cp_logs_delete_and_quiet") else {
        return;
    };
    let d = &s.d;
    // `shell` with no name creates the default VM (`vm.default_name`) from
    // the default image, then runs the command; its exit code is banger's.
    let out = d.cli(&["shell", "--", "echo", "hello-from-main"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "hello-from-main");
    assert!(text(&out.stderr).contains("creating the default VM main"));
    assert_eq!(d.vm("main").unwrap().state, VmState::Running);
    let out = d.cli(&["shell", "main", "--", "sh", "-c", "'exit 7'"]);
    assert_eq!(code(&out), 7, "{}", text(&out.stderr));
    // A stopped VM is started first.
    d.cli_ok(&["vm", "stop", "main"]);
    let out = d.cli(&["shell", "--", "true"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert_eq!(d.vm("main").unwrap().state, VmState::Running);
    // A named VM that does not exist is not created.
    let out = d.cli(&["shell", "nosuch", "--", "true"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));

    // vm cp: a directory into the guest and back, through ssh.
    let root = s.net.dir.path();
    let src = root.join("project");
    std::fs::create_dir_all(src.join("sub dir")).unwrap();
    std::fs::write(src.join("sub dir/notes.txt"), "notes\n").unwrap();
    let guest = root.join("guest-side");
    std::fs::create_dir_all(&guest).unwrap();
    let g = |p: &Path| format!("main:{}", p.display());
    d.cli_ok(&["vm", "cp", src.to_str().unwrap(), &g(&guest)]);
    assert_eq!(
        std::fs::read_to_string(guest.join("project/sub dir/notes.txt")).unwrap(),
        "notes\n"
    );
    let back = root.join("back");
    d.cli_ok(&[
        "vm",
        "cp",
        "-r",
        &g(&guest.join("project")),
        back.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(back.join("sub dir/notes.txt")).unwrap(),
        "notes\n"
    );
    let out = d.cli(&["vm", "cp", &g(&root.join("none")), back.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));

    // vm logs -f prints lines appended to the console log.
    let detail: VmDetail = d.cli_json(&["vm", "show", "main"]);
    let mut follow = Command::new(util::bin("banger"))
        .arg("--state-dir")
        .arg(d.state_dir())
        .arg("--config")
        .arg(d.dir.path().join("config.toml"))
        .args(["vm", "logs", "-f", "-n", "1", "main"])
        .env("HOME", root.join("home"))
        .env_remove("XDG_RUNTIME_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&detail.paths.console_log)
            .unwrap();
        writeln!(f, "followed-line-42").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = false;
    while Instant::now() < deadline && !seen {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen = l == "followed-line-42";
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(seen, "vm logs -f did not print the appended line");

    // -q prints names only; __complete lists them.
    let out = d.cli_ok(&["-q", "vm", "create", "a", "--no-start"]);
    assert_eq!(out, "a\n");
    d.cli_ok(&["-q", "vm", "create", "c", "--no-start"]);
    assert_eq!(d.cli_ok(&["-q", "vm", "list"]), "a\nc\nmain\n");
    assert_eq!(d.cli_ok(&["__complete", "vms"]), "a\nc\nmain\n");
    assert_eq!(d.cli_ok(&["__complete", "images"]), "base\n");

    // Several names: a missing one fails, the others are deleted.
    let out = d.cli(&["vm", "delete", "a", "missing", "c"]);
    assert_eq!(code(&out), 3, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("missing"),
        "{}",
        text(&out.stderr)
    );
    assert!(d.vm("a").is_err() && d.vm("c").is_err(), "a and c deleted");
    d.cli_ok(&["vm", "delete", "--force", "main"]);
}

#[test]
fn provisioning_records_success_and_failure() {
    let Some(s) = setup("verbs_provisioning_records_success_and_failure") else {
        return;
    };
    let d = &s.d;
    let root = s.net.dir.path();
    let marker = root.join("provisioned");
    let ok = root.join("ok.sh");
    std::fs::write(
        &ok,
        format!(
            "#!/bin/sh\necho provisioning-output\nid -un > {}\n",
            marker.display()
        ),
    )
    .unwrap();
    // A checkout for the spec's workspace.
    let repo = root.join("myrepo");
    std::fs::create_dir_all(&repo).unwrap();
    banger_testsupport::git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "hi\n").unwrap();
    banger_testsupport::git(&repo, &["add", "-A"]);
    banger_testsupport::git(&repo, &["commit", "-q", "-m", "one"]);
    // From a spec: the workspace is prepared, then the script runs as the
    // guest user once the VM is ready.
    let spec = root.join("vm.toml");
    std::fs::write(
        &spec,
        "name = \"web\"\nvcpus = 1\nworkspace = \"myrepo\"\nprovision = [\"ok.sh\"]\nforwards = [\"3000\"]\n",
    )
    .unwrap();
    let out = d.cli(&["vm", "create", "-f", spec.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("provisioning-output"),
        "output streamed: {}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap().trim(), "root");
    assert_eq!(
        std::fs::read_to_string(root.join("guest-work/myrepo/README")).unwrap(),
        "hi\n",
        "the spec's workspace was prepared"
    );
    let web: VmDetail = d.cli_json(&["vm", "show", "web"]);
    assert_eq!(web.vm.vcpus, 1);
    assert_eq!(web.provision.len(), 1);
    assert_eq!(web.provision[0].state, ProvisionState::Ok);
    assert_eq!(web.provision[0].exit_code, Some(0));
    // ... and its forward was added (a free host port on 127.0.0.1).
    assert_eq!(web.forwards.len(), 1, "{:?}", web.forwards);
    assert_eq!(web.forwards[0].guest_port, 3000);
    assert!(web.forwards[0].listening);
    assert!(
        text(&out.stderr).contains("forwarding 127.0.0.1:"),
        "{}",
        text(&out.stderr)
    );

    // A failing script: non-zero exit, what to do, the VM still running,
    // the record says failed with its exit code.
    let bad = root.join("bad.sh");
    std::fs::write(&bad, "echo about-to-fail\nexit 5\n").unwrap();
    let out = d.cli(&["vm", "create", "api", "--provision", bad.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("provisioning api failed"), "{err}");
    assert!(err.contains("exited with 5"), "{err}");
    let api: VmDetail = d.cli_json(&["vm", "show", "api"]);
    assert_eq!(api.vm.state, VmState::Running);
    assert_eq!(api.provision[0].state, ProvisionState::Failed);
    assert_eq!(api.provision[0].exit_code, Some(5));
    let shown = d.cli_ok(&["vm", "show", "api"]);
    assert!(shown.contains("failed (exit 5"), "{shown}");

    // The daemon bounds what a client may record, changing nothing.
    let run = api.provision[0].clone();
    let err = d
        .client()
        .call::<Vec<ProvisionRun>>(Request::VmProvisionRecord(VmProvisionParams {
            vm: "api".into(),
            runs: vec![run; 65],
        }))
        .unwrap_err();
    assert_eq!(
        err.rpc().map(|e| e.kind),
        Some(ErrorKind::InvalidArgument),
        "{err}"
    );
    let again: VmDetail = d.cli_json(&["vm", "show", "api"]);
    assert_eq!(again.provision, api.provision);
    d.cli_ok(&["vm", "delete", "--force", "web", "api"]);
}
