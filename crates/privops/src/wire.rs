//! The `bangerd-root` protocol: one length-prefixed JSON frame per request
//! and per response over a Unix stream socket.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of
//! JSON. Requests are at most [`MAX_REQUEST`] bytes: the reader refuses a
//! longer length before reading (or allocating) the body. Every request
//! carries [`PROTOCOL_VERSION`]; a peer speaking another version gets a
//! [`WireErrorKind::Version`] answer. The body of a request is any
//! [`PrivOp`] (or a [`Call::Ping`] health probe), so new variants travel
//! without touching this file.
//!
//! On a socket, [`read_frame_within`] and [`write_frame_within`] bound a
//! whole frame by one deadline (first byte to last byte), so a peer that
//! trickles one byte at a time cannot stretch a request beyond it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{PrivOp, PrivReply};

/// The protocol version both sides must speak. 2: `SpawnVmm.lock_file`,
/// `SignalVmm { pid, start_time, signal }`, `Spawned { pid, start_time }`.
pub const PROTOCOL_VERSION: u32 = 2;

/// Largest request frame body the helper reads (64 KiB).
pub const MAX_REQUEST: usize = 64 * 1024;

/// Largest response frame body the client reads (1 MiB).
pub const MAX_RESPONSE: usize = 1024 * 1024;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireRequest {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// What is asked.
    pub call: Call,
}

/// The body of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Call {
    /// Health probe: answered with [`Answer::Pong`], touches nothing.
    Ping,
    /// Perform a privileged operation.
    Op(PrivOp),
}

/// One response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireResponse {
    /// [`PROTOCOL_VERSION`] of the helper.
    pub version: u32,
    /// The answer or why there is none.
    pub result: Result<Answer, RemoteError>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Reply to [`Call::Ping`].
    Pong {
        /// The helper's banger version.
        helper_version: String,
        /// The uid the helper saw on the connection.
        peer_uid: u32,
    },
    /// Reply to [`Call::Op`].
    Reply(PrivReply),
}

/// Why a request was not performed, as sent over the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct RemoteError {
    /// Category.
    pub kind: WireErrorKind,
    /// Human-readable reason.
    pub message: String,
}

/// Categories of [`RemoteError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireErrorKind {
    /// A field broke a rule of the policy; nothing was done.
    Refused,
    /// The operation was attempted and failed.
    Failed,
    /// The frame was not a valid request.
    BadRequest,
    /// The frame was longer than [`MAX_REQUEST`].
    TooLarge,
    /// The request's protocol version is not [`PROTOCOL_VERSION`].
    Version,
    /// The connecting uid may not use the helper.
    Unauthorized,
}

/// Errors reading or writing frames.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length exceeds the limit; the body was not read.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer closed the connection before a frame started.
    #[error("connection closed")]
    Closed,
    /// Reading or writing failed (including a timeout).
    #[error("socket I/O failed")]
    Io(#[source] std::io::Error),
    /// The body is not the expected JSON.
    #[error("malformed frame: {0}")]
    Json(String),
    /// No frame started within the idle timeout.
    #[error("no request within {}s", .0.as_secs_f64())]
    Idle(Duration),
    /// A frame started but was not complete within its deadline.
    #[error("frame not complete within {}s of its first byte", .0.as_secs_f64())]
    Deadline(Duration),
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Fill `buf` from `stream` before `deadline` (`within` is what the
/// deadline allows, for the error).
fn fill_before(
    stream: &UnixStream,
    buf: &mut [u8],
    deadline: Instant,
    within: Duration,
) -> Result<(), FrameError> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FrameError::Deadline(within));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(FrameError::Io)?;
        match (&*stream).read(&mut buf[got..]) {
            Ok(0) => return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err(FrameError::Deadline(within)),
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// Read one frame body of at most `max` bytes from `stream`: wait at most
/// `idle` for its first byte ([`FrameError::Idle`], [`FrameError::Closed`]
/// when the peer closes instead), then at most `whole` from that first
/// byte to the last one of the body ([`FrameError::Deadline`]), however
/// the bytes trickle in. The length is checked against `max` before the
/// body is read. Changes the stream's read timeout.
pub fn read_frame_within(
    stream: &UnixStream,
    max: usize,
    idle: Duration,
    whole: Duration,
) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    stream
        .set_read_timeout(Some(idle.max(Duration::from_millis(1))))
        .map_err(FrameError::Io)?;
    let first = loop {
        match (&*stream).read(&mut len) {
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err(FrameError::Idle(idle)),
            Err(e) => return Err(FrameError::Io(e)),
        }
    };
    let deadline = Instant::now() + whole;
    fill_before(stream, &mut len[first..], deadline, whole)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    fill_before(stream, &mut body, deadline, whole)?;
    Ok(body)
}

/// Write `value` as one frame to `stream`, all of it within `whole`
/// ([`FrameError::Deadline`] otherwise: a peer that reads slowly cannot
/// hold the writer longer). Changes the stream's write timeout.
pub fn write_frame_within<T: Serialize>(
    stream: &UnixStream,
    value: &T,
    whole: Duration,
) -> Result<(), FrameError> {
    let body = serde_json::to_vec(value).map_err(|e| FrameError::Json(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    let deadline = Instant::now() + whole;
    let mut sent = 0;
    while sent < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FrameError::Deadline(whole));
        }
        stream
            .set_write_timeout(Some(left))
            .map_err(FrameError::Io)?;
        match (&*stream).write(&buf[sent..]) {
            Ok(0) => return Err(FrameError::Io(std::io::ErrorKind::WriteZero.into())),
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if timed_out(&e) => return Err(FrameError::Deadline(whole)),
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

/// Write `value` as one frame.
pub fn write_frame<T: Serialize>(w: &mut impl Write, value: &T) -> Result<(), FrameError> {
    let body = serde_json::to_vec(value).map_err(|e| FrameError::Json(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge {
        len: body.len(),
        max: u32::MAX as usize,
    })?;
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Read one frame body of at most `max` bytes.
pub fn read_frame(r: &mut impl Read, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(FrameError::Io)?;
    Ok(body)
}

/// Decode a request body: well-formed JSON of a [`WireRequest`], at most
/// [`MAX_REQUEST`] bytes, of [`PROTOCOL_VERSION`]. The helper's decoder;
/// it never panics on any input.
pub fn decode_request(body: &[u8]) -> Result<WireRequest, RemoteError> {
    if body.len() > MAX_REQUEST {
        return Err(RemoteError {
            kind: WireErrorKind::TooLarge,
            message: format!(
                "request of {} bytes exceeds the limit of {MAX_REQUEST} bytes",
                body.len()
            ),
        });
    }
    // The version first, so a peer of another version hears that rather
    // than "malformed" about an operation whose shape changed.
    #[derive(Deserialize)]
    struct VersionProbe {
        version: u32,
    }
    let version = serde_json::from_slice::<VersionProbe>(body).map(|p| p.version);
    let req: Result<WireRequest, _> = serde_json::from_slice(body);
    let req = match (version, req) {
        (Ok(v), _) if v != PROTOCOL_VERSION => WireRequest {
            version: v,
            call: Call::Ping,
        },
        (_, Ok(req)) => req,
        (_, Err(e)) => {
            return Err(RemoteError {
                kind: WireErrorKind::BadRequest,
                message: format!("malformed request: {e}"),
            });
        }
    };
    if req.version != PROTOCOL_VERSION {
        return Err(RemoteError {
            kind: WireErrorKind::Version,
            message: format!(
                "protocol version {} is not supported (the helper speaks {PROTOCOL_VERSION}); install matching banger and bangerd-root versions",
                req.version
            ),
        });
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VmmSignal;

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let req = WireRequest {
            version: PROTOCOL_VERSION,
            call: Call::Op(PrivOp::SignalVmm {
                pid: 42,
                start_time: 4242,
                signal: VmmSignal::Term,
            }),
        };
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        let body = read_frame(&mut buf.as_slice(), MAX_REQUEST).unwrap();
        assert_eq!(decode_request(&body).unwrap(), req);

        let mut big = Vec::new();
        big.extend_from_slice(&((MAX_REQUEST as u32) + 1).to_be_bytes());
        assert!(matches!(
            read_frame(&mut big.as_slice(), MAX_REQUEST),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            read_frame(&mut [].as_slice(), MAX_REQUEST),
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut [0u8, 0].as_slice(), MAX_REQUEST),
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn a_trickled_frame_is_cut_at_one_deadline_for_the_whole_frame() {
        let (a, b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            // A 10-byte frame, one byte every 40 ms: each read succeeds
            // well within a 100 ms per-read timeout, the whole frame
            // needs ~500 ms.
            let mut frame = 6u32.to_be_bytes().to_vec();
            frame.extend_from_slice(b"\"Ping\"");
            for byte in frame {
                if (&a).write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        let started = Instant::now();
        let got = read_frame_within(
            &b,
            MAX_REQUEST,
            Duration::from_secs(5),
            Duration::from_millis(150),
        );
        assert!(matches!(got, Err(FrameError::Deadline(_))), "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(b);
        writer.join().unwrap();
    }

    #[test]
    fn framed_reads_wait_idle_then_read_whole_frames() {
        let (a, b) = UnixStream::pair().unwrap();
        let idle = read_frame_within(
            &b,
            MAX_REQUEST,
            Duration::from_millis(50),
            Duration::from_secs(5),
        );
        assert!(matches!(idle, Err(FrameError::Idle(_))), "{idle:?}");
        let req = WireRequest {
            version: PROTOCOL_VERSION,
            call: Call::Ping,
        };
        write_frame_within(&a, &req, Duration::from_secs(1)).unwrap();
        let body = read_frame_within(
            &b,
            MAX_REQUEST,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(decode_request(&body).unwrap(), req);
        (&a).write_all(&(MAX_REQUEST as u32 + 1).to_be_bytes())
            .unwrap();
        assert!(matches!(
            read_frame_within(
                &b,
                MAX_REQUEST,
                Duration::from_secs(1),
                Duration::from_secs(1)
            ),
            Err(FrameError::TooLarge { .. })
        ));
        drop(a);
        assert!(matches!(
            read_frame_within(
                &b,
                MAX_REQUEST,
                Duration::from_secs(1),
                Duration::from_secs(1)
            ),
            Err(FrameError::Closed)
        ));
    }

    #[test]
    fn a_peer_that_does_not_read_cannot_hold_the_writer() {
        let (a, _b) = UnixStream::pair().unwrap();
        // 4 MiB of answer to a peer that never reads: the socket buffer
        // fills and the write gives up at the deadline.
        let big = vec![b'x'; 4 << 20];
        let got = write_frame_within(
            &a,
            &String::from_utf8(big).unwrap(),
            Duration::from_millis(100),
        );
        assert!(matches!(got, Err(FrameError::Deadline(_))), "{got:?}");
    }

    #[test]
    fn decoder_refuses_bad_requests() {
        let v3 = br#"{"version":3,"call":"Ping"}"#;
        assert_eq!(decode_request(v3).unwrap_err().kind, WireErrorKind::Version);
        // A version-1 peer's SignalVmm (with `api_sock`): told the version.
        let v1 = br#"{"version":1,"call":{"Op":{"SignalVmm":{"pid":9,"api_sock":"/a","signal":"Kill"}}}}"#;
        assert_eq!(decode_request(v1).unwrap_err().kind, WireErrorKind::Version);
        let junk = br#"{"version":2,"call":{"Op":{"Reboot":{}}}}"#;
        assert_eq!(
            decode_request(junk).unwrap_err().kind,
            WireErrorKind::BadRequest
        );
        let extra = br#"{"version":2,"call":"Ping","uid":0}"#;
        assert_eq!(
            decode_request(extra).unwrap_err().kind,
            WireErrorKind::BadRequest
        );
        let huge = vec![b' '; MAX_REQUEST + 1];
        assert_eq!(
            decode_request(&huge).unwrap_err().kind,
            WireErrorKind::TooLarge
        );
        assert_eq!(
            decode_request(br#"{"version":2,"call":"Ping"}"#)
                .unwrap()
                .call,
            Call::Ping
        );
    }
}
