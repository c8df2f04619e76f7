//! The agent's line protocol, shared by the agent and the daemon.
//!
//! After Firecracker's hybrid-vsock handshake (`CONNECT 52\n` → `OK <n>\n`,
//! done by the host against the VMM's Unix socket) the stream reaches the
//! agent. Each request is one line; each reply is one line:
//!
//! | request | reply |
//! |---|---|
//! | `PING` | `PONG <agent version>` |
//! | `PORTS` | `PORTS <json>`: a JSON array of [`ListenSocket`] |
//! | `IDENTITY ip=… mac=… [seed=…]` | `IDENTITY OK` once applied (`crate::identity`) |
//! | anything else | `ERR <message>` |
//!
//! A connection may carry several requests; the agent closes it on EOF.
//! [`handle`] is the agent's side, generic over `Read + Write` so tests run
//! it over a socket pair; [`parse_pong`] and [`parse_ports`] are the
//! client's.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::procnet;

/// The agent's version, answered to `PING`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The readiness request.
pub const PING: &str = "PING";

/// The listening-ports request.
pub const PORTS: &str = "PORTS";

/// A restored fork's new identity (`crate::identity`).
pub const IDENTITY: &str = "IDENTITY";

/// Longest request line the agent reads.
pub const MAX_REQUEST: usize = 512;

/// Longest reply line a client should accept.
pub const MAX_REPLY: usize = 4 << 20;

/// One listening socket in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenSocket {
    /// `tcp` or `udp`.
    pub proto: String,
    /// Local address, IPv6 in brackets (`0.0.0.0`, `[::]`, `127.0.0.1`).
    pub address: String,
    /// Port.
    pub port: u16,
    /// The owning process's name (`/proc/<pid>/comm`), when found.
    #[serde(default)]
    pub process: Option<String>,
}

/// A reply the client could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The agent answered `ERR …`.
    Agent(String),
    /// The reply was not what the request expects.
    Unexpected {
        /// What was asked.
        request: &'static str,
        /// The reply (truncated).
        reply: String,
    },
    /// The `PORTS` JSON did not parse.
    BadJson(String),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::Agent(m) => write!(f, "the guest agent refused: {m}"),
            ProtoError::Unexpected { request, reply } => {
                write!(
                    f,
                    "unexpected reply to {request} from the guest agent: {reply:?}"
                )
            }
            ProtoError::BadJson(e) => write!(f, "the guest agent's PORTS reply is not valid: {e}"),
        }
    }
}

impl std::error::Error for ProtoError {}

fn unexpected(request: &'static str, reply: &str) -> ProtoError {
    if let Some(m) = reply.strip_prefix("ERR ") {
        return ProtoError::Agent(m.to_string());
    }
    ProtoError::Unexpected {
        request,
        reply: reply.chars().take(120).collect(),
    }
}

/// The agent's version from a `PING` reply line (without the newline).
pub fn parse_pong(line: &str) -> Result<String, ProtoError> {
    match line.strip_prefix("PONG ") {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(unexpected(PING, line)),
    }
}

/// Whether an `IDENTITY` reply line (without the newline) says it was applied.
pub fn parse_identity_reply(line: &str) -> Result<(), ProtoError> {
    if line == "IDENTITY OK" {
        Ok(())
    } else {
        Err(unexpected(IDENTITY, line))
    }
}

/// The sockets from a `PORTS` reply line (without the newline).
pub fn parse_ports(line: &str) -> Result<Vec<ListenSocket>, ProtoError> {
    let json = line
        .strip_prefix("PORTS ")
        .ok_or_else(|| unexpected(PORTS, line))?;
    serde_json::from_str(json).map_err(|e| ProtoError::BadJson(e.to_string()))
}

/// Read one `\n`-terminated line of at most `max` bytes; `None` on EOF
/// before any byte. Byte-wise, so nothing past the line is consumed.
pub fn read_line(r: &mut impl Read, max: usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        if r.read(&mut b)? == 0 {
            if line.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a line",
            ));
        }
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
        if line.len() > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("line longer than {max} bytes"),
            ));
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
}

/// The reply line (with its newline) to one request line.
pub fn reply(request: &str, proc_root: &Path) -> String {
    match request.trim() {
        PING => format!("PONG {AGENT_VERSION}\n"),
        PORTS => match procnet::listening(proc_root) {
            Ok(sockets) => match serde_json::to_string(&sockets) {
                Ok(json) => format!("PORTS {json}\n"),
                Err(e) => format!("ERR cannot encode the sockets: {e}\n"),
            },
            Err(e) => format!("ERR {e}\n"),
        },
        other if other.starts_with("IDENTITY ") => {
            match crate::identity::parse(&other[IDENTITY.len()..])
                .and_then(|id| crate::identity::apply(Path::new("/"), &id))
            {
                Ok(()) => format!("{IDENTITY} OK\n"),
                Err(e) => format!("ERR {e}\n"),
            }
        }
        other => format!(
            "ERR unknown request {:?}; expected PING or PORTS\n",
            other.chars().take(40).collect::<String>()
        ),
    }
}

/// Serve one connection: answer each request line until EOF. `proc_root`
/// is `/proc` in the guest (a fixture tree in tests).
pub fn handle<S: Read + Write>(mut stream: S, proc_root: &Path) -> io::Result<()> {
    while let Some(line) = read_line(&mut stream, MAX_REQUEST)? {
        stream.write_all(reply(&line, proc_root).as_bytes())?;
        stream.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn ping_ports_and_errors_over_a_socket_pair() {
        let proc_root = crate::procnet::tests::fixture_proc();
        let root = proc_root.path().to_path_buf();
        let (mut client, server) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || handle(server, &root));

        client.write_all(b"PING\n").unwrap();
        let line = read_line(&mut client, MAX_REPLY).unwrap().unwrap();
        assert_eq!(parse_pong(&line).unwrap(), AGENT_VERSION);

        client.write_all(b"PORTS\r\n").unwrap();
        let line = read_line(&mut client, MAX_REPLY).unwrap().unwrap();
        let ports = parse_ports(&line).unwrap();
        assert!(
            ports
                .iter()
                .any(|p| p.port == 22 && p.proto == "tcp" && p.process.as_deref() == Some("sshd")),
            "{ports:?}"
        );

        client.write_all(b"HELLO\n").unwrap();
        let line = read_line(&mut client, MAX_REPLY).unwrap().unwrap();
        let e = parse_pong(&line).unwrap_err();
        assert!(
            matches!(&e, ProtoError::Agent(m) if m.contains("unknown request")),
            "{e}"
        );

        drop(client);
        t.join().unwrap().unwrap();
    }

    #[test]
    fn client_parsers_refuse_garbage() {
        assert!(matches!(
            parse_pong("OK 1"),
            Err(ProtoError::Unexpected { .. })
        ));
        assert!(parse_pong("PONG ").is_err());
        assert!(matches!(
            parse_ports("PORTS {"),
            Err(ProtoError::BadJson(_))
        ));
        assert_eq!(parse_ports("PORTS []").unwrap(), vec![]);
    }

    #[test]
    fn overlong_requests_are_refused() {
        let (mut client, server) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || handle(server, Path::new("/nonexistent")));
        client.write_all(&[b'A'; MAX_REQUEST + 2]).unwrap();
        let e = t.join().unwrap().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }
}
