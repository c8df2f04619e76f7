//! The units `payload()` installs pass `systemd-analyze verify` (ExecStart
//! pointed at a real executable, everything else as shipped).

use std::process::Command;

use banger_guest::{AGENT_PATH, SeedContent, payload};

#[test]
fn payload_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        banger_testsupport::skip!(
            "payload_units_pass_systemd_analyze_verify",
            "systemd-analyze is not installed (apt-get install systemd)"
        );
    }
    let t = tempfile::tempdir().unwrap();
    let agent = t.path().join("banger-guest");
    std::fs::copy(std::env::current_exe().unwrap(), &agent).unwrap();
    let mut units = Vec::new();
    for f in payload(b"") {
        let (SeedContent::File(bytes), true) = (&f.content, f.path.ends_with(".service")) else {
            continue;
        };
        let text = String::from_utf8(bytes.clone())
            .unwrap()
            .replace(AGENT_PATH, agent.to_str().unwrap());
        let path = t.path().join(f.path.rsplit('/').next().unwrap());
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    assert_eq!(units.len(), 2, "init and serve");
    let verify = |units: &[std::path::PathBuf]| {
        Command::new("systemd-analyze")
            .arg("verify")
            .args(units)
            .output()
            .unwrap()
    };
    let out = verify(&units);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{said}"
    );
    assert!(
        !said.contains("banger-guest"),
        "warnings about our units:\n{said}"
    );
    // The check can fail: a broken unit is refused.
    std::fs::write(&units[0], "[Service]\nExecStart=relative\nType=perhaps\n").unwrap();
    assert!(!verify(&units).status.success());
}
