//! Test harness: a `bangerd` whose firecracker binary is the simulator,
//! running in a temporary state directory, plus helpers to drive it through
//! the CLI binary or the client library.

#![allow(dead_code)]

pub mod boot;
pub mod debian;
pub mod inproc;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use banger_api::rpc::{ImageRegisterParams, VmCreateParams};
use banger_api::{Image, OpState, Request, Vm, VmCreated, VmState};
use banger_cli::client::Client;
use banger_testsupport::ext4::Mkfs;
use banger_testsupport::skip;

/// Path of a binary of this package.
pub fn bin(name: &str) -> PathBuf {
    match name {
        "banger" => PathBuf::from(env!("CARGO_BIN_EXE_banger")),
        "bangerd" => PathBuf::from(env!("CARGO_BIN_EXE_bangerd")),
        "banger-fcsim" => PathBuf::from(env!("CARGO_BIN_EXE_banger-fcsim")),
        "bangerd-root" => PathBuf::from(env!("CARGO_BIN_EXE_bangerd-root")),
        other => panic!("unknown binary {other}"),
    }
}

/// A running daemon in its own state directory.
pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub child: Option<Child>,
    /// Command the daemon is started through (e.g. `setpriv --reuid=…`);
    /// empty: run `bangerd` directly.
    pub launcher: Vec<String>,
    /// Network namespace the daemon runs in.
    pub netns: Option<String>,
}

impl TestDaemon {
    /// Start a daemon with the simulator as firecracker; `env` is passed to
    /// the daemon (and so to every simulator it spawns).
    pub fn start(env: &[(&str, &str)]) -> TestDaemon {
        Self::start_with(env, "")
    }

    /// Like [`start`](Self::start) with extra keys for the `[daemon]` table.
    pub fn start_with(env: &[(&str, &str)], daemon_keys: &str) -> TestDaemon {
        // These daemons run unprivileged-style in the machine's own network
        // namespace, so they must not touch the host network; the network
        // tests (tests/e2e/network.rs) run theirs inside a throwaway namespace.
        Self::start_full(env, daemon_keys, "enabled = false\n", None)
    }

    /// A daemon with extra `[network]` keys, run inside the named network
    /// namespace (`ip netns exec`) when `netns` is given.
    pub fn start_full(
        env: &[(&str, &str)],
        daemon_keys: &str,
        network_keys: &str,
        netns: Option<&str>,
    ) -> TestDaemon {
        // The simulator boots no guest: no readiness wait unless a test
        // brings its own `[guest]` table (and a guest to answer).
        let guest = if daemon_keys.contains("[guest]") {
            ""
        } else {
            "[guest]\nreadiness = \"none\"\nsync_identity = false\n"
        };
        let config = format!(
            "firecracker_bin = {:?}\n[daemon]\nstop_timeout_secs = 2\nstats_interval_secs = 1\n{}\n{guest}[network]\n{}",
            bin("banger-fcsim").display().to_string(),
            daemon_keys,
            network_keys
        );
        let mut d = Self::unstarted(&config, env, netns);
        d.spawn();
        d
    }

    /// A daemon not started yet (see [`Self::spawn`]) whose test dir holds
    /// `config` as its `config.toml`; `env` goes to the daemon.
    pub fn unstarted(config: &str, env: &[(&str, &str)], netns: Option<&str>) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("banger-test-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        TestDaemon {
            dir,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            launcher: Vec::new(),
            netns: netns.map(str::to_string),
        }
    }

    /// (Re)start the bangerd process on the same state directory.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("bangerd.log"))
            .unwrap();
        let mut argv: Vec<String> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip", "netns", "exec", ns].map(String::from));
        }
        argv.extend(self.launcher.iter().cloned());
        let mut cmd = match argv.split_first() {
            None => Command::new(bin("bangerd")),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin("bangerd"));
                c
            }
        };
        // The daemon writes its SSH key and known_hosts under `$HOME`
        // (`~/.config/banger/ssh`): never the real user's.
        let home = self.home();
        std::fs::create_dir_all(&home).unwrap();
        cmd.arg("--state-dir")
            .arg(self.state_dir())
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .arg("--log")
            .arg("debug")
            .env("HOME", &home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let _ = std::fs::remove_file(self.socket());
        self.child = Some(cmd.spawn().expect("spawn bangerd"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.connect().is_ok() {
                return;
            }
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("bangerd exited with {st}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("bangerd did not come up; log:\n{}", self.log());
    }

    /// SIGKILL the daemon (its VMMs keep running).
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("run/bangerd.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bangerd.log")).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        self.connect().expect("connect to bangerd")
    }

    /// The install metadata a system-path test wrote (`install.toml` in the
    /// test dir): its owner's daemon is trusted by the client and the CLI.
    fn install_meta(&self) -> Option<PathBuf> {
        Some(self.dir.path().join("install.toml")).filter(|p| p.exists())
    }

    /// Connect, trusting the owner of [`Self::install_meta`] too.
    pub fn connect(&self) -> Result<Client, banger_cli::client::ClientError> {
        let peers = match self.install_meta() {
            Some(meta) => banger_cli::client::TrustedPeers::from_install_meta(&meta),
            None => banger_cli::client::TrustedPeers::with_owner(None),
        };
        Client::connect_with(&self.socket(), &peers)
    }

    /// The daemon's `HOME`: the one the test gave it, else a private
    /// directory of the test (`<dir>/home`), never the real user's.
    pub fn home(&self) -> PathBuf {
        self.env
            .iter()
            .find(|(k, _)| k == "HOME")
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| self.dir.path().join("home"))
    }

    /// Run the `banger` CLI against this daemon with the daemon's
    /// [`home`](Self::home): `vm create`/`vm delete` refresh an installed
    /// `~/.ssh/config.d/banger`, and a test must never rewrite the real
    /// user's.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_in_home(&self.home(), args)
    }

    /// Run the `banger` CLI against this daemon with `HOME` set to `home`.
    pub fn cli_in_home(&self, home: &Path, args: &[&str]) -> Output {
        self.cli_command(Command::new(bin("banger")), home, args)
    }

    /// Like [`cli_in_home`](Self::cli_in_home), inside network namespace
    /// `ns` (`ip netns exec`), so `vm ssh` reaches the guest there.
    pub fn cli_in_netns(&self, ns: &str, home: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(bin("banger"));
        self.cli_command(cmd, home, args)
    }

    fn cli_command(&self, mut cmd: Command, home: &Path, args: &[&str]) -> Output {
        if let Some(meta) = self.install_meta() {
            cmd.env("BANGER_INSTALL_META", meta);
        }
        cmd.arg("--state-dir")
            .arg(self.state_dir())
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .args(args)
            .env("HOME", home)
            .env("NO_COLOR", "1")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(Stdio::null())
            .output()
            .expect("run banger")
    }

    /// Run the CLI and require success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "banger {args:?} failed ({}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run the CLI with `--json` appended and parse stdout.
    pub fn cli_json<T: serde::de::DeserializeOwned>(&self, args: &[&str]) -> T {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cli_ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON from {a:?}: {e}\n{out}"))
    }

    /// Register the test image under `name`.
    pub fn register_image(&self, fx: &Fixtures, name: &str) -> Image {
        self.client()
            .call(Request::ImageRegister(ImageRegisterParams {
                name: name.into(),
                rootfs: fx.rootfs.display().to_string(),
                kernel: fx.kernel.display().to_string(),
                initrd: None,
                kernel_name: None,
            }))
            .expect("register image")
    }

    /// Create a VM through the client and wait for its operation.
    pub fn create(&self, name: &str, image: &str) -> Result<Vm, banger_cli::client::ClientError> {
        let mut c = self.client();
        let created: VmCreated = c.call(Request::VmCreate(VmCreateParams {
            name: name.into(),
            image: Some(image.into()),
            ..Default::default()
        }))?;
        let op = created.operation.expect("create returns an operation");
        let done = c.watch(&op.id, |_| {})?;
        assert_eq!(
            done.state,
            OpState::Succeeded,
            "create {name}: {:?}",
            done.error
        );
        self.vm(name)
    }

    pub fn vm(&self, name: &str) -> Result<Vm, banger_cli::client::ClientError> {
        self.client()
            .call(Request::VmShow(banger_api::rpc::VmRef { vm: name.into() }))
    }

    /// Poll until VM `name` is in `state` (or panic after `secs`).
    pub fn wait_state(&self, name: &str, state: VmState, secs: u64) -> Vm {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let vm = self.vm(name).unwrap();
            if vm.state == state {
                return vm;
            }
            if Instant::now() > deadline {
                panic!(
                    "VM {name} stuck in {:?} (wanted {state:?}); log:\n{}",
                    vm,
                    tail(&self.log(), 30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `vm start` then `vm restart` of the stopped VM `name` through the
    /// CLI: running after each, and the restart runs a new VMM (another
    /// pid).
    pub fn start_then_restart(&self, name: &str) {
        self.cli_ok(&["vm", "start", name]);
        let vm: banger_api::VmDetail = self.cli_json(&["vm", "show", name]);
        assert_eq!(vm.vm.state, VmState::Running);
        let pid = vm.runtime.unwrap().pid;
        self.cli_ok(&["vm", "restart", name]);
        let vm: banger_api::VmDetail = self.cli_json(&["vm", "show", name]);
        assert_eq!(vm.vm.state, VmState::Running);
        assert_ne!(vm.runtime.unwrap().pid, pid, "restart runs a new VMM");
    }

    /// Entries under `<state>/vms`.
    pub fn vm_dirs(&self) -> Vec<String> {
        list_dir(&self.state_dir().join("vms"))
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // Kill every VMM this daemon started (their cmdline names our dir).
        let marker = self.dir.path().display().to_string();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
                    continue;
                };
                let cmd = String::from_utf8_lossy(&cmd);
                if cmd.contains(&marker) && cmd.contains("--api-sock") {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        self.kill_hard();
    }
}

pub fn list_dir(p: &Path) -> Vec<String> {
    std::fs::read_dir(p)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// `debugfs -R REQ DISK`'s output (read-only).
pub fn debugfs(disk: &Path, req: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(req)
        .arg(disk)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write the host file `src` to `path` in the ext4 image `disk`.
pub fn debugfs_write(disk: &Path, src: &Path, path: &str) {
    let w = Command::new("debugfs")
        .arg("-w")
        .arg("-R")
        .arg(format!("write {} {path}", src.display()))
        .arg(disk)
        .output()
        .unwrap();
    assert!(w.status.success(), "{w:?}");
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A root filesystem and a kernel the simulator accepts.
pub struct Fixtures {
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    pub kernel: PathBuf,
}

impl Fixtures {
    /// `None` (with a printed reason) when `mkfs.ext4` is missing.
    pub fn new(test: &str) -> Option<Fixtures> {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs.ext4");
        if let Err(why) = Mkfs::new()
            .file("etc/hostname", "banger-test\n")
            .build(&rootfs, "32M")
        {
            skip!(return None; test, "{why}");
        }
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, fake_vmlinux()).unwrap();
        Some(Fixtures {
            dir,
            rootfs,
            kernel,
        })
    }
}

/// A minimal x86_64 ELF executable header shaped like a `vmlinux`.
pub fn fake_vmlinux() -> Vec<u8> {
    let mut h = vec![0u8; 4096];
    h[0..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // 64-bit
    h[5] = 1; // little endian
    h[6] = 1; // version
    h[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[24..32].copy_from_slice(&0x0100_0000u64.to_le_bytes()); // entry
    h[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
    h[52..54].copy_from_slice(&64u16.to_le_bytes()); // ehsize
    h[54..56].copy_from_slice(&56u16.to_le_bytes()); // phentsize
    h[56..58].copy_from_slice(&1u16.to_le_bytes()); // phnum
    // One PT_LOAD segment at 16 MiB.
    let ph = 64;
    h[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes());
    h[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes());
    h[ph + 8..ph + 16].copy_from_slice(&0u64.to_le_bytes());
    h[ph + 16..ph + 24].copy_from_slice(&0x0100_0000u64.to_le_bytes());
    h[ph + 24..ph + 32].copy_from_slice(&0x0100_0000u64.to_le_bytes());
    h[ph + 32..ph + 40].copy_from_slice(&4096u64.to_le_bytes());
    h[ph + 40..ph + 48].copy_from_slice(&4096u64.to_le_bytes());
    h
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The one daemon file `banger ssh-config` wrote in `home`'s
/// `.ssh/config.d/` (`banger` or `banger-<hash>`).
pub fn ssh_include(home: &Path) -> PathBuf {
    let dir = home.join(".ssh/config.d");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("banger"))
        })
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one banger include in {}: {files:?}",
        dir.display()
    );
    files.into_iter().next().unwrap()
}
