//! Remote contexts against a real OpenSSH `sshd`: two throwaway network
//! namespaces joined by a veth pair, the "remote host" (`192.0.2.2`) runs a
//! dev-path `bangerd` (simulator VMM) and `sshd` on port 2222; the CLI runs
//! in the "laptop" namespace (`192.0.2.1`) with its own `HOME` and reaches
//! the daemon only through `ssh … banger system dial-stdio`. The remote
//! login's environment (`PATH` to this build's `banger`, `BANGER_SOCKET`,
//! `HOME`) comes from the `environment=` options of the test's
//! authorized_keys. Needs root (namespaces, sshd); skips otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use banger_api::{Vm, VmDetail, VmState};

use crate::guestnet::{ip, keygen, unavailable, wait_listening};
use crate::util::{Fixtures, TestDaemon, bin, tail};

const PORT: u16 = 2222;
const REMOTE: &str = "192.0.2.2";
static SEQ: AtomicU32 = AtomicU32::new(0);

/// The two namespaces, the remote sshd and the laptop's files.
struct Remote {
    laptop_ns: String,
    host_ns: String,
    dir: tempfile::TempDir,
    sshd: Option<std::process::Child>,
}

impl Remote {
    /// Namespaces up, sshd listening; its login gets `env` (authorized_keys
    /// `environment=` options) with the laptop's key.
    fn new(env: &[(&str, String)]) -> Remote {
        let tag = format!(
            "{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let r = Remote {
            laptop_ns: format!("bgrml{tag}"),
            host_ns: format!("bgrmh{tag}"),
            dir: tempfile::Builder::new()
                .prefix("banger-remote-")
                .tempdir()
                .unwrap(),
            sshd: None,
        };
        let (lif, hif) = (format!("brl{tag}"), format!("brh{tag}"));
        ip(&["netns", "add", &r.laptop_ns]);
        ip(&["netns", "add", &r.host_ns]);
        ip(&[
            "link",
            "add",
            "name",
            &lif,
            "netns",
            &r.laptop_ns,
            "type",
            "veth",
            "peer",
            "name",
            &hif,
            "netns",
            &r.host_ns,
        ]);
        for (ns, ifc, addr) in [
            (&r.laptop_ns, &lif, "192.0.2.1/24"),
            (&r.host_ns, &hif, "192.0.2.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", ifc]);
            ip(&["-n", ns, "link", "set", ifc, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let d = r.dir.path();
        keygen(&d.join("hostkey"));
        keygen(&d.join("laptop_key"));
        let options: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("environment=\"{k}={v}\""))
            .collect();
        let pubkey = std::fs::read_to_string(d.join("laptop_key.pub")).unwrap();
        std::fs::write(
            d.join("authorized_keys"),
            format!("{} {pubkey}", options.join(",")).trim_start(),
        )
        .unwrap();
        let hostkey = std::fs::read_to_string(d.join("hostkey.pub")).unwrap();
        std::fs::write(
            d.join("known_hosts"),
            format!("[{REMOTE}]:{PORT} {hostkey}"),
        )
        .unwrap();
        // The laptop's ssh config: only the test's key and known_hosts.
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {k}\n  IdentitiesOnly yes\n  UserKnownHostsFile {kh}\n  \
                 GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  BatchMode yes\n  \
                 ConnectTimeout 10\n  LogLevel ERROR\n",
                k = d.join("laptop_key").display(),
                kh = d.join("known_hosts").display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {PORT}\nListenAddress {REMOTE}\nHostKey {hk}\nAuthorizedKeysFile {ak}\n\
                 PermitUserEnvironment yes\nPidFile none\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nLogLevel ERROR\n",
                hk = d.join("hostkey").display(),
                ak = d.join("authorized_keys").display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all("/run/sshd").unwrap();
        std::fs::create_dir_all(r.home()).unwrap();
        let mut r = r;
        r.sshd = Some(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &r.host_ns,
                    "/usr/sbin/sshd",
                    "-D",
                    "-e",
                    "-f",
                ])
                .arg(r.dir.path().join("sshd_config"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(r.dir.path().join("sshd.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_listening(&r.host_ns, PORT, &r.dir.path().join("sshd.log"));
        r
    }

    /// The laptop user's home (contexts.toml, ~/.ssh/config.d).
    fn home(&self) -> PathBuf {
        self.dir.path().join("laptop-home")
    }

    fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Run `banger ARGS` on the laptop (its namespace, its HOME), with
    /// `$BANGER_CONTEXT` when `env_context` is given.
    fn banger(&self, env_context: Option<&str>, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.laptop_ns])
            .arg(bin("banger"))
            .args(args)
            .env("HOME", self.home())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        for v in [
            "XDG_CONFIG_HOME",
            "XDG_RUNTIME_DIR",
            "XDG_STATE_HOME",
            "BANGER_CONTEXT",
            "BANGER_SOCKET",
            "BANGER_STATE_DIR",
            "BANGER_CONFIG",
        ] {
            c.env_remove(v);
        }
        if let Some(n) = env_context {
            c.env("BANGER_CONTEXT", n);
        }
        c.output().expect("run banger")
    }

    fn ok(&self, d: &TestDaemon, env_context: Option<&str>, args: &[&str]) -> String {
        let out = self.banger(env_context, args);
        assert!(
            out.status.success(),
            "banger {args:?} failed ({}):\nstdout: {}\nstderr: {}\nsshd log: {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.sshd_log(),
            tail(&d.log(), 20)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in [&self.laptop_ns, &self.host_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_vm_is_created_listed_shown_and_deleted_through_a_context() {
    const T: &str = "remote::a_vm_is_created_listed_shown_and_deleted_through_a_context";
    if let Some(why) = unavailable() {
        banger_testsupport::skip!(T, "{why}");
    }
    let Some(fx) = Fixtures::new(T) else { return };
    let remote_home = tempfile::tempdir().unwrap();
    let d = TestDaemon::start_full(
        &[("HOME", &remote_home.path().display().to_string())],
        "",
        "enabled = false\n",
        None,
    );
    d.register_image(&fx, "img");
    let bindir = bin("banger").parent().unwrap().display().to_string();
    let r = Remote::new(&[
        ("PATH", format!("{bindir}:/usr/sbin:/usr/bin:/sbin:/bin")),
        ("BANGER_SOCKET", d.socket().display().to_string()),
        ("HOME", remote_home.path().display().to_string()),
    ]);
    let cfg = r.dir.path().join("ssh_config").display().to_string();
    let url = format!("ssh://root@{REMOTE}:{PORT}");

    // Contexts live in the laptop's config dir.
    r.ok(
        &d,
        None,
        &["context", "add", "lab", &url, "--ssh-config", &cfg],
    );
    let file = r.home().join(".config/banger/contexts.toml");
    assert!(std::fs::read_to_string(&file).unwrap().contains(&url));
    let bad = r.banger(None, &["context", "add", "evil", "ssh://-oProxyCommand=x"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let dup = r.banger(None, &["context", "add", "lab", &url]);
    assert_eq!(dup.status.code(), Some(4), "{}", stderr(&dup));
    // Nothing runs on the laptop: the local context is unreachable.
    let local = r.banger(None, &["vm", "list"]);
    assert_eq!(local.status.code(), Some(6), "{}", stderr(&local));

    // --context: create (following the operation over ssh), list, show.
    r.ok(
        &d,
        None,
        &["--context", "lab", "vm", "create", "web", "--image", "img"],
    );
    assert_eq!(
        d.vm("web").unwrap().state,
        VmState::Running,
        "made by the remote daemon"
    );
    let vms: Vec<Vm> =
        serde_json::from_str(&r.ok(&d, None, &["--context", "lab", "vm", "list", "--json"]))
            .unwrap();
    assert_eq!(
        vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        ["web"]
    );
    // $BANGER_CONTEXT.
    let shown: VmDetail =
        serde_json::from_str(&r.ok(&d, Some("lab"), &["vm", "show", "web", "--json"])).unwrap();
    assert_eq!(shown.vm.id, d.vm("web").unwrap().id);
    let status = r.ok(&d, Some("lab"), &["status"]);
    assert!(
        status.contains(&url),
        "status names the remote daemon: {status}"
    );
    let unknown = r.banger(Some("nope"), &["vm", "list"]);
    assert_eq!(unknown.status.code(), Some(3), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("$BANGER_CONTEXT"),
        "{}",
        stderr(&unknown)
    );

    // `context use`: the current context; --context local overrides it.
    r.ok(&d, None, &["context", "use", "lab"]);
    assert!(r.ok(&d, None, &["vm", "list"]).contains("web"));
    let list = r.ok(&d, None, &["context", "list"]);
    assert!(
        list.lines()
            .any(|l| l.trim_start().starts_with("* ") && l.contains("lab")),
        "{list}"
    );
    let forced = r.banger(None, &["--context", "local", "vm", "list"]);
    assert_eq!(forced.status.code(), Some(6), "{}", stderr(&forced));

    // vm ssh runs the remote banger's `vm ssh` (its answer comes back).
    let ssh = r.banger(None, &["vm", "ssh", "no-such-vm", "--", "echo", "it's"]);
    assert_eq!(ssh.status.code(), Some(3), "{}", stderr(&ssh));
    assert!(stderr(&ssh).contains("no-such-vm"), "{}", stderr(&ssh));
    // doctor: only the remote daemon's checks, not this machine's config.
    let doc = r.banger(None, &["doctor", "--json"]);
    let checks: Vec<banger_api::doctor::Check> =
        serde_json::from_slice(&doc.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&doc)));
    let daemon = checks
        .iter()
        .find(|c| c.name == "daemon")
        .expect("daemon check");
    assert!(daemon.detail.contains(&url), "{}", daemon.detail);
    assert!(!checks.iter().any(|c| c.name == "config"), "{checks:?}");

    // Commands that read this machine's files: remote paths, or refused.
    let rel = r.banger(
        None,
        &[
            "image",
            "register",
            "x",
            "--rootfs",
            "rootfs.ext4",
            "--kernel",
            "/k",
        ],
    );
    assert_eq!(rel.status.code(), Some(2), "{}", stderr(&rel));
    assert!(stderr(&rel).contains("absolute"), "{}", stderr(&rel));
    // An absolute path is the remote host's: the daemon opens it there.
    let rootfs = fx.rootfs.display().to_string();
    let kernel = fx.kernel.display().to_string();
    r.ok(
        &d,
        None,
        &[
            "image", "register", "img2", "--rootfs", &rootfs, "--kernel", &kernel,
        ],
    );
    let cfg_show = r.banger(None, &["config", "show"]);
    assert_eq!(cfg_show.status.code(), Some(2), "{}", stderr(&cfg_show));
    assert!(
        stderr(&cfg_show).contains("context lab"),
        "{}",
        stderr(&cfg_show)
    );

    // ssh-config: ProxyJump through the daemon's host, in its own file.
    // (The remote daemon here runs without a guest network: a running VM
    // there has no network card and is left out of the include, so the
    // VM is stopped first.)
    r.ok(&d, None, &["vm", "stop", "web"]);
    r.ok(&d, None, &["ssh-config"]);
    let include = std::fs::read_to_string(r.home().join(".ssh/config.d/banger-lab")).unwrap();
    assert!(
        include.contains(&format!("Host web.vm\n  ProxyJump root@{REMOTE}:{PORT}\n")),
        "{include}"
    );
    assert!(!include.contains("IdentityFile"), "{include}");
    let main = std::fs::read_to_string(r.home().join(".ssh/config")).unwrap();
    assert!(
        main.starts_with("Include ~/.ssh/config.d/banger*\n"),
        "{main}"
    );

    // Delete: gone on the remote host, and the include follows.
    r.ok(&d, None, &["vm", "delete", "web", "--force"]);
    assert!(d.vm("web").is_err(), "deleted on the remote daemon");
    let include = std::fs::read_to_string(r.home().join(".ssh/config.d/banger-lab")).unwrap();
    assert!(!include.contains("web.vm"), "{include}");

    r.ok(&d, None, &["context", "rm", "lab"]);
    let after = r.banger(None, &["--context", "lab", "vm", "list"]);
    assert_eq!(after.status.code(), Some(3), "{}", stderr(&after));
    assert!(Path::new(&file).exists());
}

#[test]
fn an_unreachable_host_is_exit_6_with_what_ssh_said() {
    const T: &str = "remote::an_unreachable_host_is_exit_6_with_what_ssh_said";
    if let Some(why) = unavailable() {
        banger_testsupport::skip!(T, "{why}");
    }
    let r = Remote::new(&[("PATH", "/usr/bin:/bin".to_string())]);
    let cfg = r.dir.path().join("ssh_config").display().to_string();
    // No sshd on port 2223.
    let url = format!("ssh://root@{REMOTE}:2223");
    let out = r.banger(
        None,
        &["context", "add", "dead", &url, "--ssh-config", &cfg],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = r.banger(None, &["--context", "dead", "vm", "list"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains(&format!("cannot reach bangerd at {url} over SSH")),
        "{e}"
    );
    assert!(e.contains("exit 255") && e.contains("refused"), "{e}");

    // sshd answers, but the remote login has no banger on its PATH.
    let url = format!("ssh://root@{REMOTE}:{PORT}");
    r.banger(
        None,
        &["context", "add", "nobanger", &url, "--ssh-config", &cfg],
    );
    let out = r.banger(None, &["--context", "nobanger", "status"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("exit 127"), "{}", stderr(&out));
}
