//! Test harness: spawns the simulator as a real process and talks raw HTTP to it.
//!
//! A raw client (not hyper) is used on purpose: the tests check the exact
//! status line and headers Firecracker sends, and send bodies byte for byte
//! as they were recorded.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Path of the simulator executable built for these tests.
pub fn sim_binary() -> &'static str {
    env!("CARGO_BIN_EXE_fcsim-selftest")
}

/// Writes a line to the real stderr, bypassing libtest's output capture, so
/// SKIP lines and summaries are visible even when the test passes.
pub fn visible(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// One HTTP response, as received.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status line without CRLF, e.g. `HTTP/1.1 204 `.
    pub status_line: String,
    /// Status code.
    pub status: u16,
    /// Headers in received order.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// A header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request on a fresh connection. `body: None` sends no body and no
/// Content-Length (as Python's http.client does for body-less requests).
pub fn http(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> std::io::Result<HttpResponse> {
    let mut stream = loop {
        match UnixStream::connect(sock) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n");
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes)?;
    read_response(&mut stream)
}

/// Reads one response from `stream`.
pub fn read_response(stream: &mut UnixStream) -> std::io::Result<HttpResponse> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = match stream.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other?,
        };
        if n == 0 {
            return Err(std::io::Error::other(
                "connection closed before the response head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default().to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[header_end + 4..].to_vec();
    while body.len() < length {
        let n = match stream.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other?,
        };
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(HttpResponse {
        status_line,
        status,
        headers,
        body,
    })
}

/// Collects a child's output stream on a thread.
struct Capture {
    data: Arc<Mutex<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    fn new(mut source: impl Read + Send + 'static) -> Self {
        let data = Arc::new(Mutex::new(Vec::new()));
        let sink = data.clone();
        let thread = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = source.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Self {
            data,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data.lock().unwrap()).into_owned()
    }

    fn finish(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A running simulator process.
pub struct Sim {
    child: Child,
    /// Its API socket.
    pub sock: PathBuf,
    stdout: Capture,
    stderr: Capture,
    status: Option<ExitStatus>,
}

impl Sim {
    /// Spawns the simulator with `args` and extra environment.
    pub fn spawn(args: &[String], env: &[(&str, &str)], sock: &Path) -> Self {
        let mut command = Command::new(sim_binary());
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for key in [
            "FCSIM_SOCKET_DELAY_MS",
            "FCSIM_CRASH_AFTER_START_MS",
            "FCSIM_REFUSE_START",
            "FCSIM_IGNORE_CTRL_ALT_DEL",
            "FCSIM_SHUTDOWN_DELAY_MS",
        ] {
            command.env_remove(key);
        }
        for (key, value) in env {
            command.env(key, value);
        }
        // No core file when a test makes the simulator abort (bad --id).
        // SAFETY: setrlimit is async-signal-safe and touches no parent state.
        unsafe {
            command.pre_exec(|| {
                let none = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &none);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn the simulator");
        let stdout = Capture::new(child.stdout.take().expect("stdout"));
        let stderr = Capture::new(child.stderr.take().expect("stderr"));
        Self {
            child,
            sock: sock.to_path_buf(),
            stdout,
            stderr,
            status: None,
        }
    }

    /// Spawns `--api-sock SOCK --id ID` plus `extra` args.
    pub fn start(dir: &Path, id: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let sock = dir.join("api.sock");
        let mut args = vec![
            "--api-sock".to_string(),
            sock.display().to_string(),
            "--id".to_string(),
            id.to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut sim = Self::spawn(&args, env, &sock);
        assert!(
            sim.wait_for_socket(Duration::from_secs(10)),
            "the simulator did not serve its socket"
        );
        sim
    }

    /// Waits until the socket accepts connections; false if the process exited or time ran out.
    pub fn wait_for_socket(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if UnixStream::connect(&self.sock).is_ok() {
                return true;
            }
            if self.try_status().is_some() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Sends a request to this simulator.
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
        http(&self.sock, method, path, body.map(str::as_bytes)).expect("HTTP exchange")
    }

    /// The exit status, if the process has ended.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Waits for the process to end, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_status() {
                self.stdout.finish();
                self.stderr.finish();
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Sends a signal.
    pub fn signal(&self, signal: i32) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Captured stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Captured stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Exit description: `(returncode, killing signal)`.
pub fn describe_status(status: ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}

/// Signal number for a name like `SIGTERM`.
pub fn signal_number(name: &str) -> Option<i32> {
    Some(match name {
        "SIGTERM" => libc::SIGTERM,
        "SIGINT" => libc::SIGINT,
        "SIGKILL" => libc::SIGKILL,
        "SIGABRT" => libc::SIGABRT,
        _ => return None,
    })
}

/// Writes a file that the simulator accepts as a kernel and returns its path.
pub fn write_kernel(dir: &Path) -> PathBuf {
    let path = dir.join("vmlinux.bin");
    std::fs::write(&path, banger_fcsim::test_kernel_image()).expect("write kernel");
    path
}

/// Creates a sparse file of `mib` MiB.
pub fn sparse_file(path: &Path, mib: u64) {
    let file = std::fs::File::create(path).expect("create disk");
    file.set_len(mib << 20).expect("size disk");
}
