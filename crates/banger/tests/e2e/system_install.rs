//! `banger system install|uninstall --root DIR`: the files of the system
//! path, the units' validity (`systemd-analyze verify`) and an uninstall
//! that leaves the prefix exactly as it was.

use crate::util;

use banger_testsupport::skip;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use util::bin;

fn banger(args: &[&str]) -> Output {
    // `system install --root` touches nothing of the caller's: a HOME
    // that does not exist makes any attempt fail loudly.
    Command::new(bin("banger"))
        .args(args)
        .env("HOME", "/nonexistent/banger-test-home")
        .env_remove("XDG_CONFIG_HOME")
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// `banger system install --root ROOT --owner OWNER --from DIR`, where DIR
/// holds this build's CLI and daemons and a stand-in guest agent (a
/// `--root` install copies it and never runs it; `make build` builds the
/// real one, which `cargo test` need not have built).
fn install(root: &str, owner: &str) -> Output {
    let bins = tempfile::tempdir().unwrap();
    for b in ["banger", "bangerd", "bangerd-root"] {
        std::os::unix::fs::symlink(bin(b), bins.path().join(b)).unwrap();
    }
    std::fs::write(bins.path().join("banger-guest"), "#!/bin/true\n").unwrap();
    banger(&[
        "system",
        "install",
        "--root",
        root,
        "--owner",
        owner,
        "--from",
        bins.path().to_str().unwrap(),
    ])
}

fn installed(root: &str, owner: &str) -> String {
    stdout_of("banger system install", install(root, owner))
}

fn ok(args: &[&str]) -> String {
    stdout_of(&format!("banger {args:?}"), banger(args))
}

/// `out`'s stdout, after asserting that `what` succeeded.
fn stdout_of(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every entry under `root`: type, mode, owner and content.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (String, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = p.symlink_metadata().unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let (kind, content) = if m.is_dir() {
                stack.push(p.clone());
                ("dir", Vec::new())
            } else if m.file_type().is_symlink() {
                (
                    "link",
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                )
            } else {
                ("file", std::fs::read(&p).unwrap())
            };
            out.insert(rel, (kind.to_string(), m.mode(), m.uid(), content));
        }
    }
    out
}

fn prefix_with_content() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("etc/systemd")).unwrap();
    std::fs::write(t.path().join("etc/hostname"), "host\n").unwrap();
    std::fs::create_dir_all(t.path().join("usr/local/bin")).unwrap();
    std::fs::write(t.path().join("usr/local/bin/other"), "#!/bin/true\n").unwrap();
    std::os::unix::fs::symlink("hostname", t.path().join("etc/alias")).unwrap();
    t
}

#[test]
fn install_then_uninstall_leaves_the_prefix_as_it_was() {
    let t = prefix_with_content();
    let root = t.path().to_str().unwrap();
    let before = snapshot(t.path());
    let out = installed(root, "nobody");
    assert!(out.contains("units not enabled"), "{out}");
    assert!(
        out.contains("installed banger, bangerd, bangerd-root, banger-guest into /usr/local/bin"),
        "{out}"
    );
    for f in [
        "etc/systemd/system/bangerd.service",
        "etc/systemd/system/bangerd-root.service",
        "etc/banger/install.toml",
        "etc/banger/config.toml",
        "usr/local/bin/bangerd-root",
        "usr/local/bin/bangerd",
        "usr/local/bin/banger",
        "usr/local/bin/banger-guest",
    ] {
        assert!(t.path().join(f).is_file(), "{f}");
    }
    assert!(t.path().join("var/lib/banger").is_dir());
    let daemon =
        std::fs::read_to_string(t.path().join("etc/systemd/system/bangerd.service")).unwrap();
    assert!(
        daemon.contains("User=nobody")
            && daemon.contains("CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n")
    );
    let helper =
        std::fs::read_to_string(t.path().join("etc/systemd/system/bangerd-root.service")).unwrap();
    assert!(helper.contains("CAP_NET_ADMIN") && helper.contains("NoNewPrivileges=yes"));
    assert!(!helper.contains("User="), "the helper runs as root");
    for unit in [&daemon, &helper] {
        assert!(unit.contains("\nLimitNOFILE=65536\n"), "{unit}");
        assert!(
            unit.contains("\nType=notify\nNotifyAccess=main\n"),
            "{unit}"
        );
    }
    // Installing twice is fine and still uninstalls cleanly.
    installed(root, "nobody");
    ok(&["system", "uninstall", "--root", root]);
    assert_eq!(snapshot(t.path()), before, "uninstall restores the prefix");

    // State is kept without --purge, removed with it.
    installed(root, "nobody");
    std::fs::write(t.path().join("var/lib/banger/banger.db"), "x").unwrap();
    let out = ok(&["system", "uninstall", "--root", root]);
    assert!(out.contains("kept /var/lib/banger"), "{out}");
    assert!(t.path().join("var/lib/banger/banger.db").exists());
    std::fs::remove_dir_all(t.path().join("var")).unwrap();
    installed(root, "nobody");
    std::fs::write(t.path().join("var/lib/banger/banger.db"), "x").unwrap();
    ok(&["system", "uninstall", "--root", root, "--purge"]);
    assert_eq!(snapshot(t.path()), before, "purge removes the state too");
}

#[test]
fn install_refuses_bad_owners_and_changes_nothing() {
    let t = prefix_with_content();
    let root = t.path().to_str().unwrap();
    let before = snapshot(t.path());
    for owner in ["root", "no-such-user-banger"] {
        let out = install(root, owner);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--owner"), "{err}");
    }
    let out = banger(&["system", "uninstall", "--root", root]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to uninstall"));
    assert_eq!(snapshot(t.path()), before);
}

#[test]
fn generated_units_pass_systemd_analyze_verify() {
    const T: &str = "generated_units_pass_systemd_analyze_verify";
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip!(
            T,
            "systemd-analyze is not installed (apt-get install systemd)"
        );
    }
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_str().unwrap();
    installed(root, "nobody");
    // Point ExecStart at the installed copies inside the prefix, so verify
    // can check they are executable; everything else is as generated.
    let v = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for u in ["bangerd-root.service", "bangerd.service"] {
        let text = std::fs::read_to_string(t.path().join("etc/systemd/system").join(u)).unwrap();
        let text = text.replace("/usr/local/bin/", &format!("{root}/usr/local/bin/"));
        std::fs::write(v.path().join(u), text).unwrap();
        units.push(v.path().join(u));
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A broken unit is caught (the check can fail).
    std::fs::write(
        v.path().join("bangerd.service"),
        "[Service]\nExecStart=relative-path\nNoNewPrivileges=perhaps\n",
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(v.path().join("bangerd.service"))
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn status_says_when_systemd_cannot_be_asked() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().to_str().unwrap();
    installed(root, "nobody");
    let out = banger(&["system", "status", "--root", root]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bangerd-root.service") && text.contains("helper socket"),
        "{text}"
    );
    if !Path::new("/run/systemd/system").is_dir() {
        assert!(
            text.contains("not running as PID 1") || text.contains("not installed"),
            "{text}"
        );
        assert!(!out.status.success());
    }
}
