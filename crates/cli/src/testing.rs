//! A fake `bangerd` for tests: a thread serving a temporary Unix socket,
//! answering the handshake itself and every other request from a script.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_api::rpc::{RequestEnvelope, ResponseBody, ResponseEnvelope};
use banger_api::{ErrorKind, Hello, PROTOCOL_VERSION, Request, RpcError};
use serde::Serialize;

/// What the fake sends for one request.
pub enum Reply {
    /// A response line with the request's id.
    Body(ResponseBody),
    /// A raw line, sent as is.
    Raw(String),
    /// Wait before the next reply.
    Sleep(Duration),
    /// Close the connection.
    Close,
}

/// A successful result.
pub fn ok<T: Serialize>(value: T) -> Reply {
    Reply::Body(ResponseBody::Result(serde_json::to_value(value).unwrap()))
}

/// A progress event.
pub fn event<T: Serialize>(value: T) -> Reply {
    Reply::Body(ResponseBody::Event(serde_json::to_value(value).unwrap()))
}

/// An error.
pub fn error(kind: ErrorKind, message: &str) -> Reply {
    Reply::Body(ResponseBody::Error(RpcError::new(kind, message)))
}

type Handler = dyn Fn(&Request) -> Vec<Reply> + Send + Sync;

/// A running fake daemon.
pub struct FakeDaemon {
    _dir: tempfile::TempDir,
    /// Its socket.
    pub socket: PathBuf,
    /// Every request received after the handshake, in order.
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeDaemon {
    /// A daemon speaking our protocol version.
    pub fn start(handler: impl Fn(&Request) -> Vec<Reply> + Send + Sync + 'static) -> FakeDaemon {
        Self::with_protocol(PROTOCOL_VERSION, handler)
    }

    /// A daemon whose handshake reports `protocol`.
    pub fn with_protocol(
        protocol: u32,
        handler: impl Fn(&Request) -> Vec<Reply> + Send + Sync + 'static,
    ) -> FakeDaemon {
        Self::with_hello(
            move || {
                ok(Hello {
                    protocol,
                    version: "9.9.9".into(),
                })
            },
            handler,
        )
    }

    /// A daemon answering the handshake with `hello()`.
    pub fn with_hello(
        hello: impl Fn() -> Reply + Send + Sync + 'static,
        handler: impl Fn(&Request) -> Vec<Reply> + Send + Sync + 'static,
    ) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("bangerd.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let hello: Arc<dyn Fn() -> Reply + Send + Sync> = Arc::new(hello);
        let log = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (handler, log, hello) = (handler.clone(), log.clone(), hello.clone());
                std::thread::spawn(move || serve(conn, &*hello, &*handler, &log));
            }
        });
        FakeDaemon {
            _dir: dir,
            socket,
            requests,
        }
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(
    conn: UnixStream,
    hello: &(dyn Fn() -> Reply + Send + Sync),
    handler: &Handler,
    log: &Mutex<Vec<Request>>,
) {
    let mut writer = conn.try_clone().unwrap();
    for line in BufReader::new(conn).lines() {
        let Ok(line) = line else { return };
        let env: RequestEnvelope =
            serde_json::from_str(&line).expect("the client sent a valid request");
        let replies = match &env.request {
            Request::Hello(_) => vec![hello()],
            other => {
                log.lock().unwrap().push(other.clone());
                handler(other)
            }
        };
        for reply in replies {
            let text = match reply {
                Reply::Body(body) => {
                    serde_json::to_string(&ResponseEnvelope { id: env.id, body }).unwrap()
                }
                Reply::Raw(text) => text,
                Reply::Sleep(d) => {
                    std::thread::sleep(d);
                    continue;
                }
                Reply::Close => return,
            };
            if writeln!(writer, "{text}").is_err() {
                return;
            }
        }
    }
}

/// Run the CLI with `args` (after `banger`); returns (exit code, stdout,
/// stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("banger").chain(args.iter().copied());
    let code = crate::run(argv, &mut out, &mut err, crate::output::Term::default());
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}
