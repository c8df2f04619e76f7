use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use banger_fcapi::{
    BootSource, Drive, InstanceState, LogLevel, Logger, MachineConfiguration, Metrics,
    NetworkInterface, Vsock,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

use super::*;
use crate::test_support::{FakeApi, Reply};

const FC_NO_CONTENT: &str =
    "HTTP/1.1 204 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n";

fn fc_ok_json(body: &str) -> String {
    format!(
        "HTTP/1.1 200 \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn put_sends_json_with_exact_headers_and_accepts_204() {
    let api = FakeApi::start(|_| Reply::no_content());
    let client = FirecrackerClient::new(&api.socket);
    let config = MachineConfiguration::new(2, 256);
    client.put_machine_config(&config).await.expect("put");

    let recorded = api.recorded();
    assert_eq!(recorded.len(), 1);
    let request = &recorded[0];
    assert_eq!(request.method, Method::PUT);
    assert_eq!(request.path, "/machine-config");
    assert_eq!(request.headers[HOST], "localhost");
    assert_eq!(request.headers[CONTENT_TYPE], "application/json");
    assert_eq!(request.headers[ACCEPT], "application/json");
    assert_eq!(
        request.headers[CONTENT_LENGTH],
        request.body.len().to_string().as_str()
    );
    assert!(request.headers.get("transfer-encoding").is_none());
    let sent: MachineConfiguration = serde_json::from_slice(&request.body).expect("json body");
    assert_eq!(sent, config);
}

#[tokio::test]
async fn typed_helpers_use_the_right_paths() {
    let api = FakeApi::start(|_| Reply::no_content());
    let client = FirecrackerClient::new(&api.socket);
    let boot = BootSource::new("/k/vmlinux").with_boot_args("console=ttyS0");
    let drive = Drive::new("rootfs", "/img/root.ext4", true);
    let iface = NetworkInterface::new("eth0", "tap0");
    let vsock = Vsock::new(3, "/run/v.sock");
    let logger = Logger::to_file("/run/fc.log", LogLevel::Info);
    let metrics = Metrics::new("/run/fc.metrics");
    client.put_boot_source(&boot).await.expect("boot");
    client.put_drive(&drive).await.expect("drive");
    client.put_network_interface(&iface).await.expect("net");
    client.put_vsock(&vsock).await.expect("vsock");
    client.put_logger(&logger).await.expect("logger");
    client.put_metrics(&metrics).await.expect("metrics");
    client
        .patch("/vm", &json!({"state": "Paused"}))
        .await
        .expect("patch");
    client.instance_start().await.expect("start");
    client.send_ctrl_alt_del().await.expect("cad");
    client.flush_metrics().await.expect("flush");

    let seen: Vec<(Method, String, Value)> = api
        .recorded()
        .into_iter()
        .map(|r| {
            let body = serde_json::from_slice(&r.body).expect("json");
            (r.method, r.path, body)
        })
        .collect();
    let action = |name: &str| {
        (
            Method::PUT,
            "/actions".to_owned(),
            json!({"action_type": name}),
        )
    };
    let put = |path: &str, body: &dyn erased::Json| (Method::PUT, path.to_owned(), body.value());
    assert_eq!(
        seen,
        vec![
            put("/boot-source", &boot),
            put("/drives/rootfs", &drive),
            put("/network-interfaces/eth0", &iface),
            put("/vsock", &vsock),
            put("/logger", &logger),
            put("/metrics", &metrics),
            (Method::PATCH, "/vm".to_owned(), json!({"state": "Paused"})),
            action("InstanceStart"),
            action("SendCtrlAltDel"),
            action("FlushMetrics"),
        ]
    );
    // All of it over one connection.
    assert_eq!(api.connection_count(), 1);
}

#[tokio::test]
async fn fault_message_becomes_a_fault_error() {
    let api = FakeApi::start(|_| Reply::fault("A root block device already exists!"));
    let client = FirecrackerClient::new(&api.socket);
    let err = client
        .put_drive(&Drive::new("rootfs", "/img", true))
        .await
        .expect_err("fault");
    match &err {
        FcClientError::Fault {
            method,
            path,
            status,
            message,
        } => {
            assert_eq!(*method, Method::PUT);
            assert_eq!(path, "/drives/rootfs");
            assert_eq!(*status, 400);
            assert_eq!(message, "A root block device already exists!");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.fault_message(),
        Some("A root block device already exists!")
    );
    assert!(err.to_string().contains("root block device"), "{err}");
}

#[tokio::test]
async fn get_decodes_200_json_without_sending_a_body() {
    let api = FakeApi::start(|request| match request.path.as_str() {
        "/" => Reply::json(
            200,
            r#"{"id":"vm1","state":"Not started","vmm_version":"1.17.0-dev","app_name":"Firecracker"}"#,
        ),
        "/version" => Reply::json(200, r#"{"firecracker_version":"1.17.0-dev"}"#),
        _ => Reply::fault("Invalid request method and/or path"),
    });
    let client = FirecrackerClient::new(&api.socket);
    let info = client.instance_info().await.expect("info");
    assert_eq!(info.state, InstanceState::NotStarted);
    assert_eq!(info.id, "vm1");
    let version = client.version().await.expect("version");
    assert_eq!(version.firecracker_version, "1.17.0-dev");

    let request = &api.recorded()[0];
    assert_eq!(request.method, Method::GET);
    assert!(request.body.is_empty());
    assert!(request.headers.get(CONTENT_TYPE).is_none());
    assert_eq!(request.headers[HOST], "localhost");
}

#[tokio::test]
async fn other_statuses_and_bad_json_are_distinct_errors() {
    let api = FakeApi::start(|request| match request.path.as_str() {
        "/broken" => Reply::json(500, "internal oops"),
        _ => Reply::json(200, "not json"),
    });
    let client = FirecrackerClient::new(&api.socket);
    let err = client.put("/broken", &json!({})).await.expect_err("500");
    assert!(
        matches!(&err, FcClientError::UnexpectedStatus { status: 500, body, .. } if body == "internal oops"),
        "{err:?}"
    );
    let err = client.get::<Value>("/").await.expect_err("bad json");
    assert!(matches!(err, FcClientError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn invalid_ids_and_paths_are_refused_before_sending() {
    let api = FakeApi::start(|_| Reply::no_content());
    let client = FirecrackerClient::new(&api.socket);
    let err = client
        .put_drive(&Drive::new("root-fs", "/img", true))
        .await
        .expect_err("dash");
    assert!(matches!(
        err,
        FcClientError::InvalidResourceId { kind: "drive", .. }
    ));
    let err = client
        .put_network_interface(&NetworkInterface::new("eth0/../x y", "tap0"))
        .await
        .expect_err("slash");
    assert!(matches!(err, FcClientError::InvalidResourceId { .. }));
    let err = client.put("/a b", &json!({})).await.expect_err("space");
    assert!(matches!(err, FcClientError::InvalidPath { .. }), "{err:?}");
    assert!(api.recorded().is_empty());
}

#[tokio::test]
async fn missing_socket_is_a_connect_error() {
    let dir = TempDir::new().expect("tempdir");
    let client = FirecrackerClient::new(dir.path().join("nope.sock"));
    let err = client.get::<Value>("/").await.expect_err("connect");
    assert!(matches!(err, FcClientError::Connect { .. }), "{err:?}");
}

#[tokio::test]
async fn timeout_drops_the_connection_and_the_next_call_reconnects() {
    let api = FakeApi::start(|request| match request.path.as_str() {
        "/slow" => Reply::no_content().after(Duration::from_secs(3)),
        _ => Reply::no_content(),
    });
    let client = FirecrackerClient::new(&api.socket).with_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = client.put("/slow", &json!({})).await.expect_err("timeout");
    assert!(
        matches!(&err, FcClientError::Timeout { path, timeout, .. }
            if path == "/slow" && *timeout == Duration::from_millis(200)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    client
        .put("/fast", &json!({}))
        .await
        .expect("after timeout");
    assert_eq!(api.connection_count(), 2);
}

/// Reads one request (head and `Content-Length` body) from a raw stream.
async fn read_request(reader: &mut BufReader<tokio::net::UnixStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .map(|v| v.parse::<usize>().expect("length"))
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some((head, body))
}

#[tokio::test]
async fn speaks_firecracker_wire_format() {
    let dir = TempDir::new().expect("tempdir");
    let socket = dir.path().join("api.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let mut reader = BufReader::new(stream);
        let (put_head, put_body) = read_request(&mut reader).await.expect("put");
        reader
            .get_mut()
            .write_all(FC_NO_CONTENT.as_bytes())
            .await
            .expect("204");
        let (get_head, get_body) = read_request(&mut reader).await.expect("get");
        let reply = fc_ok_json(r#"{"firecracker_version":"1.17.0-dev"}"#);
        reader
            .get_mut()
            .write_all(reply.as_bytes())
            .await
            .expect("200");
        (put_head, put_body, get_head, get_body)
    });

    let client = FirecrackerClient::new(&socket);
    client.instance_start().await.expect("start");
    let version = client.version().await.expect("version");
    assert_eq!(version.firecracker_version, "1.17.0-dev");

    let (put_head, put_body, get_head, get_body) = server.await.expect("server");
    let put_lower = put_head.to_ascii_lowercase();
    assert!(
        put_head.starts_with("PUT /actions HTTP/1.1\r\n"),
        "{put_head}"
    );
    assert!(put_lower.contains("\r\nhost: localhost\r\n"), "{put_head}");
    assert!(
        put_lower.contains("\r\ncontent-type: application/json\r\n"),
        "{put_head}"
    );
    assert!(put_lower.contains(&format!("\r\ncontent-length: {}\r\n", put_body.len())));
    assert!(!put_lower.contains("transfer-encoding"), "{put_head}");
    assert_eq!(put_body, br#"{"action_type":"InstanceStart"}"#);
    assert!(
        get_head.starts_with("GET /version HTTP/1.1\r\n"),
        "{get_head}"
    );
    assert!(!get_head.to_ascii_lowercase().contains("transfer-encoding"));
    assert!(get_body.is_empty());
}

#[tokio::test]
async fn retries_once_when_a_reused_connection_was_closed() {
    let dir = TempDir::new().expect("tempdir");
    let socket = dir.path().join("api.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let server = tokio::spawn(async move {
        // Connection 1: answer one request, read the next one and hang up without a reply.
        let (stream, _) = listener.accept().await.expect("accept 1");
        let mut reader = BufReader::new(stream);
        read_request(&mut reader).await.expect("first");
        reader
            .get_mut()
            .write_all(FC_NO_CONTENT.as_bytes())
            .await
            .expect("204");
        read_request(&mut reader).await.expect("second, unanswered");
        seen.fetch_add(2, Ordering::SeqCst);
        drop(reader);
        // Connection 2: answer the retried request.
        let (stream, _) = listener.accept().await.expect("accept 2");
        let mut reader = BufReader::new(stream);
        read_request(&mut reader).await.expect("retried");
        seen.fetch_add(1, Ordering::SeqCst);
        reader
            .get_mut()
            .write_all(FC_NO_CONTENT.as_bytes())
            .await
            .expect("204");
        // Connection 3 (if any): hang up at once, failing a second retry.
        let (stream, _) = listener.accept().await.expect("accept 3");
        drop(stream);
    });

    let client = FirecrackerClient::new(&socket);
    client.put("/logger", &json!({})).await.expect("first call");
    client
        .put("/metrics", &json!({}))
        .await
        .expect("retried call");
    assert_eq!(requests.load(Ordering::SeqCst), 3);

    // A fresh connection that dies without a reply is an error, not an endless retry.
    client.disconnect().await;
    let err = client.put("/vsock", &json!({})).await.expect_err("dropped");
    assert!(matches!(err, FcClientError::Transport { .. }), "{err:?}");
    server.await.expect("server");
}

#[tokio::test]
async fn reconnects_when_the_server_closes_idle_connections() {
    let dir = TempDir::new().expect("tempdir");
    let socket = dir.path().join("api.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    let server = tokio::spawn(async move {
        for _ in 0..3 {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut reader = BufReader::new(stream);
            read_request(&mut reader).await.expect("request");
            // Claims keep-alive, then closes anyway.
            reader
                .get_mut()
                .write_all(FC_NO_CONTENT.as_bytes())
                .await
                .expect("204");
        }
    });
    let client = FirecrackerClient::new(&socket).with_timeout(Duration::from_secs(5));
    for _ in 0..3 {
        client.put("/logger", &json!({})).await.expect("call");
    }
    server.await.expect("server");
}

/// Lets the test list bodies of different types side by side.
mod erased {
    pub trait Json {
        fn value(&self) -> serde_json::Value;
    }

    impl<T: serde::Serialize> Json for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).expect("serialize")
        }
    }
}

/// The snapshot calls send exactly the bodies recorded from a real Firecracker
/// (`shared/firecracker/observed.jsonl`, scenario `preboot_happy_path` seq 18, 20, 21 and
/// `ordering_preboot` seq 9), to the recorded methods and paths.
#[tokio::test]
async fn snapshot_calls_send_the_recorded_requests() {
    let api = FakeApi::start(|_| Reply::no_content());
    let client = FirecrackerClient::new(&api.socket);
    client.pause_vm().await.expect("pause");
    client
        .create_snapshot(&banger_fcapi::SnapshotCreateParams::full(
            "${TMP}/snap.vmstate",
            "${TMP}/snap.mem",
        ))
        .await
        .expect("create");
    client.resume_vm().await.expect("resume");
    client
        .load_snapshot(&banger_fcapi::SnapshotLoadParams::from_files(
            "${TMP}/none.vmstate",
            "${TMP}/none.mem",
        ))
        .await
        .expect("load");
    let seen: Vec<(Method, String, Value)> = api
        .recorded()
        .into_iter()
        .map(|r| (r.method, r.path, serde_json::from_slice(&r.body).unwrap()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Method::PATCH, "/vm".into(), json!({"state": "Paused"})),
            (
                Method::PUT,
                "/snapshot/create".into(),
                json!({"snapshot_type": "Full", "snapshot_path": "${TMP}/snap.vmstate", "mem_file_path": "${TMP}/snap.mem"})
            ),
            (Method::PATCH, "/vm".into(), json!({"state": "Resumed"})),
            (
                Method::PUT,
                "/snapshot/load".into(),
                json!({"snapshot_path": "${TMP}/none.vmstate", "mem_backend": {"backend_type": "File", "backend_path": "${TMP}/none.mem"}})
            ),
        ]
    );
}

/// A refused snapshot call surfaces Firecracker's recorded text as the fault message.
#[tokio::test]
async fn snapshot_refusal_carries_the_fault_message() {
    const TEXT: &str = "Create snapshot error: Cannot save the microVM state: Operation not allowed: save/restore unavailable while running";
    let api = FakeApi::start(|_| Reply::fault(TEXT));
    let client = FirecrackerClient::new(&api.socket);
    let err = client
        .create_snapshot(&banger_fcapi::SnapshotCreateParams::full("/s", "/m"))
        .await
        .expect_err("refused");
    assert_eq!(err.fault_message(), Some(TEXT));
}
