//! Firecracker's hybrid vsock on the host side, bridged to QEMU's vhost-vsock.
//!
//! A client connects to the device's Unix socket and writes `CONNECT <port>\n`;
//! the bridge opens an `AF_VSOCK` stream to `(guest_cid, port)`, answers
//! `OK <local port>\n` and then copies bytes both ways until either side
//! closes. When nothing listens in the guest the client's connection is
//! closed without an answer, which is what Firecracker does.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

/// Longest accepted `CONNECT <port>\n` line.
const MAX_CONNECT_LINE: usize = 32;

/// The guest port named by a hybrid-vsock `CONNECT` line (without the newline).
pub fn parse_connect(line: &str) -> Option<u32> {
    line.strip_prefix("CONNECT ")?.trim().parse().ok()
}

/// Serves one client of the hybrid socket (blocking; run on its own thread).
pub fn bridge(client: UnixStream, guest_cid: u32) {
    bridge_with(client, |port| connect_vsock(guest_cid, port));
}

/// [`bridge`] with the guest connection made by `connect(port)`, which
/// returns the connected stream and the local port to report.
fn bridge_with(mut client: UnixStream, connect: impl FnOnce(u32) -> io::Result<(OwnedFd, u32)>) {
    let Some(port) = read_connect(&mut client) else {
        return;
    };
    let Ok((vsock, local_port)) = connect(port) else {
        // Nothing listens on that port (or the guest is not up): close.
        return;
    };
    if client
        .write_all(format!("OK {local_port}\n").as_bytes())
        .is_err()
    {
        return;
    }
    let mut guest = std::fs::File::from(vsock);
    let (Ok(mut client_rx), Ok(mut guest_tx)) = (client.try_clone(), guest.try_clone()) else {
        return;
    };
    let upstream = std::thread::spawn(move || {
        let _ = io::copy(&mut client_rx, &mut guest_tx);
        // SAFETY: shutdown(2) on a socket descriptor we own.
        unsafe { libc::shutdown(guest_tx.as_raw_fd(), libc::SHUT_WR) };
    });
    let _ = io::copy(&mut guest, &mut client);
    let _ = client.shutdown(Shutdown::Write);
    let _ = upstream.join();
}

fn read_connect(client: &mut UnixStream) -> Option<u32> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_CONNECT_LINE {
        match client.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => {
                return parse_connect(std::str::from_utf8(&line).ok()?);
            }
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    None
}

/// Connects an `AF_VSOCK` stream to `(cid, port)`; returns it and its local port.
fn connect_vsock(cid: u32, port: u32) -> io::Result<(OwnedFd, u32)> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = cid;
    addr.svm_port = port;
    let len = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_vm of `len` bytes.
    let rc = unsafe {
        libc::connect(
            owned.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above; getsockname fills at most `len` bytes.
    let mut local: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    let mut local_len = len;
    let rc = unsafe {
        libc::getsockname(
            owned.as_raw_fd(),
            (&mut local as *mut libc::sockaddr_vm).cast(),
            &mut local_len,
        )
    };
    let local_port = if rc == 0 { local.svm_port } else { 0 };
    Ok((owned, local_port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_lines() {
        assert_eq!(parse_connect("CONNECT 52"), Some(52));
        assert_eq!(parse_connect("CONNECT 52\r"), Some(52));
        assert_eq!(parse_connect("CONNECT x"), None);
        assert_eq!(parse_connect("connect 52"), None);
    }

    #[test]
    fn connect_answers_ok_and_splices_both_ways() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            bridge_with(theirs, |port| {
                assert_eq!(port, 52);
                // A Unix socket pair stands in for the AF_VSOCK stream; the
                // "guest" echoes what it reads.
                let (host, mut guest) = UnixStream::pair()?;
                std::thread::spawn(move || {
                    let mut reader = guest.try_clone().unwrap();
                    let _ = io::copy(&mut reader, &mut guest);
                });
                Ok((OwnedFd::from(host), 1234))
            })
        });
        ours.write_all(b"CONNECT 52\nping").unwrap();
        let mut answer = [0u8; 12];
        ours.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"OK 1234\nping");
        ours.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        ours.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{rest:?}");
        server.join().unwrap();
    }

    #[test]
    fn a_port_nobody_serves_closes_without_answer() {
        // CID 1 is the local loopback; with no vsock support at all the
        // connect fails too. Either way the client sees EOF and no "OK".
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || bridge(theirs, 1));
        ours.write_all(b"CONNECT 1\n").unwrap();
        let mut answer = String::new();
        ours.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "");
        server.join().unwrap();
    }
}
