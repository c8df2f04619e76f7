//! HTTP/1.1 client for the Firecracker API socket.
//!
//! [`FirecrackerClient`] keeps one persistent connection (Firecracker answers
//! `Connection: keep-alive`) and sends calls one at a time over it, like Firecracker
//! processes them. How a call goes:
//!
//! 1. Take the connection, or connect (and handshake) if there is none or it has closed.
//! 2. Send the request with `Host`, `Accept: application/json` and, with a body,
//!    `Content-Type: application/json` and an exact `Content-Length` (Firecracker's parser
//!    does not take chunked bodies).
//! 3. If a *reused* connection turns out to be dead before any reply arrived (the peer closed
//!    it while idle), retry once on a fresh connection. A fresh connection is never retried.
//! 4. `2xx` is success (`204` for PUT/PATCH, `200` with JSON for GET); any other status is
//!    [`FcClientError::Fault`] when the body has Firecracker's `{"fault_message": ...}`, else
//!    [`FcClientError::UnexpectedStatus`].
//!
//! The whole call, connecting included, is bounded by the client's timeout. After a timeout
//! or a transport error the connection is dropped, so a late reply cannot be mistaken for the
//! answer to the next call.
//!
//! The typed helpers for each API resource (`put_drive`, `instance_start`, ...) are in
//! `resources.rs`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use hyper::http::uri::InvalidUri;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;
use tokio::sync::Mutex;

/// Default bound on one API call. Firecracker answers most calls within milliseconds;
/// snapshot creation and loading scale with guest memory and may need
/// [`FirecrackerClient::with_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an unexpected response body an error keeps.
const BODY_EXCERPT: usize = 512;

/// Errors from one Firecracker API call.
#[derive(Debug, thiserror::Error)]
pub enum FcClientError {
    /// The request path is not a valid origin-form URI.
    #[error("invalid API path {path:?}")]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// The underlying error.
        #[source]
        source: InvalidUri,
    },
    /// A resource ID would be rejected by Firecracker (it takes `[A-Za-z0-9_]+` only).
    #[error("invalid {kind} id {id:?}: only letters, digits and '_' are allowed")]
    InvalidResourceId {
        /// What the ID names (`drive`, `network interface`).
        kind: &'static str,
        /// The rejected ID.
        id: String,
    },
    /// The request body could not be serialized.
    #[error("cannot encode the body of {method} {path}")]
    Encode {
        /// The HTTP method.
        method: Method,
        /// The API path.
        path: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// The API socket refused the connection or does not exist.
    #[error("cannot connect to the Firecracker API at {}", socket.display())]
    Connect {
        /// The API socket.
        socket: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The HTTP handshake on a fresh connection failed.
    #[error("HTTP handshake with the Firecracker API at {} failed", socket.display())]
    Handshake {
        /// The API socket.
        socket: PathBuf,
        /// The underlying error.
        #[source]
        source: hyper::Error,
    },
    /// The connection failed while sending the request or reading the reply.
    #[error("{method} {path}: the connection to Firecracker failed")]
    Transport {
        /// The HTTP method.
        method: Method,
        /// The API path.
        path: String,
        /// The underlying error.
        #[source]
        source: hyper::Error,
    },
    /// No complete reply within the client's timeout.
    #[error("{method} {path}: no reply from Firecracker within {timeout:?}")]
    Timeout {
        /// The HTTP method.
        method: Method,
        /// The API path.
        path: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Firecracker rejected the call with a `fault_message`.
    #[error("{method} {path} rejected by Firecracker ({status}): {message}")]
    Fault {
        /// The HTTP method.
        method: Method,
        /// The API path.
        path: String,
        /// The HTTP status (400, or 413 for MMDS payloads).
        status: u16,
        /// Firecracker's `fault_message`.
        message: String,
    },
    /// A non-success status without a `fault_message` body.
    #[error("{method} {path}: unexpected status {status} from Firecracker: {body}")]
    UnexpectedStatus {
        /// The HTTP method.
        method: Method,
        /// The API path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The start of the response body (lossy UTF-8).
        body: String,
    },
    /// A success reply whose body is not the expected JSON.
    #[error("{method} {path}: cannot decode the reply from Firecracker")]
    Decode {
        /// The HTTP method.
        method: Method,
        /// The API path.
        path: String,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

impl FcClientError {
    /// Firecracker's `fault_message`, if the call was rejected by Firecracker itself.
    pub fn fault_message(&self) -> Option<&str> {
        match self {
            Self::Fault { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// The `{"fault_message": ...}` body of a Firecracker error reply.
#[derive(serde::Deserialize)]
struct FaultReply {
    fault_message: String,
}

type Sender = SendRequest<Full<Bytes>>;

/// A client for one Firecracker process's API socket. Calls from several tasks are
/// serialized over the one connection.
#[derive(Debug)]
pub struct FirecrackerClient {
    socket: PathBuf,
    timeout: Duration,
    /// The idle connection, if any. Taken out for the duration of a call and put back only
    /// after a complete reply.
    conn: Mutex<Option<Sender>>,
}

impl FirecrackerClient {
    /// A client for the API socket at `socket`, with [`DEFAULT_TIMEOUT`]. It connects lazily,
    /// on the first call.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
            timeout: DEFAULT_TIMEOUT,
            conn: Mutex::new(None),
        }
    }

    /// Sets the bound on each call (connecting, sending and reading the reply).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The API socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The bound on each call.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Closes the idle connection, if any; the next call reconnects.
    pub async fn disconnect(&self) {
        self.conn.lock().await.take();
    }

    /// `PUT path` with `body` as JSON; succeeds on a `2xx` reply (Firecracker sends `204`).
    pub async fn put<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), FcClientError> {
        self.send_json(Method::PUT, path, body).await
    }

    /// `PATCH path` with `body` as JSON; succeeds on a `2xx` reply (Firecracker sends `204`).
    pub async fn patch<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<(), FcClientError> {
        self.send_json(Method::PATCH, path, body).await
    }

    /// `GET path`, decoding the JSON reply as `T`.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, FcClientError> {
        let body = self.call(Method::GET, path, None).await?;
        serde_json::from_slice(&body).map_err(|source| FcClientError::Decode {
            method: Method::GET,
            path: path.to_owned(),
            source,
        })
    }

    async fn send_json<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<(), FcClientError> {
        let json = serde_json::to_vec(body).map_err(|source| FcClientError::Encode {
            method: method.clone(),
            path: path.to_owned(),
            source,
        })?;
        self.call(method, path, Some(Bytes::from(json)))
            .await
            .map(drop)
    }

    /// Runs one call under the timeout and maps the status; returns the success body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, FcClientError> {
        let uri = Uri::try_from(path).map_err(|source| FcClientError::InvalidPath {
            path: path.to_owned(),
            source,
        })?;
        let exchange = self.exchange(&method, path, &uri, body);
        let (status, reply) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_elapsed| FcClientError::Timeout {
                method: method.clone(),
                path: path.to_owned(),
                timeout: self.timeout,
            })??;
        if status.is_success() {
            return Ok(reply);
        }
        Err(status_error(method, path, status, &reply))
    }

    /// Sends one request and reads the whole reply, reconnecting as the module docs describe.
    async fn exchange(
        &self,
        method: &Method,
        path: &str,
        uri: &Uri,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), FcClientError> {
        let mut idle = self.conn.lock().await;
        let transport = |source| FcClientError::Transport {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let mut reusable = idle.take().filter(|sender| !sender.is_closed());
        loop {
            let reused = reusable.is_some();
            let mut sender = match reusable.take() {
                Some(sender) => sender,
                None => self.connect().await?,
            };
            let request = build_request(method, uri, body.clone());
            let head = async {
                sender.ready().await?;
                sender.send_request(request).await
            }
            .await;
            let response = match head {
                Ok(response) => response,
                Err(err) if reused && is_stale_connection(&err) => {
                    tracing::debug!(%method, path, %err, "API connection went stale, reconnecting");
                    continue;
                }
                Err(err) => return Err(transport(err)),
            };
            // Once the reply has started, the call was applied: never retry from here on.
            let status = response.status();
            let reply = response
                .into_body()
                .collect()
                .await
                .map_err(transport)?
                .to_bytes();
            *idle = Some(sender);
            return Ok((status, reply));
        }
    }

    async fn connect(&self) -> Result<Sender, FcClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| FcClientError::Connect {
                    socket: self.socket.clone(),
                    source,
                })?;
        let (sender, connection) =
            http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|source| FcClientError::Handshake {
                    socket: self.socket.clone(),
                    source,
                })?;
        let socket = self.socket.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(socket = %socket.display(), %err, "API connection ended");
            }
        });
        Ok(sender)
    }
}

fn build_request(method: &Method, uri: &Uri, body: Option<Bytes>) -> Request<Full<Bytes>> {
    let has_body = body.is_some();
    let body = body.unwrap_or_default();
    let length = body.len();
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri.clone();
    let headers = request.headers_mut();
    headers.insert(HOST, HeaderValue::from_static("localhost"));
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    if has_body {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    request
}

/// Whether `err` means the connection had died before the reply started: safe to retry on a
/// fresh connection because Firecracker sends its reply only after applying a call, and
/// closes a connection only when it goes away.
fn is_stale_connection(err: &hyper::Error) -> bool {
    if err.is_canceled() || err.is_closed() || err.is_incomplete_message() {
        return true;
    }
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if let Some(io_err) = cause.downcast_ref::<io::Error>() {
            return matches!(
                io_err.kind(),
                io::ErrorKind::BrokenPipe
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::NotConnected
            );
        }
        source = cause.source();
    }
    false
}

fn status_error(method: Method, path: &str, status: StatusCode, reply: &[u8]) -> FcClientError {
    match serde_json::from_slice::<FaultReply>(reply) {
        Ok(fault) => FcClientError::Fault {
            method,
            path: path.to_owned(),
            status: status.as_u16(),
            message: fault.fault_message,
        },
        Err(_) => {
            let excerpt = &reply[..reply.len().min(BODY_EXCERPT)];
            FcClientError::UnexpectedStatus {
                method,
                path: path.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(excerpt).into_owned(),
            }
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
