//! The API server: HTTP/1.1 over the Unix socket, with Firecracker's quirks.
//!
//! Served with hyper, configured to look like Firecracker's `micro_http`:
//! - an empty reason phrase (`HTTP/1.1 204 `), no `Date` header, title-case
//!   headers, `Server: Firecracker API`, `Connection: keep-alive`;
//! - methods other than GET/PUT/PATCH/DELETE get a 400 whose body is not
//!   JSON (`{ "error": "Invalid HTTP Method: ..." }`) and the connection closes;
//! - bodies over `--http-api-max-payload-size` are refused;
//! - every request and outcome is logged like Firecracker's API thread does.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::fault::Fault;
use crate::log::SimLog;
use crate::route::{self, Method};
use crate::vmm::{Reply, Vmm};

/// Body micro_http sends for an unsupported method (POST, HEAD, ...).
const UNSUPPORTED_METHOD: &str = "{ \"error\": \"Invalid HTTP Method: Unsupported HTTP method.\nAll previous unanswered requests will be dropped.\" }";

/// Shared state of the API server.
pub struct ApiServer {
    vmm: Arc<Mutex<Vmm>>,
    log: Arc<SimLog>,
    max_payload: usize,
    start_delay: Option<Duration>,
}

impl ApiServer {
    /// A server for `vmm`, refusing bodies above `max_payload` bytes.
    pub fn new(vmm: Vmm, log: Arc<SimLog>, max_payload: usize) -> Self {
        Self {
            vmm: Arc::new(Mutex::new(vmm)),
            log,
            max_payload,
            start_delay: None,
        }
    }

    /// Wait `delay` before acting on InstanceStart (`--sim-start-delay-ms`).
    pub fn with_start_delay(mut self, delay: Option<Duration>) -> Self {
        self.start_delay = delay;
        self
    }

    /// Accepts connections forever, one task per connection.
    pub async fn serve(self: Arc<Self>, listener: UnixListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // E.g. out of descriptors: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let server = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.respond(request).await) }
                });
                // A broken connection only ends that connection.
                let _ = http1::Builder::new()
                    .title_case_headers(true)
                    .auto_date_header(false)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(method) = Method::parse(request.method().as_str()) else {
            self.log.error(
                "fc_api",
                "api_server",
                "Invalid HTTP Method: Unsupported HTTP method.",
            );
            return build(
                StatusCode::BAD_REQUEST,
                Some(UNSUPPORTED_METHOD.into()),
                true,
            );
        };
        let path = request.uri().path().to_string();
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        if declared > self.max_payload {
            // Approximate text: not recorded.
            let fault = Fault::bad_request(format!(
                "Request payload with size {declared} is larger than the limit of {} allowed by server.",
                self.max_payload
            ));
            return self.fault_response(&fault);
        }
        let body = match Limited::new(request.into_body(), self.max_payload)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                return self
                    .fault_response(&Fault::bad_request(format!("Invalid request body: {e}")));
            }
        };
        let body = (!body.is_empty()).then_some(&body[..]);
        self.log.info(
            "fc_api",
            "api_server",
            format!(
                "The API server received a {}.",
                describe(method, &path, body)
            ),
        );
        let call = route::parse(method, &path, body);
        if let (Some(delay), Ok(route::ApiCall::Action(banger_fcapi::ActionType::InstanceStart))) =
            (self.start_delay, &call)
        {
            tokio::time::sleep(delay).await;
        }
        let outcome = {
            let mut vmm = self.vmm.lock().unwrap_or_else(|p| p.into_inner());
            let outcome = call.and_then(|call| vmm.handle(call));
            vmm.count_request(metric_name(method), outcome.is_err());
            outcome
        };
        match outcome {
            Ok(Reply::Empty) => {
                self.log.info(
                    "fc_api",
                    "api_server",
                    "The request was executed successfully. Status code: 204 No Content.",
                );
                build(StatusCode::NO_CONTENT, None, false)
            }
            Ok(Reply::Json(body)) => {
                self.log.info(
                    "fc_api",
                    "api_server",
                    "The request was executed successfully. Status code: 200 OK.",
                );
                build(StatusCode::OK, Some(body), false)
            }
            Err(fault) => self.fault_response(&fault),
        }
    }

    fn fault_response(&self, fault: &Fault) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST);
        self.log.error(
            "fc_api",
            "api_server",
            format!(
                "Received Error. Status code: {} {}. Message: {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or(""),
                fault.message
            ),
        );
        build(status, Some(fault.body()), false)
    }
}

/// Firecracker's description of a request in its log line.
fn describe(method: Method, path: &str, body: Option<&[u8]>) -> String {
    match body {
        None => format!("{} request on {path:?}", method.debug_name()),
        Some(bytes) => format!(
            "{} request on {path:?} with body {:?}",
            method.debug_name(),
            std::str::from_utf8(bytes).unwrap_or("inconvertible to UTF-8")
        ),
    }
}

fn metric_name(method: Method) -> &'static str {
    match method {
        Method::Get => "get",
        Method::Put => "put",
        Method::Patch => "patch",
        Method::Delete => "delete",
    }
}

/// A response with Firecracker's status line and headers.
fn build(status: StatusCode, body: Option<String>, close: bool) -> Response<Full<Bytes>> {
    let length = body.as_ref().map(String::len);
    let mut response = Response::new(Full::new(Bytes::from(body.unwrap_or_default())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(SERVER, HeaderValue::from_static("Firecracker API"));
    let connection = if close { "close" } else { "keep-alive" };
    headers.insert(CONNECTION, HeaderValue::from_static(connection));
    if let Some(length) = length {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
        .extensions_mut()
        .insert(ReasonPhrase::from_static(b""));
    response
}
