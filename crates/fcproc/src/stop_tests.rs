use std::process::{Child, Command};

use super::*;
use crate::signal::{Signal, send_signal};
use crate::test_support::{FakeApi, Reply};

fn spawn_sleep() -> Child {
    Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep")
}

fn is_ctrl_alt_del(body: &[u8]) -> bool {
    body == br#"{"action_type":"SendCtrlAltDel"}"#
}

#[tokio::test]
async fn exits_after_ctrl_alt_del() {
    let mut child = spawn_sleep();
    let pid = child.id();
    // The fake VMM "shuts down" when it receives Ctrl-Alt-Del.
    let api = FakeApi::start(move |request| {
        if request.path == "/actions" && is_ctrl_alt_del(&request.body) {
            send_signal(pid, Signal::SIGTERM).expect("terminate fake vmm");
        }
        Reply::no_content()
    });
    let client = FirecrackerClient::new(&api.socket);
    let outcome = graceful_shutdown(&client, pid, Duration::from_secs(10))
        .await
        .expect("shutdown");
    assert_eq!(outcome, StopOutcome::Exited);
    assert!(!outcome.needs_kill());
    assert_eq!(api.recorded().len(), 1);
    child.wait().expect("reap");
}

#[tokio::test]
async fn times_out_when_the_guest_ignores_it() {
    let mut child = spawn_sleep();
    let api = FakeApi::start(|_| Reply::no_content());
    let client = FirecrackerClient::new(&api.socket);
    let started = std::time::Instant::now();
    let outcome = graceful_shutdown(&client, child.id(), Duration::from_millis(200))
        .await
        .expect("shutdown");
    assert_eq!(outcome, StopOutcome::TimedOut);
    assert!(outcome.needs_kill());
    assert!(started.elapsed() >= Duration::from_millis(200));
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn a_slow_api_counts_against_the_same_timeout() {
    let mut child = spawn_sleep();
    let api = FakeApi::start(|_| Reply::no_content().after(Duration::from_secs(5)));
    let client = FirecrackerClient::new(&api.socket);
    let started = std::time::Instant::now();
    let outcome = graceful_shutdown(&client, child.id(), Duration::from_millis(200))
        .await
        .expect("shutdown");
    assert_eq!(outcome, StopOutcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(3));
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn already_gone_sends_nothing() {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    crate::exit::wait_exit(pid).await.expect("wait"); // a zombie now
    let api = FakeApi::start(|_| Reply::no_content());
    let client = FirecrackerClient::new(&api.socket);
    let outcome = graceful_shutdown(&client, pid, Duration::from_secs(1))
        .await
        .expect("shutdown");
    assert_eq!(outcome, StopOutcome::AlreadyGone);
    assert!(api.recorded().is_empty());
    child.wait().expect("reap");
}

#[tokio::test]
async fn a_refused_request_with_a_live_process_is_an_error() {
    let mut child = spawn_sleep();
    let api = FakeApi::start(|_| {
        Reply::fault("The requested operation is not supported before starting the microVM.")
    });
    let client = FirecrackerClient::new(&api.socket);
    let err = graceful_shutdown(&client, child.id(), Duration::from_secs(1))
        .await
        .expect_err("refused");
    match err {
        StopError::Request { pid, source } => {
            assert_eq!(pid, child.id());
            assert!(source.fault_message().is_some(), "{source:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn a_vmm_dying_under_the_call_counts_as_exited() {
    let mut child = spawn_sleep();
    let pid = child.id();
    // The API answers with an error after the process is dead, as if the socket broke.
    let api = FakeApi::start(move |_| {
        send_signal(pid, Signal::SIGKILL).expect("kill fake vmm");
        std::thread::sleep(Duration::from_millis(100));
        Reply::json(500, "gone")
    });
    let client = FirecrackerClient::new(&api.socket);
    let outcome = graceful_shutdown(&client, pid, Duration::from_secs(5))
        .await
        .expect("shutdown");
    assert_eq!(outcome, StopOutcome::Exited);
    child.wait().expect("reap");
}

/// A timeout too large for the clock is clamped, not a panic.
#[tokio::test]
async fn a_huge_timeout_does_not_overflow() {
    let mut child = spawn_sleep();
    let pid = child.id();
    let api = FakeApi::start(move |request| {
        if request.path == "/actions" && is_ctrl_alt_del(&request.body) {
            send_signal(pid, Signal::SIGTERM).expect("terminate fake vmm");
        }
        Reply::no_content()
    });
    let client = FirecrackerClient::new(&api.socket);
    let outcome = graceful_shutdown(&client, pid, Duration::from_secs(u64::MAX))
        .await
        .expect("shutdown");
    assert_eq!(outcome, StopOutcome::Exited);
    child.wait().expect("reap");
}
