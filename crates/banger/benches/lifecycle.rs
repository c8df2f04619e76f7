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

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banger_api::rpc::{ImageRegisterParams, VmCreateParams, VmDeleteParams, VmStopParams};
use banger_api::{Image, Request, Vm, VmCreated};
use banger_cli::client::Client;

const CYCLES: usize = 50;
const LIST_VMS: usize = 100;
const LIST_RUNS: usize = 200;

fn main() {
    let dir = tempfile::Builder::new()
        .prefix("banger-bench-")
        .tempdir()
        .unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "firecracker_bin = {:?}\n[daemon]\nstop_timeout_secs = 5\n[network]\nenabled = false\n[guest]\nreadiness = \"none\"\nsync_identity = false\n",
            env!("CARGO_BIN_EXE_banger-fcsim")
        ),
    )
    .unwrap();
    let (rootfs, kernel) = fixtures(dir.path());
    let log = dir.path().join("bangerd.log");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_bangerd"))
        .arg("--state-dir")
        .arg(&state)
        .arg("--config")
        .arg(&config)
        .arg("--log")
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start bangerd");
    let socket = state.join("run/bangerd.sock");
    let mut c = connect(&socket);
    let _: Image = c
        .call(Request::ImageRegister(ImageRegisterParams {
            name: "bench".into(),
            rootfs: rootfs.display().to_string(),
            kernel: kernel.display().to_string(),
            initrd: None,
            kernel_name: None,
        }))
        .expect("register");

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

    let _ = daemon.kill();
    let _ = daemon.wait();
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

fn connect(socket: &Path) -> Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Client::connect(socket) {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("bangerd did not come up: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn fixtures(dir: &Path) -> (PathBuf, PathBuf) {
    let rootfs = dir.join("rootfs.ext4");
    banger_testsupport::ext4::Mkfs::new()
        .file("etc/hostname", "bench\n")
        .build(&rootfs, "64M")
        .expect("mkfs.ext4 is needed");
    let kernel = dir.join("vmlinux");
    let mut h = vec![0u8; 4096];
    h[0..4].copy_from_slice(b"\x7fELF");
    h[4] = 2;
    h[5] = 1;
    h[6] = 1;
    h[16] = 2;
    h[18] = 62;
    h[20] = 1;
    h[24..32].copy_from_slice(&0x0100_0000u64.to_le_bytes());
    h[32] = 64; // program headers right after the ELF header
    h[54] = 56; // program header size
    h[56] = 1; // one program header
    std::fs::write(&kernel, h).unwrap();
    (rootfs, kernel)
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

fn pct(samples: &[Duration], p: usize) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    let mut s = samples.to_vec();
    s.sort();
    s[((s.len() - 1) * p) / 100]
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
