//! End to end through the public CLI: a real `bangerd` inside a throwaway
//! network namespace (`network.enabled = true`, `firecracker_bin` =
//! `banger-fcqemu`, so QEMU `-M microvm` under TCG) boots the Debian image
//! `banger image build` makes, and the test checks what a user sees:
//! readiness, `<name>.vm` from banger's DNS, `ssh` with the daemon's pinned
//! host key (through `banger ssh-config`), the work disk surviving stop and
//! start, `vm ports`, `vm stats`, NAT out to another namespace standing in
//! for the outside, workspace prepare/export against the guest, and a
//! `vm delete` that leaves nothing behind. It prints the create and start
//! timings (banger's work, the VMM's start-up, the guest's boot).
//!
//! One boot is shared by every step (a TCG boot costs 15–45 s). Needs root,
//! `qemu-system-x86_64`, `mmdebstrap` (and the Debian mirror when no
//! bootstrap is cached in `$BANGER_TEST_CACHE`, see `image_build.rs`),
//! `ip`, `nft`, `dig`, `ssh`, `debugfs` and `git`; prints `SKIP` otherwise.

use crate::util;

use banger_testsupport::{in_path, run, skip};

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use banger_api::{Image, Vm, VmCreated, VmState, VmStats};
use util::boot::timings;
use util::debian::{
    cached_bootstrap, keep_bootstrap, link_all, mirror_reachable, static_agent, test_cache,
};
use util::{TestDaemon, list_dir, tail};

const T: &str = "guest_e2e";
const FRONT: &str = env!("CARGO_BIN_EXE_banger-fcqemu");
const GATEWAY: &str = "172.30.0.1";
/// The veth between the daemon's namespace (the router) and the outside.
const UPLINK_IP: &str = "192.168.251.1";
const OUTSIDE_IP: &str = "192.168.251.2";
/// Loaded CI machines: a TCG boot can take minutes.
const READY_SECS: u64 = 300;
const POOL: usize = 2;
/// `daemon.stop_timeout_secs`: a clean shutdown must beat it.
const STOP_SECS: u64 = 120;

/// A network namespace, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn add(name: &str) -> NetNs {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run(&["ip", "netns", "add", name]);
        let ns = NetNs(name.to_string());
        run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        ns
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ip netns exec")
    }

    /// banger's TAP devices in the namespace.
    fn taps(&self) -> Vec<String> {
        let out = run(&["ip", "-n", &self.0, "-d", "-j", "link", "show"]);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|l| l["linkinfo"]["info_kind"] == "tun")
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with("bg"))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Kills, on drop, every process whose command line names the test's
/// directory (QEMU names its disks there) — after the daemon is gone.
struct Reaper(String);

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in processes_naming(&self.0) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn processes_naming(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    list_dir(Path::new("/proc"))
        .iter()
        .filter_map(|n| n.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// TAP devices some process holds open (`iff:` in a TUN fd's fdinfo).
fn open_taps() -> Vec<String> {
    let mut taps = Vec::new();
    for pid in list_dir(Path::new("/proc")) {
        if pid.parse::<u32>().is_err() {
            continue;
        }
        let dir = PathBuf::from(format!("/proc/{pid}/fdinfo"));
        for fd in list_dir(&dir) {
            if let Ok(info) = std::fs::read_to_string(dir.join(fd)) {
                for l in info.lines() {
                    if let Some(name) = l.strip_prefix("iff:") {
                        taps.push(name.trim().to_string());
                    }
                }
            }
        }
    }
    taps
}

fn git(repo: &Path, args: &[&str]) -> String {
    let mut a = vec!["git", "-C", repo.to_str().unwrap()];
    a.extend_from_slice(args);
    run(&a).trim().to_string()
}

/// A figure, printed past the test harness's capture.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "FIGURE guest_e2e: {line}");
}

/// The daemon, its namespaces and the test's HOME. Field order is drop
/// order: daemon (and its VMMs), stray QEMUs, namespaces, directories.
struct E2e {
    d: TestDaemon,
    _reaper: Reaper,
    ns: NetNs,
    outside: NetNs,
    home: tempfile::TempDir,
}

impl E2e {
    /// Restart the daemon on the same state inside the test's namespace
    /// with the guest network on.
    fn move_into_netns(&mut self, agent: &Path) {
        self.d.kill_hard();
        std::fs::write(self.d.dir.path().join("config.toml"), config(agent, true)).unwrap();
        self.d.netns = Some(self.ns.0.clone());
        self.d.spawn();
    }

    /// The CLI as the test's user (HOME = the test's), run inside the
    /// daemon's namespace so `vm ssh` reaches the guest.
    fn cli(&self, args: &[&str]) -> Output {
        self.d.cli_in_netns(&self.ns.0, self.home.path(), args)
    }

    /// The daemon log's and the VM console's tails, for failure messages.
    fn diag(&self) -> String {
        let console = self.cli(&["vm", "logs", "dev"]);
        format!(
            "daemon log tail:\n{}\nconsole tail (banger vm logs dev):\n{}{}",
            tail(&self.d.log(), 40),
            tail(&String::from_utf8_lossy(&console.stdout), 30),
            String::from_utf8_lossy(&console.stderr)
        )
    }

    fn check(&self, ok: bool, what: &str) {
        assert!(ok, "{what}\n{}", self.diag());
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        self.check(
            out.status.success(),
            &format!(
                "banger {args:?} failed ({}):\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json<D: serde::de::DeserializeOwned>(&self, args: &[&str]) -> D {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON from {a:?}: {e}\n{out}"))
    }

    /// `banger vm ssh dev -- SCRIPT` (the guest's login shell runs it).
    fn guest(&self, script: &str) -> String {
        self.ok(&["vm", "ssh", "dev", "--", script])
    }

    fn vm(&self) -> Vm {
        let v: serde_json::Value = self.json(&["vm", "show", "dev"]);
        serde_json::from_value(v.get("vm").cloned().unwrap_or(v)).unwrap()
    }

    fn dig(&self, name: &str) -> String {
        let out = self
            .ns
            .exec(&["dig", &format!("@{GATEWAY}"), "+time=2", "+tries=2", name]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f() {
            self.check(Instant::now() < deadline, &format!("timed out: {what}"));
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Why the test cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !util::is_root() {
        return Some("needs root (network namespaces, TAPs, mmdebstrap)".into());
    }
    for (tool, pkg) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mmdebstrap", "mmdebstrap"),
        ("ip", "iproute2"),
        ("nft", "nftables"),
        ("dig", "bind9-dnsutils"),
        ("ssh", "openssh-client"),
        ("ssh-keygen", "openssh-client"),
        ("debugfs", "e2fsprogs"),
        ("git", "git"),
    ] {
        if !in_path(tool) {
            return Some(format!("{tool} is not installed (apt-get install {pkg})"));
        }
    }
    if !cached_bootstrap()
        && let Err(e) = mirror_reachable()
    {
        return Some(format!(
            "no cached bootstrap in {} and the Debian mirror is not reachable: {e}",
            test_cache().display()
        ));
    }
    None
}

/// The daemon's config; `network`: the guest network is on (the daemon
/// then runs in the test's namespace).
fn config(agent: &Path, network: bool) -> String {
    format!(
        "firecracker_bin = {FRONT:?}\n\
         [daemon]\nstop_timeout_secs = {STOP_SECS}\nstats_interval_secs = 1\n\
         [vm]\nvcpus = 2\nmemory = \"1G\"\n\
         [guest]\nreadiness = \"auto\"\nreadiness_timeout_secs = {READY_SECS}\nagent = {:?}\n\
         [network]\nenabled = {network}\ntap_pool_size = {POOL}\nguest_dns = \"{GATEWAY}\"\n",
        agent.display().to_string()
    )
}

/// The namespaces (the outside one behind a veth) and a daemon still in
/// the machine's namespace with the guest network off, so `image build`
/// can reach the Debian mirror; [`E2e::move_into_netns`] moves it.
fn setup(agent: &Path) -> E2e {
    let pid = std::process::id();
    let ns = NetNs::add(&format!("bge2e-{pid}"));
    let outside = NetNs::add(&format!("bge2o-{pid}"));
    run(&[
        "ip", "-n", &ns.0, "link", "add", "e2eup", "type", "veth", "peer", "name", "e2eout",
        "netns", &outside.0,
    ]);
    run(&[
        "ip",
        "-n",
        &ns.0,
        "addr",
        "add",
        &format!("{UPLINK_IP}/24"),
        "dev",
        "e2eup",
    ]);
    run(&["ip", "-n", &ns.0, "link", "set", "e2eup", "up"]);
    run(&[
        "ip",
        "-n",
        &outside.0,
        "addr",
        "add",
        &format!("{OUTSIDE_IP}/24"),
        "dev",
        "e2eout",
    ]);
    run(&["ip", "-n", &outside.0, "link", "set", "e2eout", "up"]);

    let home = tempfile::Builder::new()
        .prefix("banger-e2e-home-")
        .tempdir()
        .unwrap();
    let dir = tempfile::Builder::new()
        .prefix("banger-e2e-")
        .tempdir()
        .unwrap();
    std::fs::write(dir.path().join("config.toml"), config(agent, false)).unwrap();
    let marker = dir.path().display().to_string();
    let mut d = TestDaemon {
        dir,
        env: vec![
            ("HOME".into(), home.path().display().to_string()),
            ("BANGER_QEMU_ACCEL".into(), "tcg".into()),
        ],
        child: None,
        launcher: Vec::new(),
        netns: None,
    };
    d.spawn();
    E2e {
        d,
        _reaper: Reaper(marker),
        ns,
        outside,
        home,
    }
}

/// What the outside listener got: the peer and the text, or what failed.
type Received = Result<(SocketAddr, String), String>;

/// A TCP listener in the outside namespace: the port, and what the first
/// connection sent with its peer address.
fn outside_listener(ns: &NetNs) -> (u16, mpsc::Receiver<Received>) {
    let path = format!("/run/netns/{}", ns.0);
    let (port_tx, port_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let listen = || -> Result<TcpListener, String> {
            let f = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns {path}: {e}"))?;
            TcpListener::bind((OUTSIDE_IP, 0)).map_err(|e| format!("bind: {e}"))
        };
        let l = match listen() {
            Ok(l) => l,
            Err(e) => {
                let _ = port_tx.send(Err(e));
                return;
            }
        };
        let _ = port_tx.send(Ok(l.local_addr().unwrap().port()));
        l.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let got = loop {
            match l.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    let mut text = String::new();
                    break s
                        .read_to_string(&mut text)
                        .map(|_| (peer, text))
                        .map_err(|e| format!("read: {e}"));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        break Err("no connection within 120 s".to_string());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => break Err(format!("accept: {e}")),
            }
        };
        let _ = tx.send(got);
    });
    let port = port_rx
        .recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("outside listener: {e}"));
    (port, rx)
}

#[test]
fn debian_guest_end_to_end_through_the_cli() {
    if let Some(why) = missing() {
        skip!(T, "{why}");
    }
    let agent = match static_agent() {
        Ok(a) => a,
        Err(e) => skip!(T, "no static guest agent: {e}"),
    };
    let mut e = setup(&agent);
    let state = e.d.state_dir();

    // 0. banger's microVM kernel when CI built it: `kernel build` finds the
    // entry in its build cache (same key) and registers it as `microvm`,
    // which `image build` then boots by default (no initrd).
    let microvm = crate::qemuguest::microvm_kernel();
    if let Some(bz) = &microvm {
        let entry = bz.parent().unwrap();
        let cached = state.join("cache/kernel").join(entry.file_name().unwrap());
        std::fs::create_dir_all(&cached).unwrap();
        for f in ["bzImage", "config", "release"] {
            std::fs::copy(entry.join(f), cached.join(f)).unwrap();
        }
        let t = Instant::now();
        let out = e.cli(&["kernel", "build"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        e.check(
            out.status.success() && err.contains("from the build cache"),
            &format!("kernel build from the cache failed:\n{err}"),
        );
        report(&format!(
            "kernel build (cache hit): {:.1} s",
            t.elapsed().as_secs_f64()
        ));
    } else {
        eprintln!("{T}: no microVM kernel in the CI cache; the image boots Debian's cloud kernel");
    }

    // 1. The image, from the cached bootstrap when there is one.
    let state_cache = state.join("cache/bootstrap");
    link_all(&test_cache().join("bootstrap"), &state_cache, ".tar");
    let t = Instant::now();
    let built = e.cli(&["image", "build", "--json"]);
    let err = String::from_utf8_lossy(&built.stderr).into_owned();
    if !built.status.success()
        && let Err(why) = mirror_reachable()
    {
        // The cached bootstrap was of another recipe.
        skip!(
            T,
            "the bootstrap needs the Debian mirror, which is not reachable: {why}"
        );
    }
    e.check(
        built.status.success(),
        &format!("image build failed:\n{err}"),
    );
    let image: Image = serde_json::from_slice(&built.stdout).unwrap();
    report(&format!(
        "image build: {:.1} s, {} bootstrap; {}",
        t.elapsed().as_secs_f64(),
        if err.contains("done (cached bootstrap") {
            "cached"
        } else {
            "fresh"
        },
        err.lines().find(|l| l.starts_with("built ")).unwrap_or("?")
    ));
    keep_bootstrap(&state_cache, &e.d.log());
    assert_eq!(image.name, "debian-bookworm");
    assert_eq!(
        image.initrd_path.is_none(),
        microvm.is_some(),
        "the microVM kernel boots without an initrd, Debian's with one: {image:?}"
    );
    e.move_into_netns(&agent);

    // 2. vm create: `running` only once the guest answers.
    let t = Instant::now();
    let created: VmCreated = e.json(&[
        "vm",
        "create",
        "dev",
        "--image",
        &image.name,
        "--vcpus",
        "2",
        "--memory",
        "1G",
    ]);
    let create_wall = t.elapsed();
    assert_eq!(created.vm.state, VmState::Running, "{created:?}");
    let vm = e.vm();
    assert_eq!(vm.state, VmState::Running);
    assert_eq!((vm.vcpus, vm.memory_mib), (2, 1024));
    let ip = vm.guest_ip.to_string();
    // Ready means reachable: the very first ssh works, no retry.
    assert_eq!(e.guest("uname -n").trim(), "dev");

    // 3. DNS and plain ssh with the daemon's pinned key.
    let answer = e.dig("dev.vm");
    e.check(
        answer.contains("status: NOERROR") && answer.contains(&format!("\t{ip}")),
        &format!("dig dev.vm: {answer}"),
    );
    let short =
        e.ns.exec(&["dig", &format!("@{GATEWAY}"), "+short", "dev.vm"]);
    assert_eq!(String::from_utf8_lossy(&short.stdout).trim(), ip);
    let known_hosts = state.join("ssh/known_hosts");
    let kh = std::fs::read_to_string(&known_hosts).unwrap_or_default();
    e.check(
        kh.contains(&format!("banger-{} ssh-ed25519 ", vm.id)),
        &format!("{} pins the VM: {kh}", known_hosts.display()),
    );
    e.ok(&["ssh-config"]);
    let ssh_config = util::ssh_include(e.home.path());
    let cfg = std::fs::read_to_string(&ssh_config).unwrap();
    assert!(
        cfg.contains("Host dev.vm")
            && cfg.contains(&format!("UserKnownHostsFile {}", known_hosts.display())),
        "{cfg}"
    );
    let ssh = e.ns.exec(&[
        "ssh",
        "-F",
        ssh_config.to_str().unwrap(),
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "dev.vm",
        "cat /etc/hostname; id -un",
    ]);
    e.check(
        ssh.status.success() && String::from_utf8_lossy(&ssh.stdout) == "dev\nroot\n",
        &format!(
            "ssh -F {} dev.vm: {}{}",
            ssh_config.display(),
            String::from_utf8_lossy(&ssh.stdout),
            String::from_utf8_lossy(&ssh.stderr)
        ),
    );

    // 4. The guest's home is the work disk and survives stop/start.
    assert_eq!(e.guest("findmnt -n -o SOURCE /root").trim(), "/dev/vdb");
    let token = format!("e2e-{}-{}", std::process::id(), vm.id);
    e.guest(&format!("echo {token} > /root/e2e-marker && sync"));
    let t = Instant::now();
    e.ok(&["vm", "stop", "dev"]);
    let stop_wall = t.elapsed();
    assert_eq!(e.vm().state, VmState::Stopped);
    // A clean shutdown through the ACPI power button, not the timeout's
    // SIGKILL.
    let console = String::from_utf8_lossy(&e.cli(&["vm", "logs", "dev"]).stdout).into_owned();
    e.check(
        console.contains("reboot: Power down") && stop_wall < Duration::from_secs(STOP_SECS),
        &format!(
            "vm stop took {:.1} s; the guest did not power off by itself",
            stop_wall.as_secs_f64()
        ),
    );
    let work = state.join("vms").join(&vm.id).join("work.ext4");
    let cat = Command::new("debugfs")
        .args(["-R", "cat /e2e-marker"])
        .arg(&work)
        .output()
        .unwrap();
    e.check(
        String::from_utf8_lossy(&cat.stdout).trim() == token,
        &format!(
            "debugfs cat /e2e-marker on {}: {}{}",
            work.display(),
            String::from_utf8_lossy(&cat.stdout),
            String::from_utf8_lossy(&cat.stderr)
        ),
    );
    let t = Instant::now();
    e.ok(&["vm", "start", "dev"]);
    let start_wall = t.elapsed();
    assert_eq!(e.vm().state, VmState::Running);
    assert_eq!(e.guest("cat /root/e2e-marker").trim(), token);

    // 5. Ports and stats.
    let ports = e.ok(&["vm", "ports", "dev"]);
    e.check(
        ports
            .lines()
            .any(|l| l.contains("dev.vm:22") && l.contains("sshd")),
        &format!("vm ports dev lists sshd on 22:\n{ports}"),
    );
    let stats: VmStats = e.json(&["vm", "stats", "dev"]);
    assert!(
        stats.cpu_time_ms > 0 && stats.rss_bytes > 64 << 20,
        "{stats:?}"
    );

    // 5b. Everyday verbs on the real guest: `shell` passes the command's
    // exit code through; `vm cp` copies a directory in and back.
    let sh = e.cli(&[
        "shell",
        "dev",
        "--",
        "sh",
        "-c",
        "'cat /etc/hostname; exit 3'",
    ]);
    e.check(
        sh.status.code() == Some(3) && String::from_utf8_lossy(&sh.stdout).trim() == "dev",
        &format!(
            "banger shell dev -- …exit 3: {} {}{}",
            sh.status,
            String::from_utf8_lossy(&sh.stdout),
            String::from_utf8_lossy(&sh.stderr)
        ),
    );
    let cp_src = e.home.path().join("cp-src");
    std::fs::create_dir_all(cp_src.join("deep")).unwrap();
    std::fs::write(cp_src.join("deep/f.txt"), "payload\n").unwrap();
    e.ok(&["vm", "cp", cp_src.to_str().unwrap(), "dev:/root/"]);
    assert_eq!(e.guest("cat /root/cp-src/deep/f.txt"), "payload\n");
    let cp_back = e.home.path().join("cp-back");
    e.ok(&["vm", "cp", "dev:/root/cp-src", cp_back.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(cp_back.join("deep/f.txt")).unwrap(),
        "payload\n"
    );

    // 6. NAT: the guest reaches a listener in the outside namespace, which
    // sees the uplink address.
    let (port, got) = outside_listener(&e.outside);
    e.guest(&format!("bash -c 'echo hi > /dev/tcp/{OUTSIDE_IP}/{port}'"));
    match got.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok((peer, text))) => {
            assert_eq!(text, "hi\n");
            assert_eq!(peer.ip().to_string(), UPLINK_IP, "masqueraded");
        }
        other => e.check(false, &format!("outside listener: {other:?}")),
    }

    // 7. Workspace prepare and export against the guest.
    let repos = tempfile::tempdir().unwrap();
    let repo = repos.path().join("e2e-repo");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("README"), "hello from the host\n").unwrap();
    std::fs::write(repo.join("src/main.sh"), "#!/bin/sh\necho hi\n").unwrap();
    run(&["git", "init", "-q", "-b", "main", repo.to_str().unwrap()]);
    git(&repo, &["add", "-A"]);
    git(
        &repo,
        &[
            "-c",
            "user.name=Host",
            "-c",
            "user.email=host@example.com",
            "commit",
            "-q",
            "-m",
            "initial",
        ],
    );
    let host_head = git(&repo, &["rev-parse", "HEAD"]);
    let t = Instant::now();
    e.ok(&["workspace", "prepare", "dev", repo.to_str().unwrap()]);
    let prepare_wall = t.elapsed();
    let guest_view = e.guest("cd ~/work/e2e-repo && git rev-parse HEAD && cat README");
    assert_eq!(
        guest_view,
        format!("{host_head}\nhello from the host\n"),
        "the guest checkout"
    );
    e.guest(
        "cd ~/work/e2e-repo && echo guest > guest.txt && git add guest.txt && \
         git -c user.name=Guest -c user.email=guest@example.com commit -q -m 'from the guest'",
    );
    let guest_head = e
        .guest("cd ~/work/e2e-repo && git rev-parse HEAD")
        .trim()
        .to_string();
    let status_before = git(&repo, &["status", "--porcelain"]);
    e.ok(&[
        "workspace",
        "export",
        "dev",
        "--path",
        repo.to_str().unwrap(),
    ]);
    let exported = git(&repo, &["rev-parse", "banger/dev"]);
    let ancestor = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["merge-base", "--is-ancestor", &guest_head, &exported])
        .status()
        .unwrap();
    assert!(
        ancestor.success(),
        "banger/dev ({exported}) holds the guest's commit {guest_head}"
    );
    assert!(git(&repo, &["log", "--format=%s", "banger/dev"]).contains("from the guest"));
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), host_head);
    assert_eq!(git(&repo, &["symbolic-ref", "--short", "HEAD"]), "main");
    assert_eq!(git(&repo, &["status", "--porcelain"]), status_before);
    assert!(
        !repo.join("guest.txt").exists(),
        "host working tree unchanged"
    );

    // 8. Delete: nothing of the VM remains.
    e.ok(&["vm", "delete", "--force", "dev"]);
    assert!(e.dig("dev.vm").contains("status: NXDOMAIN"));
    let marker = e.d.dir.path().display().to_string();
    e.wait_for("QEMU to end", 30, || {
        processes_naming(&marker).iter().all(|pid| {
            std::fs::read(format!("/proc/{pid}/comm"))
                .map(|c| !String::from_utf8_lossy(&c).contains("qemu"))
                .unwrap_or(true)
        })
    });
    e.wait_for("the TAPs to settle", 30, || e.ns.taps().len() == POOL);
    let taps = e.ns.taps();
    let open = open_taps();
    e.check(
        !taps.iter().any(|t| open.contains(t)),
        &format!("no TAP attached to a VMM: taps {taps:?}, open {open:?}"),
    );
    let rules = e.ns.exec(&["nft", "list", "ruleset"]);
    let rules = String::from_utf8_lossy(&rules.stdout);
    assert!(!rules.contains(&ip), "a rule names {ip}:\n{rules}");
    assert!(e.d.vm_dirs().is_empty(), "{:?}", e.d.vm_dirs());
    let run_vms = list_dir(&state.join("run/vms"));
    assert!(run_vms.is_empty(), "{run_vms:?}");
    let kh = std::fs::read_to_string(&known_hosts).unwrap_or_default();
    assert!(
        !kh.contains(&format!("banger-{}", vm.id)),
        "pin dropped: {kh}"
    );
    e.ok(&["network", "reset"]);
    assert!(e.ns.taps().is_empty(), "{:?}", e.ns.taps());
    let tables = e.ns.exec(&["nft", "list", "tables"]);
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("banger"));

    // 9. Figures: banger's own work, the VMM's start-up, the guest's boot.
    let log = e.d.log();
    let ts = timings(&log);
    assert_eq!(
        ts.len(),
        2,
        "one `VM running` line per boot:\n{}",
        tail(&log, 20)
    );
    for (what, t, wall) in [
        ("vm create", &ts[0], create_wall),
        ("vm start", &ts[1], start_wall),
    ] {
        report(&format!(
            "{what} → ready: {:.1} s (CLI {:.1} s) = banger {:.0} ms + VMM start-up {:.0} ms + InstanceStart {:.0} ms + guest boot to ready {:.1} s",
            t.total_ms / 1000.0,
            wall.as_secs_f64(),
            t.banger_ms,
            t.vmm_ms,
            t.instance_start_ms,
            t.guest_ms / 1000.0
        ));
    }
    report(&format!(
        "vm stop (ACPI power button, guest shutdown): {:.1} s; workspace prepare: {:.1} s",
        stop_wall.as_secs_f64(),
        prepare_wall.as_secs_f64()
    ));
}
