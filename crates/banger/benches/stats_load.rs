//! Stats-loop load benchmark (run with `cargo bench -p banger --bench
//! stats_load` or `make bench`): a release `bangerd` whose firecracker is
//! the simulator, network disabled, `stats_interval_secs = 1`, and
//! `BENCH_VMS` (default 200) running VMs.
//!
//! While the stats loop samples every VM once a second, one client calls
//! `vm.list` back to back over an open connection for `BENCH_SECS`
//! (default 12) seconds, and a second one `vm.stats` of one VM every 50 ms.
//! It prints p50, p99 and max of each, the longest gap between two answers,
//! the daemon's CPU use, and the stats tick duration the daemon logs
//! (`stats tick` lines, debug level). The target: no RPC waits more than
//! 50 ms behind the stats loop, judged on `vm.list` (a cheap RPC);
//! `vm.stats` scans `/proc` itself (on a blocking thread) to find the
//! VMM's children, so its own cost grows with the host's process count.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use banger_api::rpc::{VmCreateParams, VmRef};
use banger_api::{Request, Vm, VmCreated, VmStats};
use banger_cli::client::Client;
use common::{BenchDaemon, connect, pct};

fn env_num(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let vms = env_num("BENCH_VMS", 200);
    let secs = env_num("BENCH_SECS", 12) as u64;
    let mut d = BenchDaemon::start(
        "banger-bench-stats-",
        "stats_interval_secs = 1\n",
        "info,banger_daemon::vms::stats=debug",
        "16M",
    );
    let (socket, log) = (d.socket.clone(), d.log.clone());
    let daemon_pid = d.process.id();
    let c = &mut d.client;

    let t = Instant::now();
    let mut ops = Vec::new();
    for i in 0..vms {
        let created: VmCreated = c
            .call(Request::VmCreate(VmCreateParams {
                name: format!("load{i}"),
                image: Some("bench".into()),
                vcpus: Some(1),
                ..Default::default()
            }))
            .expect("create");
        ops.push(created.operation.unwrap().id);
    }
    for op in &ops {
        let op = c.watch(op, |_| {}).expect("watch");
        assert!(op.error.is_none(), "{:?}", op.error);
    }
    let started_in = t.elapsed();
    let listed: Vec<Vm> = c.call(Request::VmList).expect("list");
    let running = listed
        .iter()
        .filter(|v| v.state == banger_api::VmState::Running)
        .count();
    let sim_rss = sim_rss_bytes(c, vms.min(10));
    // Let the first ticks that see every VM pass.
    std::thread::sleep(Duration::from_secs(2));
    let log_mark = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let daemon_cpu_before = cpu_ticks(daemon_pid);

    let stop = Arc::new(AtomicBool::new(false));
    let stats_thread = {
        let stop = Arc::clone(&stop);
        let socket = socket.clone();
        std::thread::spawn(move || {
            let mut c = connect(&socket);
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let _: VmStats = c
                    .call(Request::VmStats(VmRef { vm: "load0".into() }))
                    .expect("vm stats");
                lat.push(t.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            lat
        })
    };
    let mut list = Vec::new();
    let mut gap = Duration::ZERO;
    let window = Instant::now();
    let mut last = Instant::now();
    while window.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let vms_now: Vec<Vm> = c.call(Request::VmList).expect("list");
        let done = Instant::now();
        list.push(done - t);
        gap = gap.max(done - last);
        last = done;
        assert_eq!(vms_now.len(), vms);
    }
    stop.store(true, Ordering::Relaxed);
    let stats_lat = stats_thread.join().unwrap();
    let daemon_cpu = cpu_ticks(daemon_pid).saturating_sub(daemon_cpu_before);
    let window_secs = window.elapsed().as_secs_f64();

    // End the VMMs (they outlive the daemon), then the daemon.
    for v in &listed {
        let _ = c.call::<Vm>(Request::VmKill(VmRef { vm: v.id.clone() }));
    }
    d.stop();
    let ticks = tick_durations(&log, log_mark);

    println!(
        "banger stats-load benchmark (simulator as firecracker, release build, stats every 1 s)"
    );
    println!(
        "{vms} VMs started in {:.1} s, {running} running; simulator RSS {:.1} MiB each (p50)",
        started_in.as_secs_f64(),
        sim_rss as f64 / 1048576.0
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        format!("over {secs} s"),
        "p50 ms",
        "p99 ms",
        "max ms"
    );
    row(&format!("vm.list, {vms} VMs (open connection)"), &list);
    row("vm.stats, one VM (every 50 ms)", &stats_lat);
    row("stats tick (daemon log)", &ticks);
    println!(
        "longest gap between two vm.list answers: {:.1} ms; daemon CPU {:.0} % of one core",
        gap.as_secs_f64() * 1000.0,
        daemon_cpu as f64 / clock_ticks() as f64 / window_secs * 100.0
    );
    let worst = pct(&list, 100);
    println!(
        "target: no RPC waits more than 50 ms behind the stats loop (vm.list max {:.1} ms): {}",
        worst.as_secs_f64() * 1000.0,
        if worst <= Duration::from_millis(50) {
            "met"
        } else {
            "MISSED"
        }
    );
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command name, field 3 is f[0]: utime (14) and stime (15).
    let n = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    n(14) + n(15)
}

fn clock_ticks() -> u64 {
    banger_fcproc::clock_ticks_per_sec()
}

/// The median resident size of the first `n` VMMs, as `vm.stats` reports it.
fn sim_rss_bytes(c: &mut Client, n: usize) -> u64 {
    let mut rss: Vec<u64> = (0..n)
        .filter_map(|i| {
            c.call::<VmStats>(Request::VmStats(VmRef {
                vm: format!("load{i}"),
            }))
            .ok()
        })
        .map(|s| s.rss_bytes)
        .collect();
    rss.sort();
    rss.get(rss.len() / 2).copied().unwrap_or(0)
}

/// `elapsed_us` of the `stats tick` lines logged after byte `from`.
fn tick_durations(log: &Path, from: u64) -> Vec<Duration> {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default());
    text.lines()
        .filter(|l| l.contains("stats tick"))
        .filter_map(|l| {
            let start = l.find("elapsed_us=")? + "elapsed_us=".len();
            l[start..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .map(Duration::from_micros)
        .collect()
}

fn row(name: &str, samples: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<44} {:>9.2} {:>9.2} {:>9.2}   (n={})",
        ms(pct(samples, 50)),
        ms(pct(samples, 99)),
        ms(pct(samples, 100)),
        samples.len()
    );
}
