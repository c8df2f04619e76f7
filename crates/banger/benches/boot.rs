//! Boot benchmark (`make bench-boot`, root): `vm create` → ready of the
//! default image under the QEMU front (`banger-fcqemu`, `-M microvm`, TCG
//! unless `BANGER_QEMU_ACCEL=kvm`), side by side with its peer, the same
//! QEMU command line (same kernel, root filesystem, work disk, kernel
//! command line, NIC) run by hand without banger.
//!
//! 1. A daemon (guest network off, in the machine's namespace so
//!    mmdebstrap reaches the mirror) registers banger's microVM kernel with
//!    `banger kernel build` (from its build cache, seeded from CI's cache
//!    `/var/cache/banger-ci/microvm-kernel` or `BANGER_TEST_MICROVM_KERNEL`;
//!    without one, or with `BANGER_BENCH_KERNEL=debian`, the default image
//!    boots Debian's cloud kernel and its initrd) and
//!    builds the default image (`banger image build`; the bootstrap comes
//!    from `$BANGER_TEST_CACHE` when cached).
//! 2. The daemon restarts inside a private network namespace with the
//!    network on; `BANGER_BENCH_BOOTS` (default 5) times `vm create` →
//!    ready (readiness `auto`: the agent over vsock where the VMM has it,
//!    the SSH banner otherwise), then `vm delete`. The split comes from the
//!    daemon's `VM running` log line: banger's own work, the VMM's
//!    start-up, `InstanceStart`, the guest's boot.
//! 3. The peer: the QEMU argv the front ran for the first VM, with fresh
//!    copies of the image's root filesystem and that VM's work disk, its own
//!    TAP on banger's bridge, serial to a file and no QMP; ready = the SSH
//!    banner on the guest address, probed from inside the namespace.
//!
//! Prints p50/p95 of each, banger's share and the ratio banger/peer.
//! Guest addresses are only ever dialled from inside the namespace.

#[path = "../tests/e2e/qemuguest/mod.rs"]
mod qemuguest;
#[path = "../tests/e2e/util/mod.rs"]
mod util;

use std::io::Read as _;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use banger_api::{Image, Vm};
use util::TestDaemon;
use util::boot::timings;
use util::debian::{keep_bootstrap, link_all, static_agent, test_cache};

const FRONT: &str = env!("CARGO_BIN_EXE_banger-fcqemu");
const READY_SECS: u64 = 300;

fn config(agent: &Path, network: bool) -> String {
    format!(
        "firecracker_bin = {FRONT:?}\n\
         [daemon]\nstop_timeout_secs = 20\n\
         [vm]\nvcpus = 2\nmemory = \"1G\"\n\
         [guest]\nreadiness = \"auto\"\nreadiness_timeout_secs = {READY_SECS}\nagent = {:?}\n\
         [network]\nenabled = {network}\ntap_pool_size = 1\n",
        agent.display().to_string()
    )
}

fn which(p: &str) -> bool {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(p).is_file())
}

fn missing() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("needs root (network namespace, TAPs)".into());
    }
    ["qemu-system-x86_64", "mmdebstrap", "ip", "nft"]
        .into_iter()
        .find(|t| !which(t))
        .map(|t| format!("{t} is not installed"))
}

struct Bench {
    d: TestDaemon,
    home: tempfile::TempDir,
    ns: String,
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.cli(&["vm", "delete", "--force", "b0"]);
        self.d.kill_hard();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

impl Bench {
    fn cli(&self, args: &[&str]) -> Output {
        self.d.cli_in_netns(&self.ns, self.home.path(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "banger {args:?}: {}\ndaemon log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            util::tail(&self.d.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[i.min(s.len() - 1)]
}

fn p50_p95(v: &[f64]) -> String {
    format!("{:8.2} {:8.2}", percentile(v, 0.5), percentile(v, 0.95))
}

/// PIDs whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    qemuguest::children(pid)
}

/// The argv of the QEMU the front `pid` runs.
fn qemu_argv(front: u32) -> Vec<String> {
    let qemu = children(front)
        .into_iter()
        .find(|c| {
            std::fs::read_to_string(format!("/proc/{c}/comm"))
                .is_ok_and(|n| n.trim().starts_with("qemu"))
        })
        .expect("the front's QEMU child");
    let raw = std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The peer's argv: the front's, with the drives, TAP and serial replaced
/// and QMP dropped.
fn peer_argv(argv: &[String], disks: &[PathBuf], tap: &str, console: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        let next = argv.get(i + 1).cloned().unwrap_or_default();
        match a.as_str() {
            "-qmp" => {
                i += 2;
                continue;
            }
            "-chardev" if next.contains("id=serial0") => {
                out.push(a.clone());
                out.push(format!(
                    "file,id=serial0,path={}",
                    console.display().to_string().replace(',', ",,")
                ));
                i += 2;
                continue;
            }
            "-drive" => {
                let idx: usize = next
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("id=drive"))
                    .and_then(|n| n.parse().ok())
                    .expect("drive id");
                let rest: Vec<&str> = next
                    .split(',')
                    .filter(|kv| !kv.starts_with("file="))
                    .collect();
                out.push(a.clone());
                out.push(format!(
                    "file={},{}",
                    disks[idx].display().to_string().replace(',', ",,"),
                    rest.join(",")
                ));
                i += 2;
                continue;
            }
            "-netdev" => {
                let rest: Vec<String> = next
                    .split(',')
                    .map(|kv| {
                        if kv.starts_with("ifname=") {
                            format!("ifname={tap}")
                        } else {
                            kv.to_string()
                        }
                    })
                    .collect();
                out.push(a.clone());
                out.push(rest.join(","));
                i += 2;
                continue;
            }
            _ => out.push(a.clone()),
        }
        i += 1;
    }
    out
}

/// Wait for an `SSH-` banner on `ip:22`, probing from inside `ns`.
fn wait_banner(ns: &str, ip: std::net::Ipv4Addr, limit: Duration) -> Option<Duration> {
    let path = format!("/run/netns/{ns}");
    let start = Instant::now();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let addr = std::net::SocketAddr::from((ip, 22));
        while start.elapsed() < limit {
            if let Ok(mut s) =
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
            {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut b = [0u8; 4];
                if s.read_exact(&mut b).is_ok() && &b == b"SSH-" {
                    return Some(start.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
    .join()
    .unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(why) = missing() {
        println!("SKIP bench-boot: {why}");
        return;
    }
    let agent = match static_agent() {
        Ok(a) => a,
        Err(e) => {
            println!("SKIP bench-boot: no static guest agent: {e}");
            return;
        }
    };
    let boots: usize = std::env::var("BANGER_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let ns = format!("bgboot-{}", std::process::id());
    let _ = Command::new("ip").args(["netns", "del", &ns]).output();
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .unwrap()
            .success()
    );
    let dir = tempfile::Builder::new()
        .prefix("banger-bench-boot-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("config.toml"), config(&agent, false)).unwrap();
    let home = tempfile::Builder::new()
        .prefix("banger-bench-home-")
        .tempdir()
        .unwrap();
    let mut d = TestDaemon {
        dir,
        env: vec![
            ("HOME".into(), home.path().display().to_string()),
            (
                "BANGER_QEMU_ACCEL".into(),
                std::env::var("BANGER_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into()),
            ),
        ],
        child: None,
        launcher: Vec::new(),
        netns: None,
    };
    d.spawn();
    let mut b = Bench { d, home, ns };
    let state = b.d.state_dir();

    // 1. Kernel and image.
    // `BANGER_BENCH_KERNEL=debian`: the same image with Debian's cloud
    // kernel and initrd (the figures before banger had its own kernel).
    let debian = std::env::var("BANGER_BENCH_KERNEL").is_ok_and(|k| k == "debian");
    let microvm = if debian {
        None
    } else {
        qemuguest::microvm_kernel()
    };
    let kernel = match microvm {
        Some(bz) => {
            let entry = bz.parent().unwrap();
            let cached = state.join("cache/kernel").join(entry.file_name().unwrap());
            std::fs::create_dir_all(&cached).unwrap();
            for f in ["bzImage", "config", "release"] {
                std::fs::copy(entry.join(f), cached.join(f)).unwrap();
            }
            b.ok(&["kernel", "build"]);
            format!("banger's microVM kernel ({})", entry.display())
        }
        None if debian => "Debian's cloud kernel + initrd (BANGER_BENCH_KERNEL=debian)".into(),
        None => "Debian's cloud kernel + initrd (no microVM kernel in the CI cache)".into(),
    };
    let state_cache = state.join("cache/bootstrap");
    link_all(&test_cache().join("bootstrap"), &state_cache, ".tar");
    let t = Instant::now();
    let image: Image = serde_json::from_str(&b.ok(&["image", "build", "--json"])).unwrap();
    eprintln!(
        "bench-boot: image {} built in {:.0} s",
        image.name,
        t.elapsed().as_secs_f64()
    );
    keep_bootstrap(&state_cache, &b.d.log());
    b.d.kill_hard();
    std::fs::write(b.d.dir.path().join("config.toml"), config(&agent, true)).unwrap();
    b.d.netns = Some(b.ns.clone());
    b.d.spawn();

    // 2. banger.
    let mut wall = Vec::new();
    let mut argv = Vec::new();
    let mut vm0: Option<Vm> = None;
    let peer_dir = tempfile::tempdir_in(b.d.dir.path()).unwrap();
    for i in 0..boots {
        let name = format!("b{i}");
        let t = Instant::now();
        b.ok(&["vm", "create", &name, "--image", &image.name]);
        wall.push(t.elapsed().as_secs_f64());
        if i == 0 {
            let v: serde_json::Value =
                serde_json::from_str(&b.ok(&["vm", "show", &name, "--json"])).unwrap();
            let pid = v["runtime"]["pid"].as_u64().expect("VMM pid") as u32;
            argv = qemu_argv(pid);
            let analyze = b.cli(&[
                "vm",
                "ssh",
                &name,
                "--",
                "systemd-analyze; systemd-analyze critical-chain --no-pager | head -20; systemd-analyze blame --no-pager | head -15",
            ]);
            eprintln!(
                "bench-boot: first guest's systemd-analyze:\n{}{}",
                String::from_utf8_lossy(&analyze.stdout),
                String::from_utf8_lossy(&analyze.stderr)
            );
            b.ok(&["vm", "stop", &name]);
            let vm: Vm = serde_json::from_value(v.get("vm").cloned().unwrap_or(v)).unwrap();
            let work = state.join("vms").join(&vm.id).join("work.ext4");
            std::fs::copy(&work, peer_dir.path().join("work.src")).unwrap();
            vm0 = Some(vm);
        }
        b.ok(&["vm", "delete", "--force", &name]);
    }
    let log = b.d.log();
    let ts = timings(&log);
    let ts = &ts[ts.len().saturating_sub(boots)..];

    // 3. The peer.
    let vm0 = vm0.unwrap();
    let tap_master = {
        let out = Command::new("ip")
            .args(["-n", &b.ns, "-o", "link", "show", "type", "bridge"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split(':')
            .nth(1)
            .map(|s| s.trim().to_string())
            .expect("banger's bridge in the namespace")
    };
    let tap = "bgpeer0";
    for args in [
        vec!["tuntap", "add", tap, "mode", "tap"],
        vec!["link", "set", tap, "master", &tap_master],
        vec!["link", "set", tap, "up"],
    ] {
        let mut c = Command::new("ip");
        c.args(["-n", &b.ns]).args(&args);
        assert!(c.status().unwrap().success(), "ip {args:?}");
    }
    let mut peer = Vec::new();
    for i in 0..boots {
        let root = peer_dir.path().join(format!("root{i}.ext4"));
        let work = peer_dir.path().join(format!("work{i}.ext4"));
        banger_imagemgr::clone_or_copy(Path::new(&image.rootfs_path), &root).unwrap();
        banger_imagemgr::clone_or_copy(&peer_dir.path().join("work.src"), &work).unwrap();
        let console = peer_dir.path().join(format!("console{i}.log"));
        let args = peer_argv(&argv[1..], &[root.clone(), work.clone()], tap, &console);
        let t = Instant::now();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &b.ns])
            .arg(&argv[0])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ready = wait_banner(&b.ns, vm0.guest_ip, Duration::from_secs(READY_SECS));
        let _ = child.kill();
        let _ = child.wait();
        match ready {
            Some(_) => peer.push(t.elapsed().as_secs_f64()),
            None => panic!(
                "the peer guest never answered SSH; console:\n{}",
                util::tail(&std::fs::read_to_string(&console).unwrap_or_default(), 30)
            ),
        }
        let _ = std::fs::remove_file(&root);
        let _ = std::fs::remove_file(&work);
    }
    let _ = Command::new("ip")
        .args(["-n", &b.ns, "link", "del", tap])
        .status();

    let col = |f: &dyn Fn(&util::boot::Timing) -> f64| -> Vec<f64> { ts.iter().map(f).collect() };
    let banger_s = col(&|t| t.banger_ms / 1000.0);
    let vmm_s = col(&|t| t.vmm_ms / 1000.0);
    let start_s = col(&|t| t.instance_start_ms / 1000.0);
    let guest_s = col(&|t| t.guest_ms / 1000.0);
    let total_s = col(&|t| t.total_ms / 1000.0);
    let share: Vec<f64> = ts
        .iter()
        .map(|t| 100.0 * t.banger_ms / t.total_ms)
        .collect();
    println!(
        "bench-boot: {boots} boots of {} under the QEMU front ({}), kernel: {kernel}",
        image.name,
        std::env::var("BANGER_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into())
    );
    println!("                                   p50 (s)  p95 (s)");
    println!("vm create -> ready (CLI wall)     {}", p50_p95(&wall));
    println!("  request -> ready (daemon)       {}", p50_p95(&total_s));
    println!("  banger's own work               {}", p50_p95(&banger_s));
    println!("  VMM start-up                    {}", p50_p95(&vmm_s));
    println!("  InstanceStart                   {}", p50_p95(&start_s));
    println!("  guest boot to ready             {}", p50_p95(&guest_s));
    println!("peer: same qemu argv, no banger   {}", p50_p95(&peer));
    println!(
        "banger's share of request -> ready: p50 {:.1} %",
        percentile(&share, 0.5)
    );
    println!(
        "ratio banger/peer (CLI wall p50 / peer p50): {:.2}",
        percentile(&wall, 0.5) / percentile(&peer, 0.5)
    );
}
