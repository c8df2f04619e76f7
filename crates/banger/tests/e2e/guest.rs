//! Guest access and workspaces against a real OpenSSH `sshd` standing in
//! for the guest (see `guestnet/mod.rs`): readiness by SSH banner, host key
//! pinning, `vm ssh`, `vm ports`, `workspace prepare` (full and delta),
//! `workspace export`, and `vm stop` during a long prepare.

use crate::guestnet;
use crate::util;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use banger_api::VmState;
use banger_api::guest::{GuestPort, WorkspaceExported, WorkspacePrepared};
use banger_testsupport::{git, tree_snapshot};
use guestnet::GuestNet;
use util::{Fixtures, TestDaemon, tail};

/// A checkout with every awkward case of the issue.
fn awkward_repo(dir: &Path, big_mib: usize) -> PathBuf {
    let r = dir.join("myproj");
    std::fs::create_dir_all(r.join("a/b/c")).unwrap();
    git(&r, &["init", "-q", "-b", "feature"]);
    git(
        &r,
        &["remote", "add", "origin", "https://example.invalid/p.git"],
    );
    std::fs::write(r.join(".gitignore"), "*.log\nbuild/\n").unwrap();
    std::fs::write(r.join("a/b/c/deep.txt"), "deep\n").unwrap();
    std::fs::write(r.join("with space.txt"), "space\n").unwrap();
    std::fs::write(
        r.join(std::ffi::OsStr::from_bytes(b"raw-\xfe\xff.bin")),
        "raw\n",
    )
    .unwrap();
    std::fs::write(r.join("tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(r.join("tool.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("a/b/c/deep.txt", r.join("deep-link")).unwrap();
    // Incompressible (xorshift), so a compressed stream is as long as a
    // plain one and the slow-link test stays slow.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let big: Vec<u8> = (0..big_mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(r.join("big.dat"), big).unwrap();
    git(&r, &["add", "-A"]);
    git(&r, &["commit", "-q", "-m", "first"]);
    std::fs::write(r.join("a/b/c/deep.txt"), "deep, edited\n").unwrap();
    std::fs::write(r.join("untracked.txt"), "untracked\n").unwrap();
    std::fs::write(r.join("noise.log"), "ignored\n").unwrap();
    std::fs::create_dir_all(r.join("build")).unwrap();
    std::fs::write(r.join("build/out.o"), "ignored\n").unwrap();
    r
}

struct Setup {
    net: GuestNet,
    d: TestDaemon,
    work: PathBuf,
    _fx: Fixtures,
}

fn setup(test: &str, readiness: &str) -> Option<Setup> {
    let fx = Fixtures::new(test)?;
    let net = GuestNet::new(test)?;
    net.enter_host();
    let work = net.dir.path().join("guest-work");
    let d = TestDaemon::start_with(&[], &net.guest_toml(&work, readiness));
    d.register_image(&fx, "base");
    Some(Setup {
        net,
        d,
        work,
        _fx: fx,
    })
}

#[test]
fn readiness_pinning_ssh_and_ports() {
    let Some(mut s) = setup("readiness_pinning_ssh_and_ports", "ssh") else {
        return;
    };
    // Readiness by SSH banner: the VM is running only because sshd answered.
    s.d.cli_ok(&["vm", "create", "dev", "--image", "base"]);
    let vm = s.d.wait_state("dev", VmState::Running, 20);
    assert_eq!(vm.guest_ip.to_string(), "172.30.0.2");

    // banger's public key was written into the root disk before boot.
    let disk = s.d.state_dir().join(format!("vms/{}/root.ext4", vm.id));
    let keys = Command::new("debugfs")
        .args(["-R", "cat /root/.ssh/authorized_keys"])
        .arg(&disk)
        .output()
        .unwrap();
    let pubkey = std::fs::read_to_string(s.net.client_key.with_extension("pub")).unwrap();
    assert!(
        String::from_utf8_lossy(&keys.stdout).contains(pubkey.trim()),
        "authorized_keys on the root disk lacks banger's key"
    );

    // `vm ssh` execs ssh with the daemon's options; the key is learned.
    let out =
        s.d.cli_ok(&["vm", "ssh", "dev", "--", "echo", "hello-from-guest"]);
    assert_eq!(out.trim(), "hello-from-guest");
    let kh = std::fs::read_to_string(s.d.state_dir().join("ssh/known_hosts")).unwrap();
    assert!(kh.contains(&format!("banger-{}", vm.id)), "{kh}");

    // Ports: sshd listens on the test port.
    let ports: Vec<GuestPort> = s.d.cli_json(&["vm", "ports", "dev"]);
    let ssh = ports
        .iter()
        .find(|p| p.port == guestnet::SSH_PORT && p.proto == "tcp")
        .unwrap_or_else(|| panic!("{ports:?}"));
    assert_eq!(ssh.process.as_deref(), Some("sshd"));
    assert_eq!(ssh.endpoint, format!("dev.vm:{}", guestnet::SSH_PORT));

    // The include has a pinned block for the VM.
    let cfg = s.d.cli_ok(&["ssh-config", "--print"]);
    assert!(cfg.contains("Host dev.vm\n  HostName 172.30.0.2"), "{cfg}");
    assert!(cfg.contains(&format!("HostKeyAlias banger-{}", vm.id)));

    // Without --print it writes this daemon's file in ~/.ssh/config.d/ and names the Include line.
    let home = s.net.dir.path().join("user-home");
    std::fs::create_dir_all(&home).unwrap();
    let with_home = |args: &[&str]| {
        let out = s.d.cli_in_home(&home, args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let out = with_home(&["ssh-config"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Include ~/.ssh/config.d/banger"));
    assert_eq!(
        std::fs::read_to_string(util::ssh_include(&home)).unwrap(),
        cfg
    );
    // ... and ~/.ssh/config includes it, once, before any Host block.
    let main_cfg = home.join(".ssh/config");
    let text = std::fs::read_to_string(&main_cfg).unwrap();
    assert!(
        text.starts_with("Include ~/.ssh/config.d/banger*\n"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&main_cfg).unwrap().permissions().mode() & 0o777,
        0o600
    );
    with_home(&["ssh-config"]);
    assert_eq!(
        std::fs::read_to_string(&main_cfg).unwrap(),
        text,
        "no second Include"
    );
    // `vm delete`/`vm create` keep an installed include current.
    with_home(&["vm", "create", "other", "--image", "base", "--no-start"]);
    let inc = std::fs::read_to_string(util::ssh_include(&home)).unwrap();
    assert!(
        inc.contains("Host other.vm") && inc.contains("Host dev.vm"),
        "{inc}"
    );
    with_home(&["vm", "delete", "other", "--force"]);
    let inc = std::fs::read_to_string(util::ssh_include(&home)).unwrap();
    assert!(
        !inc.contains("Host other.vm") && inc.contains("Host dev.vm"),
        "{inc}"
    );

    // A different host key for the same VM is refused, clearly.
    s.net.start_sshd();
    let repo = awkward_repo(s.net.dir.path(), 1);
    let out =
        s.d.cli(&["workspace", "prepare", "dev", repo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(4), "conflict exit code");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("host key of VM dev"), "{err}");
    assert!(err.contains("ssh-keygen -R banger-"), "{err}");
    assert!(!s.work.join("myproj").exists(), "nothing was sent");

    // A recreated VM (new id) learns the new key; the old pin is dropped.
    s.d.cli_ok(&["vm", "delete", "dev", "--force"]);
    let kh = std::fs::read_to_string(s.d.state_dir().join("ssh/known_hosts")).unwrap();
    assert!(!kh.contains(&format!("banger-{}", vm.id)), "{kh}");
    s.d.cli_ok(&["vm", "create", "dev", "--image", "base"]);
    s.d.wait_state("dev", VmState::Running, 20);
    s.d.cli_ok(&["workspace", "prepare", "dev", repo.to_str().unwrap()]);
    assert!(s.work.join("myproj/big.dat").exists());
}

#[test]
fn readiness_timeout_leaves_error_with_console_lines() {
    let Some(s) = setup("readiness_timeout_leaves_error_with_console_lines", "ssh") else {
        return;
    };
    drop(s.net); // no sshd, no namespace route: nothing answers
    let out = s.d.cli(&["vm", "create", "dev", "--image", "base"]);
    assert!(!out.status.success());
    let vm = s.d.wait_state("dev", VmState::Error, 30);
    let msg = vm.last_error.unwrap_or_default();
    assert!(msg.contains("did not become reachable"), "{msg}");
    assert!(msg.contains("last console lines"), "{msg}");
}

#[test]
fn prepare_delta_and_export_round_trip() {
    let Some(s) = setup("prepare_delta_and_export_round_trip", "none") else {
        return;
    };
    s.d.cli_ok(&["vm", "create", "dev", "--image", "base"]);
    s.d.wait_state("dev", VmState::Running, 20);
    let repo = awkward_repo(s.net.dir.path(), 40);
    let first: WorkspacePrepared =
        s.d.cli_json(&["workspace", "prepare", "dev", repo.to_str().unwrap()]);
    assert!(first.full);
    let guest = s.work.join("myproj");
    assert_eq!(first.guest_dir, guest.display().to_string());

    // Same tree (ignored files excluded), same git state.
    let mut host = tree_snapshot(&repo);
    host.retain(|(p, _, _)| !p.ends_with(b".log") && !p.starts_with(b"build"));
    assert_eq!(tree_snapshot(&guest), host, "guest tree differs");
    assert!(!guest.join("noise.log").exists() && !guest.join("build").exists());
    assert_eq!(
        git(&guest, &["rev-parse", "HEAD"]),
        git(&repo, &["rev-parse", "HEAD"])
    );
    assert_eq!(
        git(&guest, &["symbolic-ref", "--short", "HEAD"]).trim(),
        "feature"
    );
    assert_eq!(
        git(&guest, &["status", "--porcelain"]),
        git(&repo, &["status", "--porcelain"])
    );
    assert!(git(&guest, &["remote", "-v"]).contains("https://example.invalid/p.git"));

    // Second prepare: only the delta.
    std::fs::write(repo.join("with space.txt"), "space, edited\n").unwrap();
    std::fs::remove_file(repo.join("untracked.txt")).unwrap();
    let second: WorkspacePrepared =
        s.d.cli_json(&["workspace", "prepare", "dev", repo.to_str().unwrap()]);
    assert!(!second.full);
    assert_eq!(
        (second.files_sent, second.files_deleted),
        (1, 1),
        "{second:?}"
    );
    assert!(second.bytes_sent < 1024, "{second:?}");
    assert_eq!(
        std::fs::read(guest.join("with space.txt")).unwrap(),
        b"space, edited\n"
    );
    assert!(!guest.join("untracked.txt").exists());

    // Changed and deleted inside the guest: the next prepare restores
    // both (the guest lists its own copy over ssh); --trust-guest would not.
    std::fs::write(
        guest.join("a/b/c/deep.txt"),
        "guest edit
",
    )
    .unwrap();
    std::fs::remove_file(guest.join("tool.sh")).unwrap();
    let trusted: WorkspacePrepared = s.d.cli_json(&[
        "workspace",
        "prepare",
        "dev",
        repo.to_str().unwrap(),
        "--trust-guest",
    ]);
    assert_eq!((trusted.files_sent, trusted.guest_changed), (0, 0));
    assert!(!guest.join("tool.sh").exists());
    let third: WorkspacePrepared =
        s.d.cli_json(&["workspace", "prepare", "dev", repo.to_str().unwrap()]);
    assert_eq!((third.files_sent, third.guest_changed), (2, 2), "{third:?}");
    assert_eq!(tree_snapshot(&guest), {
        let mut host = tree_snapshot(&repo);
        host.retain(|(p, _, _)| !p.ends_with(b".log") && !p.starts_with(b"build"));
        host
    });

    // Work in the guest: a commit and an uncommitted edit.
    std::fs::write(guest.join("from-guest.txt"), "new\n").unwrap();
    git(&guest, &["add", "from-guest.txt"]);
    git(&guest, &["commit", "-q", "-m", "guest work"]);
    std::fs::write(guest.join("tool.sh"), "#!/bin/sh\necho edited\n").unwrap();

    let before = tree_snapshot(&repo);
    let head_before = std::fs::read(repo.join(".git/HEAD")).unwrap();
    let index_before = std::fs::read(repo.join(".git/index")).unwrap();
    let out: WorkspaceExported = s.d.cli_json(&[
        "workspace",
        "export",
        "dev",
        "--path",
        repo.to_str().unwrap(),
    ]);
    assert!(out.changed);
    assert_eq!(out.branch.as_deref(), Some("banger/dev"));
    assert_eq!(tree_snapshot(&repo), before, "host working tree changed");
    assert_eq!(std::fs::read(repo.join(".git/HEAD")).unwrap(), head_before);
    assert_eq!(
        std::fs::read(repo.join(".git/index")).unwrap(),
        index_before
    );
    let log = git(&repo, &["log", "--format=%s", "-3", "banger/dev"]);
    assert_eq!(
        log,
        "banger: uncommitted changes from dev\nguest work\nfirst\n"
    );
    assert_eq!(
        git(&repo, &["show", "banger/dev:tool.sh"]),
        "#!/bin/sh\necho edited\n"
    );

    // Patch mode writes a series; the checked-out branch is refused.
    let patch = s.net.dir.path().join("out.patch");
    s.d.cli_ok(&[
        "workspace",
        "export",
        "dev",
        "--path",
        repo.to_str().unwrap(),
        "--patch",
        patch.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read_to_string(&patch)
            .unwrap()
            .contains("Subject: [PATCH 1/2] guest work")
    );
    let refused = s.d.cli(&[
        "workspace",
        "export",
        "dev",
        "--path",
        repo.to_str().unwrap(),
        "--branch",
        "feature",
    ]);
    assert_eq!(refused.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("checked out"));
}

#[test]
fn vm_stop_does_not_wait_for_a_long_prepare() {
    let Some(s) = setup("vm_stop_does_not_wait_for_a_long_prepare", "none") else {
        return;
    };
    s.d.cli_ok(&["vm", "create", "dev", "--image", "base"]);
    s.d.wait_state("dev", VmState::Running, 20);
    // 20 MiB through a 16 Mbit/s link: the import takes ~10 s.
    let repo = awkward_repo(s.net.dir.path(), 20);
    assert!(
        s.net.limit_rate("16mbit"),
        "tc tbf is needed for a slow link"
    );
    let d = &s.d;
    std::thread::scope(|scope| {
        let prepare =
            scope.spawn(|| d.cli(&["workspace", "prepare", "dev", repo.to_str().unwrap()]));
        // Wait until the guest phase began (the import script made the dir).
        while !s.work.join("myproj").exists() {
            assert!(!prepare.is_finished(), "prepare ended early");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        d.cli_ok(&["vm", "stop", "dev"]);
        assert!(
            !prepare.is_finished(),
            "vm stop waited for the prepare; daemon log:\n{}",
            tail(&d.log(), 20)
        );
        assert_eq!(d.vm("dev").unwrap().state, VmState::Stopped);
        let _ = prepare.join();
    });
}

/// The e2e modules share one process, and with `--test-threads=1` a test
/// runs on the harness's main thread: the namespace `enter_host` moved the
/// thread into is left again when the guest network is dropped.
#[test]
fn guestnet_puts_the_thread_back_in_its_namespace() {
    fn netns() -> std::fs::Metadata {
        std::fs::metadata("/proc/thread-self/ns/net").unwrap()
    }
    use std::os::unix::fs::MetadataExt;
    let Some(net) = GuestNet::new("guestnet_puts_the_thread_back_in_its_namespace") else {
        return;
    };
    let before = netns().ino();
    net.enter_host();
    assert_ne!(netns().ino(), before, "enter_host moves the thread");
    drop(net);
    assert_eq!(
        netns().ino(),
        before,
        "dropping the guest network moves it back"
    );
}
