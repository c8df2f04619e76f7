//! Out of file descriptors, the TCP accept loop backs off instead of
//! spinning, and serves again once descriptors are free. Its own test
//! binary: it lowers this process's `RLIMIT_NOFILE` and fills the table.

use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_vmdns::{DnsServer, Zone};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// utime + stime of this process, in clock ticks, read through `stat`
/// (`/proc/self/stat`, opened before the table is full).
fn cpu_ticks(stat: &std::fs::File) -> u64 {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 4096];
    let n = stat.read_at(&mut buf, 0).unwrap();
    let stat = String::from_utf8_lossy(&buf[..n]);
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_backs_off_when_out_of_descriptors() {
    let zone = Arc::new(Zone::new((Ipv4Addr::new(172, 30, 0, 0), 24)));
    zone.publish("dev", Ipv4Addr::new(172, 30, 0, 7));
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), Arc::clone(&zone))
        .await
        .unwrap();
    let addr = server.local_addr();

    // A small table, then fill all of it with copies of one descriptor.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = 256;
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    let stat = std::fs::File::open("/proc/self/stat").unwrap();
    let seed = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let mut filler = Vec::new();
    while let Ok(fd) = seed.try_clone() {
        filler.push(fd);
    }
    assert!(!filler.is_empty());
    // One free slot for the client socket: its connection completes in the
    // kernel and waits in the listen queue, where accept cannot take it.
    filler.pop();
    let mut client = TcpStream::connect(addr).await.unwrap();

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (cpu0, t0) = (cpu_ticks(&stat), Instant::now());
    tokio::time::sleep(Duration::from_secs(2)).await;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let used = (cpu_ticks(&stat) - cpu0) as f64 / hz / t0.elapsed().as_secs_f64();
    eprintln!(
        "process CPU while accept fails: {:.1} % of one core",
        used * 100.0
    );
    assert!(
        used < 0.30,
        "the accept loop spins while out of descriptors: {:.0} % of a core",
        used * 100.0
    );

    // Free descriptors: the queued connection is accepted and answered.
    filler.truncate(filler.len().saturating_sub(16));
    let mut msg = vec![0x00, 0x2a, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    msg.extend_from_slice(b"\x03dev\x02vm\x00\x00\x01\x00\x01");
    let mut out = (msg.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&msg);
    client.write_all(&out).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut len))
        .await
        .expect("the queued connection is served once descriptors are free")
        .unwrap();
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    client.read_exact(&mut body).await.unwrap();
    assert_eq!(&body[..2], &[0x00, 0x2a], "the answer to our query");
    assert_eq!(u16::from_be_bytes([body[6], body[7]]), 1, "one answer");
    drop(filler);
    server.shutdown().await.unwrap();
}
