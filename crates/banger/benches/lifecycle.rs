//! Lifecycle benchmark (run with `cargo bench -p banger --bench lifecycle`
//! or `make bench`): a release `bangerd` whose firecracker is the simulator,
//! on banger's **default configuration** (network with NAT and `vm.` DNS,
//! an 8 GiB work disk per VM, keys and git identity synced), readiness
//! `none` (the simulator boots no guest). The daemon runs inside a
//! throwaway network namespace (`ip netns add`), so it needs root; without
//! root it prints why and measures nothing.
//!
//! 1. 50 cycles of create → running → stop → delete, timing each step from
//!    the client, plus the daemon's own overhead from receiving `vm.create`
//!    to sending `InstanceStart` (taken from the daemon's log, with the
//!    VMM's own start-up — spawn to API socket — reported separately) and
//!    where that overhead goes (validation, reservation and root disk; work
//!    disk; identity sync; network; the VMM's API configuration).
//! 2. Throughput: 20 creates sent at once on 20 connections, creates per
//!    second until all 20 run.
//! 3. `vm list` with 100 VMs: over an open connection, and end to end as a
//!    `banger vm list --json` process.
//!
//! Prints p50/p95 per operation in ms, cycles per second and creates per
//! second, with the load average before and after (the machine may be
//! shared).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use banger_api::rpc::{VmCreateParams, VmDeleteParams, VmStopParams};
use banger_api::{Request, Vm, VmCreated};
use common::{BenchDaemon, Setup, connect, pct};

const CYCLES: usize = 50;
const CONCURRENT: usize = 20;
const LIST_VMS: usize = 100;
const LIST_RUNS: usize = 200;

/// A throwaway network namespace, deleted when dropped.
struct NetNs(String);

impl NetNs {
    fn add() -> Result<NetNs, String> {
        let name = format!("banger-bench-{}", std::process::id());
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("cannot run ip: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        ip(&["netns", "add", &name])?;
        let ns = NetNs(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!(
            "SKIP lifecycle benchmark: needs root (the default configuration's network runs in a private network namespace); run `sudo make bench`"
        );
        return;
    }
    let ns = match NetNs::add() {
        Ok(ns) => ns,
        Err(e) => {
            println!("SKIP lifecycle benchmark: cannot make a network namespace: {e}");
            return;
        }
    };
    let load_before = load_average();
    let setup = Setup::Default {
        netns: ns.0.clone(),
    };
    let mut d = BenchDaemon::start_with("banger-bench-", &setup, "info", "64M");
    let (socket, log) = (d.socket.clone(), d.log.clone());
    let c = &mut d.client;

    let (mut create, mut stop, mut delete) = (Vec::new(), Vec::new(), Vec::new());
    let all = Instant::now();
    for i in 0..CYCLES {
        let name = format!("cycle{i}");
        let t = Instant::now();
        create_running(c, &name);
        create.push(t.elapsed());
        let t = Instant::now();
        let _: Vm = c
            .call(Request::VmStop(VmStopParams {
                vm: name.clone(),
                timeout_secs: None,
            }))
            .expect("stop");
        stop.push(t.elapsed());
        let t = Instant::now();
        let _: banger_api::Deleted = c
            .call(Request::VmDelete(VmDeleteParams {
                vm: name,
                force: false,
            }))
            .expect("delete");
        delete.push(t.elapsed());
    }
    let cycles_per_sec = CYCLES as f64 / all.elapsed().as_secs_f64();

    // Throughput: CONCURRENT creates at once, each on its own connection.
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(CONCURRENT + 1));
    let workers: Vec<_> = (0..CONCURRENT)
        .map(|i| {
            let (socket, barrier) = (socket.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut c = connect(&socket);
                barrier.wait();
                create_running(&mut c, &format!("burst{i}"));
            })
        })
        .collect();
    barrier.wait();
    let burst = Instant::now();
    for w in workers {
        w.join().expect("create worker");
    }
    let creates_per_sec = CONCURRENT as f64 / burst.elapsed().as_secs_f64();
    for i in 0..CONCURRENT {
        let _: banger_api::Deleted = c
            .call(Request::VmDelete(VmDeleteParams {
                vm: format!("burst{i}"),
                force: true,
            }))
            .expect("delete");
    }

    for i in 0..LIST_VMS {
        let created: VmCreated = c
            .call(Request::VmCreate(VmCreateParams {
                name: format!("list{i}"),
                image: Some("bench".into()),
                no_start: true,
                ..Default::default()
            }))
            .expect("create for list");
        c.watch(&created.operation.unwrap().id, |_| {})
            .expect("watch");
    }
    let mut list_rpc = Vec::new();
    for _ in 0..LIST_RUNS {
        let t = Instant::now();
        let vms: Vec<Vm> = c.call(Request::VmList).expect("list");
        list_rpc.push(t.elapsed());
        assert_eq!(vms.len(), LIST_VMS);
    }
    let mut list_cli = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_banger"))
            .arg("--socket")
            .arg(&socket)
            .args(["vm", "list", "--json"])
            .output()
            .expect("banger vm list");
        list_cli.push(t.elapsed());
        assert!(out.status.success());
    }

    d.stop();
    drop(ns);
    let t = daemon_timings(&log, CYCLES);

    println!(
        "banger lifecycle benchmark (simulator as firecracker, release build), default configuration:"
    );
    println!(
        "  network on (bridge, TAP pool, NAT, vm. DNS; private network namespace), 8 GiB work disk, identity sync on, readiness none"
    );
    println!(
        "  load average before {load_before}, after {}; {} CPUs",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<52} {:>9} {:>9}", "operation", "p50 ms", "p95 ms");
    row("vm create → running (client, incl. VMM start)", &create);
    row("vm stop (Ctrl-Alt-Del, VMM exits)", &stop);
    row("vm delete", &delete);
    row(
        "daemon: vm.create received → InstanceStart sent",
        &t.to_start,
    );
    row(
        "  of which VMM start-up (spawn → API socket)",
        &t.vmm_startup,
    );
    row("  daemon's own overhead (the rest)", &t.overhead);
    row("    validate, reserve, root disk", &t.root_disk);
    row("    work disk", &t.work_disk);
    row("    keys and git identity", &t.identity);
    row("    network (TAP, NAT)", &t.network);
    row("    VMM configuration (API calls)", &t.configure);
    row(
        &format!("vm list, {LIST_VMS} VMs (open connection)"),
        &list_rpc,
    );
    row(
        &format!("vm list, {LIST_VMS} VMs (banger process, end to end)"),
        &list_cli,
    );
    println!("cycles per second (create→running→stop→delete): {cycles_per_sec:.1}");
    println!("{CONCURRENT} concurrent creates: {creates_per_sec:.1} creates per second");
    println!(
        "targets: daemon overhead p50 ≤ 20 ms: {}; vm list (100 VMs, end to end) p50 < 10 ms: {}",
        verdict(pct(&t.overhead, 50) <= Duration::from_millis(20)),
        verdict(pct(&list_cli, 50) < Duration::from_millis(10)),
    );
}

/// Create VM `name` of image `bench` and wait until its operation ends.
fn create_running(c: &mut banger_cli::client::Client, name: &str) {
    let created: VmCreated = c
        .call(Request::VmCreate(VmCreateParams {
            name: name.to_string(),
            image: Some("bench".into()),
            ..Default::default()
        }))
        .expect("create");
    let op = c
        .watch(&created.operation.unwrap().id, |_| {})
        .expect("watch");
    assert!(op.error.is_none(), "{:?}", op.error);
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// The daemon's timings of the first `n` creates, from its "VM running"
/// log lines.
#[derive(Default)]
struct DaemonTimings {
    to_start: Vec<Duration>,
    vmm_startup: Vec<Duration>,
    overhead: Vec<Duration>,
    root_disk: Vec<Duration>,
    work_disk: Vec<Duration>,
    identity: Vec<Duration>,
    network: Vec<Duration>,
    configure: Vec<Duration>,
}

fn daemon_timings(log: &Path, n: usize) -> DaemonTimings {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, key: &str| -> Option<Duration> {
        let start = line.find(&format!(" {key}="))? + key.len() + 2;
        line[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
            .map(Duration::from_micros)
    };
    let mut t = DaemonTimings::default();
    for line in text.lines().filter(|l| l.contains("VM running")).take(n) {
        let (Some(total), Some(vmm)) = (
            field(line, "request_to_instance_start_us"),
            field(line, "vmm_startup_us"),
        ) else {
            continue;
        };
        t.to_start.push(total);
        t.vmm_startup.push(vmm);
        t.overhead.push(total.saturating_sub(vmm));
        for (key, v) in [
            ("before_start_us", &mut t.root_disk),
            ("work_disk_us", &mut t.work_disk),
            ("identity_us", &mut t.identity),
            ("network_us", &mut t.network),
            ("configure_us", &mut t.configure),
        ] {
            if let Some(d) = field(line, key) {
                v.push(d);
            }
        }
    }
    t
}

fn row(name: &str, samples: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<52} {:>9.2} {:>9.2}   (n={})",
        ms(pct(samples, 50)),
        ms(pct(samples, 95)),
        samples.len()
    );
}
