//! DNS over TCP (RFC 7766): a two-byte length before each message, any
//! number of queries per connection, the same answers as UDP.
//!
//! The accept loop is ours rather than hickory-server's so that it survives
//! exhaustion: when `accept` fails (out of file descriptors, say) the
//! pending connection stays queued and the listener readable, so retrying
//! at once would spin a core. The loop pauses instead (10 ms, doubling up
//! to 1 s, back to the start after a success) and logs at most one line
//! per [`LOG_EVERY`] with the count of failures it did not log. At most
//! [`TCP_MAX_CONNECTIONS`] connections are served at once (more are closed at
//! once), and each message must arrive whole within [`TCP_MESSAGE_TIMEOUT`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::rr::Record;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::zone::Zone;

/// Connections served at once; more are closed right after `accept`.
pub const TCP_MAX_CONNECTIONS: usize = 256;
/// Time for a whole query (length and message) to arrive; an idle
/// connection is closed after it.
pub const TCP_MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one log line about failing `accept` per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(5);
const PAUSE_MIN: Duration = Duration::from_millis(10);
const PAUSE_MAX: Duration = Duration::from_secs(1);

/// Pause and log rate limit after failed `accept`s (the same policy as
/// `banger_privops::AcceptBackoff`; this leaf crate depends on no banger
/// crate).
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff {
            next: PAUSE_MIN,
            last_log: None,
            unlogged: 0,
        }
    }

    /// The pause before the next `accept`, and whether to log this failure
    /// (with the count of failures not logged since the last line).
    pub(crate) fn failure(&mut self, now: Instant) -> (Duration, Option<u64>) {
        let pause = self.next;
        self.next = (self.next * 2).min(PAUSE_MAX);
        if self
            .last_log
            .is_none_or(|t| now.saturating_duration_since(t) >= LOG_EVERY)
        {
            self.last_log = Some(now);
            (pause, Some(std::mem::take(&mut self.unlogged)))
        } else {
            self.unlogged += 1;
            (pause, None)
        }
    }

    pub(crate) fn success(&mut self) {
        self.next = PAUSE_MIN;
    }
}

/// Serve `listener` until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    zone: Arc<Zone>,
    soa: Record,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(TCP_MAX_CONNECTIONS));
    let soa_bytes: Arc<[u8]> = crate::wire::soa_wire().into();
    let mut backoff = Backoff::new();
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => break,
        };
        while conns.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => {
                backoff.success();
                stream
            }
            Err(e) => {
                let (pause, log) = backoff.failure(Instant::now());
                if let Some(unlogged) = log {
                    tracing::warn!(
                        error = %e,
                        unlogged,
                        pause_ms = pause.as_millis() as u64,
                        "vm. DNS: TCP accept failed; backing off"
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => continue,
                    _ = stop.changed() => break,
                }
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("vm. DNS: too many TCP connections; closing a new one");
            continue;
        };
        let (zone, soa, soa_bytes) = (Arc::clone(&zone), soa.clone(), Arc::clone(&soa_bytes));
        conns.spawn(async move {
            let _permit = permit;
            if let Err(e) = connection(stream, &zone, &soa, &soa_bytes).await {
                tracing::debug!(error = %e, "vm. DNS: TCP connection ended");
            }
        });
    }
    conns.shutdown().await;
}

/// Answer queries on one connection until the peer closes it, stays idle
/// past [`TCP_MESSAGE_TIMEOUT`] or sends something that deserves no answer.
async fn connection(
    mut stream: TcpStream,
    zone: &Zone,
    soa: &Record,
    soa_bytes: &[u8],
) -> std::io::Result<()> {
    let mut buf = vec![0u8; u16::MAX as usize];
    loop {
        let read = async {
            let mut len = [0u8; 2];
            match stream.read_exact(&mut len).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let n = u16::from_be_bytes(len) as usize;
            stream.read_exact(&mut buf[..n]).await?;
            Ok(Some(n))
        };
        let n = match tokio::time::timeout(TCP_MESSAGE_TIMEOUT, read).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(Some(n))) => n,
        };
        let packet = &buf[..n];
        let Some(reply) = crate::wire::fast_reply(packet, zone, soa_bytes)
            .or_else(|| crate::udp::respond(packet, zone, soa))
        else {
            return Ok(());
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut out = Vec::with_capacity(reply.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&reply);
        stream.write_all(&out).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_second_and_logs_once_per_interval() {
        let mut b = Backoff::new();
        let t0 = Instant::now();
        let (p, log) = b.failure(t0);
        assert_eq!((p, log), (PAUSE_MIN, Some(0)));
        let mut last = p;
        for i in 1..50u64 {
            let (p, log) = b.failure(t0 + Duration::from_millis(i));
            assert_eq!(log, None, "failure {i} is not logged");
            assert!(p >= last && p <= PAUSE_MAX);
            last = p;
        }
        assert_eq!(last, PAUSE_MAX);
        assert_eq!(b.failure(t0 + LOG_EVERY).1, Some(49));
        b.success();
        assert_eq!(b.failure(t0 + LOG_EVERY).0, PAUSE_MIN);
    }
}
