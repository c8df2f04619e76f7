//! The SSH session under a remote [`Client`](crate::client::Client): `ssh
//! … -- HOST banger system dial-stdio`, its stdin and stdout one end of a
//! Unix socket pair (so the client keeps its read timeouts), its stderr
//! kept (the last [`STDERR_KEEP`] bytes) to explain a failure.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::remote::{DIAL_STDIO, SSH, SshTarget};

/// How much of ssh's stderr is kept.
pub const STDERR_KEEP: usize = 8 << 10;

/// A running `ssh … banger system dial-stdio`.
#[derive(Debug)]
pub struct Tunnel {
    child: Child,
    stream: UnixStream,
    stderr: Arc<Mutex<Vec<u8>>>,
    drain: Option<JoinHandle<()>>,
}

impl Tunnel {
    /// Start ssh; returns the tunnel and the client's end of the session.
    pub fn spawn(
        target: &SshTarget,
        ssh_config: Option<&PathBuf>,
    ) -> io::Result<(Tunnel, UnixStream)> {
        let (ours, theirs) = UnixStream::pair()?;
        let mut child = {
            let stdin = OwnedFd::from(theirs.try_clone()?);
            let mut cmd = Command::new(SSH);
            cmd.args(target.ssh_args(ssh_config, false))
                .args(DIAL_STDIO)
                .stdin(Stdio::from(stdin))
                .stdout(Stdio::from(OwnedFd::from(theirs)))
                .stderr(Stdio::piped());
            cmd.spawn()?
            // `cmd` (and our copies of ssh's end) are dropped here, so the
            // client sees end-of-file when ssh exits.
        };
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let drain = child.stderr.take().map(|mut pipe| {
            let kept = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
                    k.extend_from_slice(&buf[..n]);
                    let excess = k.len().saturating_sub(STDERR_KEEP);
                    k.drain(..excess);
                }
            })
        });
        let tunnel = Tunnel {
            child,
            stream: ours.try_clone()?,
            stderr,
            drain,
        };
        Ok((tunnel, ours))
    }

    /// Why the session failed: ssh's exit status and its stderr (which
    /// carries the remote banger's messages), with a hint. Waits up to 5 s
    /// for ssh to exit.
    pub fn failure(&mut self) -> String {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        let status = wait_for(&mut self.child, Duration::from_secs(5));
        // ssh's last words reach the drain thread right after it exits.
        let deadline = Instant::now() + Duration::from_secs(1);
        while status.is_some()
            && self.drain.as_ref().is_some_and(|d| !d.is_finished())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let said = {
            let k = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&k).trim().to_string()
        };
        let said = if said.is_empty() {
            "it printed nothing".to_string()
        } else {
            said.replace('\n', "; ")
        };
        match status.and_then(|s| s.code()) {
            Some(255) => format!(
                "ssh failed (exit 255): {said}; check that `ssh` to this host works from this shell (keys, known_hosts, port)"
            ),
            Some(127) => format!(
                "the remote shell found no `banger` (exit 127): {said}; install banger on that host on the PATH of non-interactive SSH sessions (e.g. /usr/local/bin)"
            ),
            Some(code) => {
                format!("`banger system dial-stdio` on that host failed (exit {code}): {said}")
            }
            None => format!("ssh did not answer or exit: {said}"),
        }
    }
}

/// Poll `child` until it exits or `limit` passes.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

impl Drop for Tunnel {
    /// End the session: end-of-file to the remote side, then ssh gets 2 s
    /// to exit before it is killed.
    fn drop(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if wait_for(&mut self.child, Duration::from_secs(2)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
