//! A minimal, blocking QMP client over one long-lived connection.
//!
//! The front connects once, right after QEMU starts, reads the greeting and
//! negotiates capabilities; then it deletes the socket file, so nothing else
//! can ever reach QEMU's monitor and nothing is left behind however the
//! front ends. Commands run one at a time; asynchronous events QEMU sends in
//! between (e.g. `POWERDOWN`) are skipped while waiting for the command's
//! `return` or `error`. All of this is local and takes milliseconds, so it
//! runs inline under the VMM lock, as Firecracker handles actions inline.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// How long one QMP exchange may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a QMP command failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be used.
    #[error("QMP socket {path}: {source}")]
    Io {
        /// The QMP socket.
        path: String,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// QEMU answered with an error.
    #[error("QEMU refused {command}: {desc}")]
    Refused {
        /// The command.
        command: String,
        /// QEMU's `desc`.
        desc: String,
    },
    /// The connection closed or QEMU sent something that is not QMP.
    #[error("QMP socket {path}: {reason}")]
    Protocol {
        /// The QMP socket.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// A negotiated QMP connection.
#[derive(Debug)]
pub struct Qmp {
    /// The socket path it was opened on (for messages; the file may be gone).
    path: String,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to `socket`, reads the greeting and leaves negotiation mode.
    pub fn connect(socket: &Path) -> Result<Self, QmpError> {
        let path = socket.display().to_string();
        let io_err = |source| QmpError::Io {
            path: path.clone(),
            source,
        };
        let stream = UnixStream::connect(socket).map_err(io_err)?;
        stream.set_read_timeout(Some(QMP_TIMEOUT)).map_err(io_err)?;
        stream
            .set_write_timeout(Some(QMP_TIMEOUT))
            .map_err(io_err)?;
        let writer = stream.try_clone().map_err(io_err)?;
        let mut qmp = Self {
            path: path.clone(),
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(qmp.protocol(format!("no QMP greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` (with optional `arguments`) and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut request = json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        self.writer
            .write_all(format!("{request}\n").as_bytes())
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                source,
            })?;
        loop {
            let message = self.read_message()?;
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                return Err(QmpError::Refused {
                    command: command.to_string(),
                    desc: error
                        .get("desc")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown error")
                        .to_string(),
                });
            }
            // An event: not the answer.
        }
    }

    fn read_message(&mut self) -> Result<Value, QmpError> {
        read_message(&mut self.reader, &self.path)
    }

    fn protocol(&self, reason: String) -> QmpError {
        protocol(&self.path, reason)
    }
}

fn read_message(reader: &mut impl BufRead, socket: &str) -> Result<Value, QmpError> {
    let mut line = String::new();
    let read = reader.read_line(&mut line).map_err(|source| QmpError::Io {
        path: socket.to_string(),
        source,
    })?;
    if read == 0 {
        return Err(protocol(socket, "QEMU closed the connection".into()));
    }
    serde_json::from_str(&line).map_err(|e| protocol(socket, format!("not JSON ({e}): {line}")))
}

fn protocol(socket: &str, reason: String) -> QmpError {
    QmpError::Protocol {
        path: socket.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A fake QMP server answering one client with `answers` after the greeting.
    fn serve(
        listener: UnixListener,
        answers: Vec<&'static str>,
    ) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            writer
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .unwrap();
            let mut seen = Vec::new();
            for answer in answers {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                seen.push(line.trim().to_string());
                writer.write_all(answer.as_bytes()).unwrap();
            }
            seen
        })
    }

    #[test]
    fn skips_events_and_returns_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = serve(
            UnixListener::bind(&path).unwrap(),
            vec![
                "{\"return\": {}}\n",
                "{\"event\": \"POWERDOWN\"}\n{\"return\": {\"status\": \"running\"}}\n",
            ],
        );
        let mut qmp = Qmp::connect(&path).unwrap();
        let value = qmp.execute("query-status", None).unwrap();
        assert_eq!(value["status"], "running");
        let seen = server.join().unwrap();
        assert_eq!(seen[0], r#"{"execute":"qmp_capabilities"}"#);
        assert_eq!(seen[1], r#"{"execute":"query-status"}"#);
    }

    #[test]
    fn an_error_answer_is_refused_with_qemus_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = serve(
            UnixListener::bind(&path).unwrap(),
            vec![
                "{\"return\": {}}\n",
                "{\"error\": {\"class\": \"GenericError\", \"desc\": \"nope\"}}\n",
            ],
        );
        let err = Qmp::connect(&path)
            .unwrap()
            .execute("stop", None)
            .unwrap_err();
        assert_eq!(err.to_string(), "QEMU refused stop: nope");
        server.join().unwrap();
        let missing = Qmp::connect(&dir.path().join("none")).unwrap_err();
        assert!(missing.to_string().contains("none"), "{missing}");
    }
}
