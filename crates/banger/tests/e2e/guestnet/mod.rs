//! A throwaway "guest" for the guest-access tests and the workspace
//! benchmark: two network namespaces joined by a veth pair. The host side
//! (`172.30.0.1/24`) is where the test's `bangerd` runs (the test thread
//! enters it with `setns`, so every process it spawns lives there); the guest
//! side holds the guest addresses a VM gets (`172.30.0.2`, `.3`, …) and runs
//! a real OpenSSH `sshd` with its own host key, as root. Both namespaces
//! are deleted on drop; the machine's own namespace is never touched.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Port the test sshd listens on (exercises `[guest] ssh_port`).
pub const SSH_PORT: u16 = 2222;

static SEQ: AtomicU32 = AtomicU32::new(0);

pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, the sshd and their files.
pub struct GuestNet {
    pub host_ns: String,
    pub guest_ns: String,
    pub guest_if: String,
    pub host_if: String,
    pub dir: tempfile::TempDir,
    /// banger's client key (the daemon's `[guest] ssh_key`).
    pub client_key: PathBuf,
    sshd: Option<Child>,
    /// The network namespace the thread was in before [`Self::enter_host`]:
    /// put back on drop, since the e2e tests share one process and a test
    /// thread may be the harness's main thread (`--test-threads=1`).
    entered_from: std::sync::Mutex<Option<std::fs::File>>,
}

/// Why the guest network cannot be built here (the test then skips).
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root for network namespaces".into());
    }
    for bin in ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        if !Path::new(bin).exists() {
            return Some(format!("{bin} is missing (apt-get install openssh-server)"));
        }
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` is missing (apt-get install iproute2)".into());
    }
    None
}

/// Wait until sshd listens on TCP `port` inside namespace `ns` (panics
/// with its log `log` after 10 s).
pub fn wait_listening(ns: &str, port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-Htln"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains(&format!(":{port}")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "sshd did not listen: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

pub fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

impl GuestNet {
    /// Build the namespaces and start sshd; `None` (with a SKIP line) when
    /// this machine cannot.
    pub fn new(test: &str) -> Option<GuestNet> {
        if let Some(why) = unavailable() {
            banger_testsupport::skip!(return None; test, "{why}");
        }
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{}x{n}", std::process::id());
        let host_ns = format!("bgwsh{tag}");
        let guest_ns = format!("bgwsg{tag}");
        let host_if = format!("bwh{tag}");
        let guest_if = format!("bwg{tag}");
        ip(&["netns", "add", &host_ns]);
        ip(&["netns", "add", &guest_ns]);
        let dir = tempfile::Builder::new()
            .prefix("banger-guest-")
            .tempdir()
            .unwrap();
        let mut g = GuestNet {
            host_ns: host_ns.clone(),
            guest_ns: guest_ns.clone(),
            guest_if: guest_if.clone(),
            host_if: host_if.clone(),
            client_key: dir.path().join("client/id_ed25519"),
            dir,
            sshd: None,
            entered_from: std::sync::Mutex::new(None),
        };
        ip(&[
            "link", "add", "name", &host_if, "netns", &host_ns, "type", "veth", "peer", "name",
            &guest_if, "netns", &guest_ns,
        ]);
        ip(&[
            "-n",
            &host_ns,
            "addr",
            "add",
            "172.30.0.1/24",
            "dev",
            &host_if,
        ]);
        ip(&["-n", &host_ns, "link", "set", &host_if, "up"]);
        ip(&["-n", &host_ns, "link", "set", "lo", "up"]);
        for a in ["172.30.0.2/24", "172.30.0.3/24", "172.30.0.4/24"] {
            ip(&["-n", &guest_ns, "addr", "add", a, "dev", &guest_if]);
        }
        ip(&["-n", &guest_ns, "link", "set", &guest_if, "up"]);
        ip(&["-n", &guest_ns, "link", "set", "lo", "up"]);
        std::fs::create_dir_all(g.client_key.parent().unwrap()).unwrap();
        keygen(&g.client_key);
        std::fs::copy(
            g.client_key.with_extension("pub"),
            g.dir.path().join("authorized_keys"),
        )
        .unwrap();
        g.start_sshd();
        Some(g)
    }

    /// (Re)start sshd with a fresh host key.
    pub fn start_sshd(&mut self) {
        self.stop_sshd();
        std::fs::create_dir_all("/run/sshd").unwrap();
        let hostkey = self.dir.path().join("hostkey");
        let _ = std::fs::remove_file(&hostkey);
        let _ = std::fs::remove_file(hostkey.with_extension("pub"));
        keygen(&hostkey);
        let cfg = self.dir.path().join("sshd_config");
        std::fs::write(
            &cfg,
            format!(
                "Port {SSH_PORT}\nListenAddress 0.0.0.0\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PidFile none\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 LogLevel ERROR\nMaxStartups 100\n",
                hk = hostkey.display(),
                ak = self.dir.path().join("authorized_keys").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.path().join("sshd.log")).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.guest_ns,
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.sshd = Some(child);
        wait_listening(&self.guest_ns, SSH_PORT, &self.dir.path().join("sshd.log"));
    }

    fn stop_sshd(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            // `ip netns exec` execs sshd, so this pid is sshd itself.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Move the calling thread into the host namespace: processes it spawns
    /// from now on (bangerd, banger) live there.
    /// The thread goes back to its namespace when `self` is dropped.
    pub fn enter_host(&self) {
        let mut from = self.entered_from.lock().unwrap();
        if from.is_none() {
            *from = Some(std::fs::File::open("/proc/thread-self/ns/net").unwrap());
        }
        let f = std::fs::File::open(format!("/run/netns/{}", self.host_ns)).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
    }

    /// Limit the host→guest rate (slow imports for tests).
    pub fn limit_rate(&self, rate: &str) -> bool {
        Command::new("tc")
            .args([
                "-n",
                &self.host_ns,
                "qdisc",
                "add",
                "dev",
                &self.host_if,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "64kbit",
                "latency",
                "2000ms",
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// `[guest]` keys pointing the daemon at this sshd; `work` is the
    /// guest work dir (a host directory: the "guest" shares our files).
    pub fn guest_toml(&self, work: &Path, readiness: &str) -> String {
        format!(
            "\n[guest]\nssh_port = {SSH_PORT}\nssh_key = {:?}\nwork_dir = {:?}\n\
             readiness = {readiness:?}\nreadiness_timeout_secs = 10\nconnect_timeout_secs = 5\n",
            self.client_key.display().to_string(),
            work.display().to_string()
        )
    }
}

impl Drop for GuestNet {
    fn drop(&mut self) {
        if let Some(from) = self.entered_from.lock().unwrap().take() {
            let _ = nix::sched::setns(from, nix::sched::CloneFlags::CLONE_NEWNET);
        }
        self.stop_sshd();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.host_ns])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.guest_ns])
            .status();
    }
}
