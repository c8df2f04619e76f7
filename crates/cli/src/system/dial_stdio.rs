//! `banger system dial-stdio`: the remote end of `banger --context NAME`.
//! The client runs it over SSH (as docker runs `docker system
//! dial-stdio`); it connects to this machine's daemon socket with the same
//! checks as any local client (`SO_PEERCRED`: the user, the installed owner
//! or root) and copies bytes both ways until either side closes. It never
//! reads `contexts.toml`: it always means this machine's daemon.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use crate::client::{TrustedPeers, connect_trusted};
use crate::context::Ctx;
use crate::error::CliError;

/// Bridge the process's stdin/stdout to the daemon's socket.
pub fn run(ctx: &mut Ctx) -> Result<(), CliError> {
    let socket = ctx.socket()?;
    let stream = connect_trusted(&socket, &TrustedPeers::for_cli())?;
    bridge(stream, io::stdin(), &mut io::stdout().lock()).map_err(|e| CliError::Failed {
        message: format!("the bridge to {} failed: {e}", socket.display()),
        code: 1,
    })
}

/// Copy `input` to `stream` (then half-close it, so the daemon sees the
/// end of the requests) on a thread, and `stream` to `output`, flushing
/// after every read, until the daemon closes its side.
pub fn bridge<R>(stream: UnixStream, mut input: R, output: &mut dyn Write) -> io::Result<()>
where
    R: Read + Send + 'static,
{
    let mut up = stream.try_clone()?;
    // Detached: a client that keeps its side open must not hold us here
    // once the daemon is done.
    std::thread::spawn(move || {
        let _ = io::copy(&mut input, &mut up);
        let _ = up.shutdown(std::net::Shutdown::Write);
    });
    let mut down = &stream;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match down.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        output.write_all(&buf[..n])?;
        output.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::os::unix::net::UnixListener;

    use super::*;

    /// A daemon stand-in that answers each line with `ok <line>` and
    /// closes when its client half-closes.
    fn echo_daemon(listener: UnixListener) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut w = conn.try_clone().unwrap();
            let mut n = 0;
            for line in BufReader::new(conn).lines() {
                writeln!(w, "ok {}", line.unwrap()).unwrap();
                n += 1;
            }
            n
        })
    }

    #[test]
    fn bridges_both_ways_until_the_input_ends() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let daemon = echo_daemon(UnixListener::bind(&sock).unwrap());
        let stream = connect_trusted(&sock, &TrustedPeers::with_owner(None)).unwrap();
        let mut out = Vec::new();
        let input = io::Cursor::new(b"one\ntwo\n".to_vec());
        bridge(stream, input, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "ok one\nok two\n");
        assert_eq!(daemon.join().unwrap(), 2, "the daemon saw the end of input");
    }

    #[test]
    fn ends_when_the_daemon_closes_even_if_the_input_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let daemon = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            conn.write_all(b"bye\n").unwrap();
        });
        let stream = connect_trusted(&sock, &TrustedPeers::with_owner(None)).unwrap();
        // An input that never ends: the other end of a pair kept open.
        let (keep, input) = UnixStream::pair().unwrap();
        let mut out = Vec::new();
        bridge(stream, input, &mut out).unwrap();
        assert_eq!(out, b"bye\n");
        daemon.join().unwrap();
        drop(keep);
    }
}
