//! The agent built with a static C runtime (`make guest-agent`) needs no
//! dynamic loader and runs. Uses the `make guest-agent` output when it is
//! there, otherwise builds it into `<target>/guest-static-test`.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

fn static_agent() -> Result<PathBuf, String> {
    let made = target_dir().join(TRIPLE).join("release/banger-guest");
    if made.is_file() {
        return Ok(made);
    }
    // A separate target dir: the outer `cargo test` may hold the lock of ours.
    let dir = target_dir().join("guest-static-test");
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "banger-guest",
            "--target",
            TRIPLE,
        ])
        .arg("--target-dir")
        .arg(&dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build of the static agent failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ));
    }
    Ok(dir.join(TRIPLE).join("release/banger-guest"))
}

#[test]
fn the_static_agent_has_no_interpreter_and_runs() {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: the agent is built for x86_64 Linux"
        );
        return;
    }
    let path = match static_agent() {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "SKIP: {e}");
            return;
        }
    };
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        banger_guest::is_static_elf(&bytes),
        "{} needs a dynamic loader",
        path.display()
    );
    let out = Command::new(&path).arg("version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("banger-guest {}", banger_guest::proto::AGENT_VERSION)
    );
    let out = Command::new(&path).arg("bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: banger-guest"));
}
