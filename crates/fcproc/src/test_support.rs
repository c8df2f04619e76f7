//! A tiny in-process stand-in for the Firecracker API, for this crate's unit tests.
//!
//! [`FakeApi::start`] serves HTTP/1.1 with hyper on a Unix socket in a temporary directory,
//! records every request and answers with whatever the test's handler returns.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tempfile::TempDir;
use tokio::net::UnixListener;
use tokio::task::JoinHandle;

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the fake server answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub delay: Option<Duration>,
}

impl Reply {
    pub fn no_content() -> Self {
        Self::json(204, "")
    }

    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.to_owned(),
            delay: None,
        }
    }

    pub fn fault(message: &str) -> Self {
        Self::json(
            400,
            &serde_json::json!({ "fault_message": message }).to_string(),
        )
    }

    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A running fake API server; stops when dropped.
pub struct FakeApi {
    _dir: TempDir,
    pub socket: PathBuf,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let dir = TempDir::new().expect("tempdir");
        let socket = dir.path().join("api.sock");
        let listener = UnixListener::bind(&socket).expect("bind fake api");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let task = tokio::spawn(serve(
            listener,
            handler,
            connections.clone(),
            requests.clone(),
        ));
        Self {
            _dir: dir,
            socket,
            connections,
            requests,
            task,
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests lock").clone()
    }
}

async fn serve(
    listener: UnixListener,
    handler: Handler,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Recorded>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        connections.fetch_add(1, Ordering::SeqCst);
        let handler = handler.clone();
        let requests = requests.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let handler = handler.clone();
                let requests = requests.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map(|b| b.to_bytes())
                        .unwrap_or_default();
                    let recorded = Recorded {
                        method: parts.method,
                        path: parts.uri.path().to_owned(),
                        headers: parts.headers,
                        body,
                    };
                    let reply = handler(&recorded);
                    requests.lock().expect("requests lock").push(recorded);
                    if let Some(delay) = reply.delay {
                        tokio::time::sleep(delay).await;
                    }
                    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
                    *response.status_mut() =
                        hyper::StatusCode::from_u16(reply.status).expect("status");
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
