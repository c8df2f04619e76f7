use std::process::Command;

use tempfile::TempDir;
use tokio::net::UnixListener;

use super::*;

#[tokio::test]
async fn returns_once_the_socket_listens() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("api.sock");
    let bind_path = path.clone();
    let server = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let listener = UnixListener::bind(&bind_path).expect("bind");
        // Keep listening until the probe connects.
        listener.accept().await.expect("accept probe");
    });
    let started = std::time::Instant::now();
    // A timeout too large for the clock is clamped, not a panic.
    wait_for_socket(&path, Duration::from_secs(u64::MAX), std::process::id())
        .await
        .expect("socket ready");
    assert!(started.elapsed() >= Duration::from_millis(40));
    assert!(started.elapsed() < Duration::from_secs(4));
    server.await.expect("server task");
}

#[tokio::test]
async fn times_out_when_nothing_listens() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("api.sock");
    let started = std::time::Instant::now();
    let err = wait_for_socket(&path, Duration::from_millis(100), std::process::id())
        .await
        .expect_err("must time out");
    assert!(started.elapsed() >= Duration::from_millis(100));
    match err {
        SocketError::Timeout {
            last_error: Some(last),
            ..
        } => assert_eq!(last.kind(), io::ErrorKind::NotFound),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn fails_early_when_the_process_dies() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("api.sock");
    // A stale socket file (nobody listening) must not count as ready.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind stale"));
    let mut child = Command::new("sleep").arg("0.1").spawn().expect("spawn");
    let started = std::time::Instant::now();
    let err = wait_for_socket(&path, Duration::from_secs(20), child.id())
        .await
        .expect_err("must fail");
    assert!(
        matches!(err, SocketError::ProcessExited { pid, .. } if pid == child.id()),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    child.wait().expect("reap");
}

#[tokio::test]
async fn removes_only_stale_sockets() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("api.sock");
    assert!(!remove_stale_socket(&path).await.expect("absent"));

    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind stale"));
    assert!(path.exists());
    assert!(remove_stale_socket(&path).await.expect("stale"));
    assert!(!path.exists());

    let live = UnixListener::bind(&path).expect("bind live");
    let err = remove_stale_socket(&path).await.expect_err("in use");
    assert!(matches!(err, SocketError::InUse { .. }), "{err:?}");
    assert!(path.exists());
    drop(live);

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "data").expect("write");
    let err = remove_stale_socket(&file).await.expect_err("not a socket");
    assert!(matches!(err, SocketError::NotASocket { .. }), "{err:?}");
    assert!(file.exists());
}
