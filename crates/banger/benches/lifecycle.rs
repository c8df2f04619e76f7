//! Lifecycle benchmark (run with `cargo bench -p banger --bench lifecycle`
//! or `make bench`): a release `bangerd` whose firecracker is the simulator.
//!
//! 1. 50 cycles of create → running → stop → delete, timing each step from
//!    the client, plus the daemon's own overhead from receiving `vm.create`
//!    to sending `InstanceStart` (taken from the daemon's log, with the
//!    VMM's own start-up — spawn to API socket — reported separately).
//! 2. `vm list` with 100 VMs: over an open connection, and end to end as a
//!    `banger vm list --json` process.
//!
//! Prints p50/p95 per operation in ms and cycles per second.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use banger_api::rpc::{VmCreateParams, VmDeleteParams, VmStopParams};
use banger_api::{Request, Vm, VmCreated};
use common::{BenchDaemon, pct};

const CYCLES: usize = 50;
const LIST_VMS: usize = 100;
const LIST_RUNS: usize = 200;

fn main() {
    let mut d = BenchDaemon::start("banger-bench-", "", "info", "64M");
    let (socket, log) = (d.socket.clone(), d.log.clone());
    let c = &mut d.client;

    let (mut create, mut stop, mut delete) = (Vec::new(), Vec::new(), Vec::new());
    let all = Instant::now();
    for i in 0..CYCLES {
        let name = format!("cycle{i}");
        let t = Instant::now();
        let created: VmCreated = c
            .call(Request::VmCreate(VmCreateParams {
                name: name.clone(),
                image: Some("bench".into()),
                ..Default::default()
            }))
            .expect("create");
        let op = c
            .watch(&created.operation.unwrap().id, |_| {})
            .expect("watch");
        assert!(op.error.is_none(), "{:?}", op.error);
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
    let (overhead, vmm_startup, to_start) = daemon_timings(&log);

    println!("banger lifecycle benchmark (simulator as firecracker, release build)");
    println!("{:<48} {:>9} {:>9}", "operation", "p50 ms", "p95 ms");
    row("vm create → running (client, incl. VMM start)", &create);
    row("vm stop (Ctrl-Alt-Del, VMM exits)", &stop);
    row("vm delete", &delete);
    row("daemon: vm.create received → InstanceStart sent", &to_start);
    row("  of which VMM start-up (spawn → API socket)", &vmm_startup);
    row("  daemon's own overhead (the rest)", &overhead);
    row(
        &format!("vm list, {LIST_VMS} VMs (open connection)"),
        &list_rpc,
    );
    row(
        &format!("vm list, {LIST_VMS} VMs (banger process, end to end)"),
        &list_cli,
    );
    println!("cycles per second (create→running→stop→delete): {cycles_per_sec:.1}");
    println!(
        "targets: daemon overhead p50 < 20 ms: {}; vm list (100 VMs, end to end) p50 < 10 ms: {}",
        verdict(pct(&overhead, 50) < Duration::from_millis(20)),
        verdict(pct(&list_cli, 50) < Duration::from_millis(10)),
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// (overhead, vmm start-up, request→InstanceStart) from "VM running" lines.
fn daemon_timings(log: &Path) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, key: &str| -> Option<u64> {
        let start = line.find(&format!("{key}="))? + key.len() + 1;
        line[start..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let (mut o, mut v, mut t) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines().filter(|l| l.contains("VM running")) {
        let (Some(total), Some(vmm)) = (
            field(line, "request_to_instance_start_us"),
            field(line, "vmm_startup_us"),
        ) else {
            continue;
        };
        t.push(Duration::from_micros(total));
        v.push(Duration::from_micros(vmm));
        o.push(Duration::from_micros(total.saturating_sub(vmm)));
    }
    (o, v, t)
}

fn row(name: &str, samples: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<48} {:>9.2} {:>9.2}   (n={})",
        ms(pct(samples, 50)),
        ms(pct(samples, 95)),
        samples.len()
    );
}
