//! The agent built with a static C runtime (`make guest-agent`) needs no
//! dynamic loader and runs. Uses the `make guest-agent` output when it is
//! there, otherwise builds it into `<target>/guest-static-test`.

mod common;

use std::process::Command;

use common::static_agent;

#[test]
fn the_static_agent_has_no_interpreter_and_runs() {
    const T: &str = "the_static_agent_has_no_interpreter_and_runs";
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        banger_testsupport::skip!(T, "the agent is built for x86_64 Linux");
    }
    let path = match static_agent() {
        Ok(p) => p,
        Err(e) => banger_testsupport::skip!(T, "{e}"),
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
