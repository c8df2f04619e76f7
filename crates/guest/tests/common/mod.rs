//! Shared by the integration tests: the static agent.

use std::path::PathBuf;
use std::process::Command;

const TRIPLE: &str = "x86_64-unknown-linux-gnu";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// The `make guest-agent` output, or a fresh static build of it.
pub fn static_agent() -> Result<PathBuf, String> {
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
