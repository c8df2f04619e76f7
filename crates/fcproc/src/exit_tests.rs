use std::fs;
use std::process::Command;
use std::time::Instant;

use tempfile::TempDir;

use super::*;

fn spawn_sleep(secs: &str) -> std::process::Child {
    Command::new("sleep")
        .arg(secs)
        .spawn()
        .expect("spawn sleep")
}

#[tokio::test]
async fn waits_for_a_child_to_exit() {
    let mut child = spawn_sleep("0.2");
    let started = Instant::now();
    let watcher = ExitWatcher::new(child.id()).expect("watch");
    assert!(watcher.uses_pidfd(), "{watcher:?}");
    assert!(!watcher.has_exited().expect("has_exited"));
    assert!(
        watcher
            .wait_timeout(Duration::from_secs(10))
            .await
            .expect("wait")
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert!(watcher.has_exited().expect("has_exited"));
    // Waiting again returns at once.
    assert!(
        watcher
            .wait_timeout(Duration::from_millis(10))
            .await
            .expect("wait again")
    );
    child.wait().expect("reap");
}

#[tokio::test]
async fn times_out_on_a_running_process() {
    let mut child = spawn_sleep("30");
    let exited = wait_exit_timeout(child.id(), Duration::from_millis(100))
        .await
        .expect("wait");
    assert!(!exited);
    child.kill().expect("kill");
    child.wait().expect("reap");
}

#[tokio::test]
async fn an_unreaped_zombie_counts_as_exited() {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    wait_exit(pid).await.expect("wait");
    assert!(!ProcFs::host().is_alive(pid).expect("is_alive"));
    assert!(
        ExitWatcher::new(pid)
            .expect("watch")
            .has_exited()
            .expect("has_exited")
    );
    child.wait().expect("reap");
}

#[tokio::test]
async fn an_already_reaped_pid_returns_at_once() {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    child.wait().expect("reap");
    let watcher = ExitWatcher::new(pid).expect("watch");
    assert!(watcher.has_exited().expect("has_exited"));
    assert!(
        watcher
            .wait_timeout(Duration::from_millis(100))
            .await
            .expect("wait")
    );
}

#[tokio::test]
async fn invalid_pids_are_rejected() {
    assert!(matches!(
        ExitWatcher::new(0),
        Err(ExitError::InvalidPid { pid: 0 })
    ));
    assert!(matches!(
        wait_exit(u32::MAX).await,
        Err(ExitError::InvalidPid { .. })
    ));
}

#[tokio::test]
async fn polling_fallback_sees_a_fake_process_die() {
    let root = TempDir::new().expect("tempdir");
    let dir = root.path().join("77");
    fs::create_dir(&dir).expect("mkdir");
    let stat =
        |state: char| format!("77 (fc) {state} 1 1 1 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0 99 0 0\n");
    fs::write(dir.join("stat"), stat('S')).expect("write stat");
    let watcher = ExitWatcher::polling(77, ProcFs::new(root.path()));
    assert!(!watcher.uses_pidfd());
    assert!(!watcher.has_exited().expect("has_exited"));
    assert!(
        !watcher
            .wait_timeout(Duration::from_millis(150))
            .await
            .expect("still running")
    );

    let stat_path = dir.join("stat");
    let zombie = stat('Z');
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        fs::write(stat_path, zombie).expect("rewrite stat");
    });
    assert!(
        watcher
            .wait_timeout(Duration::from_secs(5))
            .await
            .expect("wait")
    );
}
