//! Host-network benchmark (`make bench-net`, root):
//!
//! 1. Queries per second of banger's `vm.` DNS server against dnsmasq
//!    serving the same records (`--host-record`, `--local=/vm/`) on the
//!    same machine, both on 127.0.0.1, both loaded by `dnsperf` with the
//!    same query file (A, PTR and NXDOMAIN queries), bounded by a count and
//!    a time limit. Printed side by side with the ratio ours / dnsmasq.
//! 2. The TAP-from-pool start path: what `VmmLauncher::launch` adds to a VM
//!    start when the pool has a TAP (pop a TAP, NAT already in place, the
//!    `ip=` argument), p50/p95; and a pool miss (TAP created inline) for
//!    comparison. Runs in a private network namespace (`unshare`) with the
//!    real privileged operations, so nothing touches the host's network.
//!
//! Missing tools or privileges are reported as SKIP lines.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_daemon::config::Config;
use banger_daemon::host_network::HostNetwork;
use banger_privops::{LocalPrivOps, Policy, PrivilegedOps};
use banger_testsupport::skip;
use banger_vmdns::{DnsServer, Zone};

const VMS: u8 = 50;
const SECONDS: &str = "3";
const ROUNDS: usize = 3;
const MAX_RUNS: &str = "2000";

fn main() {
    if !nix::unistd::geteuid().is_root() {
        skip!(
            "network bench",
            "needs root (private network namespace, TAPs, dnsmasq)"
        );
    }
    // Everything below runs in a namespace of its own.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let _ = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(dns_qps());
    rt.block_on(tap_start_path());
}

async fn dns_qps() {
    if Command::new("dnsperf").arg("-h").output().is_err() {
        skip!(
            "dns qps",
            "dnsperf is not installed (Debian package dnsperf)"
        );
    }
    if Command::new("dnsmasq").arg("--version").output().is_err() {
        skip!(
            "dns qps",
            "dnsmasq is not installed (Debian package dnsmasq-base)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let queries = dir.path().join("queries");
    let mut q = String::new();
    let mut host_records = Vec::new();
    for i in 0..VMS {
        let ip = Ipv4Addr::new(172, 30, 0, 2 + i);
        q.push_str(&format!(
            "vm{i}.vm A\n{}.0.30.172.in-addr.arpa PTR\nnope{i}.vm A\n",
            2 + i
        ));
        host_records.push(format!("--host-record=vm{i}.vm,{ip}"));
    }
    std::fs::write(&queries, q).unwrap();

    // Both servers up at once, idle until queried; then alternating
    // dnsperf rounds so that load from elsewhere on the machine hits both
    // alike. The median round of each is reported.
    let zone = Arc::new(Zone::new((Ipv4Addr::new(172, 30, 0, 0), 24)));
    for i in 0..VMS {
        zone.publish(&format!("vm{i}"), Ipv4Addr::new(172, 30, 0, 2 + i));
    }
    let server = DnsServer::bind("127.0.0.1:0".parse().unwrap(), zone)
        .await
        .unwrap();
    let ours_port = server.local_addr().port().to_string();
    let peer_port = free_udp_port().to_string();
    let mut dnsmasq = Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--conf-file=/dev/null",
        ])
        .args([
            "--listen-address=127.0.0.1",
            "--bind-interfaces",
            "--pid-file=",
        ])
        .arg(format!("--port={peer_port}"))
        .args([
            "--local=/vm/",
            "--local=/0.30.172.in-addr.arpa/",
            "--cache-size=1000",
        ])
        .args(&host_records)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dnsmasq");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let mut failure = None;
    for _ in 0..ROUNDS {
        for (port, into) in [(&ours_port, &mut ours), (&peer_port, &mut peer)] {
            let (p, q) = (port.clone(), queries.clone());
            match tokio::task::spawn_blocking(move || dnsperf(&p, &q))
                .await
                .unwrap()
            {
                Ok(r) => into.push(r),
                Err(e) => failure = Some(e),
            }
        }
    }
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    server.shutdown().await.unwrap();
    if let Some(e) = failure {
        println!("dns qps: dnsperf failed: {e}");
        return;
    }
    let median = |v: &mut Vec<(f64, u64)>| {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    let (o, p) = (median(&mut ours), median(&mut peer));
    println!(
        "DNS queries per second (dnsperf on 127.0.0.1, {VMS} VMs, A+PTR+NXDOMAIN; median of {ROUNDS} alternating rounds of at most {SECONDS} s)"
    );
    println!("  banger vmdns : {:>10.0} qps  (lost {})", o.0, o.1);
    println!("  dnsmasq      : {:>10.0} qps  (lost {})", p.0, p.1);
    println!("  ratio ours/dnsmasq: {:.2}", o.0 / p.0);
}

/// Run dnsperf against 127.0.0.1:`port`; (queries per second, lost).
fn dnsperf(port: &str, queries: &std::path::Path) -> Result<(f64, u64), String> {
    let out = Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", port, "-d"])
        .arg(queries)
        .args([
            "-l", SECONDS, "-n", MAX_RUNS, "-c", "4", "-T", "2", "-q", "200", "-t", "2",
        ])
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .map(str::to_string)
    };
    let qps = field("Queries per second")
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| format!("no qps in dnsperf output:\n{text}"))?;
    let lost = field("Queries lost")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((qps, lost))
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn tap_start_path() {
    if !std::path::Path::new(banger_privops::TUN_DEVICE).exists() {
        skip!("tap start path", "/dev/net/tun is missing");
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.network.tap_pool_size = 4;
    config.network.dns_port = 0;
    let privops: Arc<dyn PrivilegedOps> = Arc::new(LocalPrivOps::new(Policy {
        device_prefix: "bg".into(),
        state_dir: dir.path().join("state"),
        runtime_dir: dir.path().join("run"),
        subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: 0,
        vmm_binary: "/nonexistent".into(),
    }));
    let net = Arc::new(HostNetwork::new(privops, &config, dir.path()));
    net.setup().await.expect("bridge in the private namespace");
    let guest = Ipv4Addr::new(172, 30, 0, 2);
    // First start applies NAT; the path measured is every later one.
    let t = net.take_tap().await.unwrap();
    net.nat
        .ensure(net.privops(), &net.settings, guest, &t)
        .await
        .unwrap();
    net.give_back(t);

    let mut hit = Vec::new();
    let mut miss = Vec::new();
    for _ in 0..200 {
        wait_pool_full(&net).await;
        let started = Instant::now();
        let tap = net.take_tap().await.unwrap();
        net.nat
            .ensure(net.privops(), &net.settings, guest, &tap)
            .await
            .unwrap();
        let arg = net.settings.kernel_ip_arg(guest);
        hit.push(started.elapsed());
        std::hint::black_box(arg);
        net.give_back(tap);
    }
    // Pool misses: a pool of size 0 on the same bridge creates every TAP
    // inline (and never refills behind the measurement's back).
    let mut no_pool = config.clone();
    no_pool.network.tap_pool_size = 0;
    let cold = Arc::new(HostNetwork::new(
        Arc::clone(net.privops()),
        &no_pool,
        dir.path(),
    ));
    cold.setup().await.expect("bridge again (idempotent)");
    for _ in 0..30 {
        let started = Instant::now();
        let tap = cold.take_tap().await.unwrap();
        miss.push(started.elapsed());
        cold.give_back(tap); // pool full (size 0): deleted in the background
    }
    println!("TAP start path (200 starts from the warm pool, 30 pool misses; private netns)");
    row("pool hit", &mut hit);
    row("pool miss (TAP created inline)", &mut miss);
    let _ = net.reset().await;
}

async fn wait_pool_full(net: &Arc<HostNetwork>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while net.pool.missing() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn row(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let p = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)];
    println!("  {name:<32} p50 {:>9.1?}  p95 {:>9.1?}", p(50), p(95));
}
