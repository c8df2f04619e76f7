//! Host-network benchmark (`make bench-net`, root):
//!
//! 1. Queries per second of banger's `vm.` DNS server against dnsmasq
//!    serving the same records (`--host-record`, `--local=/vm/`) on the
//!    same machine, both on 127.0.0.1, both loaded by `dnsperf` with the
//!    same query file (A, PTR and NXDOMAIN queries), bounded by a count and
//!    a time limit; the same mix twice, plain and with EDNS (`dnsperf -e`:
//!    an OPT record, as `dig`, glibc's `edns0` and systemd-resolved send).
//!    `ROUNDS` rounds, the order of the servers alternating; each round's
//!    figures and ratio ours/dnsmasq, the medians, and the load average
//!    before and after. Before timing, a sample of the queries (every
//!    name, type and outcome of the mix, plain and EDNS) is sent to both
//!    with `dig` and the answers compared: status, answer records (TTL
//!    aside) and, for EDNS, an OPT record of version 0 in the reply.
//!    Not covered: TCP, queries the fast path declines (they go through
//!    hickory's decoder), many clients.
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
const ROUNDS: usize = 5;
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
    let checked = check_answers(&ours_port, &peer_port);
    let load_before = loadavg();
    // (qps, lost) per round: [plain, edns] x [ours, peer].
    let mut runs: [[Vec<(f64, u64)>; 2]; 2] = Default::default();
    let mut failure = None;
    for round in 0..ROUNDS {
        for (mode, edns) in [false, true].into_iter().enumerate() {
            let mut order = [(0, &ours_port), (1, &peer_port)];
            if round % 2 == 1 {
                order.reverse();
            }
            for (who, port) in order {
                let (p, q) = (port.clone(), queries.clone());
                match tokio::task::spawn_blocking(move || dnsperf(&p, &q, edns))
                    .await
                    .unwrap()
                {
                    Ok(r) => runs[mode][who].push(r),
                    Err(e) => failure = Some(e),
                }
            }
        }
    }
    let load_after = loadavg();
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    server.shutdown().await.unwrap();
    if let Some(e) = failure {
        println!("dns qps: dnsperf failed: {e}");
        return;
    }
    let median = |v: &[(f64, u64)]| {
        let mut v = v.to_vec();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        v[v.len() / 2]
    };
    println!(
        "DNS queries per second (dnsperf on 127.0.0.1, {VMS} VMs, A+PTR+NXDOMAIN; {ROUNDS} rounds of at most {SECONDS} s, servers alternating first; medians)"
    );
    println!("  answers checked with dig: {checked}");
    println!("  load before: {load_before}");
    for (mode, name) in ["plain queries", "EDNS queries (dnsperf -e)"]
        .iter()
        .enumerate()
    {
        let [ours, peer] = &runs[mode];
        let (o, p) = (median(ours), median(peer));
        let per_round: Vec<String> = ours
            .iter()
            .zip(peer)
            .map(|(o, p)| format!("{:.0}/{:.0}={:.2}", o.0, p.0, o.0 / p.0))
            .collect();
        println!("  {name}:");
        println!("    banger vmdns : {:>10.0} qps  (lost {})", o.0, o.1);
        println!("    dnsmasq      : {:>10.0} qps  (lost {})", p.0, p.1);
        println!("    ratio ours/dnsmasq: {:.2}", o.0 / p.0);
        println!("    per round ours/dnsmasq: {}", per_round.join(" "));
    }
    println!("  load after: {load_after}");
}

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Send a sample of the query mix (each kind, plain and EDNS) to both
/// servers with `dig` and compare the answers; panics on a difference.
fn check_answers(ours: &str, peer: &str) -> String {
    if Command::new("dig").arg("-v").output().is_err() {
        return "SKIPPED (dig is not installed: Debian package bind9-dnsutils)".into();
    }
    let sample = [
        ("vm0.vm", "A"),
        ("VM7.vm", "A"),
        ("2.0.30.172.in-addr.arpa", "PTR"),
        ("40.0.30.172.in-addr.arpa", "PTR"),
        ("nope3.vm", "A"),
    ];
    let mut n = 0;
    for (name, qtype) in sample {
        for edns in [false, true] {
            let [o, p] = [ours, peer].map(|port| dig(port, name, qtype, edns));
            assert_eq!(o.0, p.0, "status of {name} {qtype} (edns {edns})");
            assert_eq!(o.1, p.1, "answers to {name} {qtype} (edns {edns})");
            assert_eq!(o.2, edns, "banger's OPT for {name} {qtype} (edns {edns})");
            assert_eq!(p.2, edns, "dnsmasq's OPT for {name} {qtype} (edns {edns})");
            n += 1;
        }
    }
    format!("{n} queries, same status and answers from both")
}

/// (status, answer records without TTL, whether the reply had an EDNS 0
/// OPT record) of one `dig` query.
fn dig(port: &str, name: &str, qtype: &str, edns: bool) -> (String, Vec<String>, bool) {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", port, "+noall", "+comments", "+answer"])
        .args(["+tries=2", "+time=2", "+nocookie"])
        .arg(if edns { "+edns=0" } else { "+noedns" })
        .args([name, qtype])
        .output()
        .expect("run dig");
    let text = String::from_utf8_lossy(&out.stdout);
    let status = text
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("none")
        .to_string();
    let answers = text
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // name ttl class type rdata...: the TTL differs by design.
            let mut kept = vec![f[0].to_ascii_lowercase()];
            kept.extend(f.iter().skip(2).map(|s| s.to_string()));
            kept.join(" ")
        })
        .collect();
    (status, answers, text.contains("EDNS: version: 0"))
}

/// Run dnsperf against 127.0.0.1:`port`, with EDNS when `edns`;
/// (queries per second, lost).
fn dnsperf(port: &str, queries: &std::path::Path, edns: bool) -> Result<(f64, u64), String> {
    let out = Command::new("dnsperf")
        .args(["-s", "127.0.0.1", "-p", port, "-d"])
        .arg(queries)
        .args(edns.then_some("-e"))
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
