//! Port forwarding (`vm forward`) on the simulator, with a real TCP echo
//! service standing in for the guest: it listens on the VM's guest address
//! inside the guest namespace of `guestnet`, and `bangerd` (in the host
//! namespace) forwards 127.0.0.1 ports to it. Checked: data flows, the
//! errors (in use, already forwarded, unknown VM, bad spec), `vm ports` and
//! `vm show`, a stopped VM's connections reset and a started one's flowing
//! again, a daemon restart re-opening the listeners (and reporting one it
//! cannot), `--remove` and `vm delete` closing them.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use banger_api::forward::PortForward;
use banger_api::{VmDetail, VmState};

use crate::guestnet::GuestNet;
use crate::util::{Fixtures, TestDaemon};

/// The guest service's port.
const GUEST_PORT: u16 = 7000;

/// A TCP echo server on `addr` inside network namespace `ns`, run by a
/// thread of its own (the namespace is per thread); stopped on drop.
pub struct EchoServer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EchoServer {
    pub fn start(ns: &str, addr: SocketAddr) -> EchoServer {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns_file = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            nix::sched::setns(ns_file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        std::thread::spawn(move || {
                            let mut r = s.try_clone().unwrap();
                            let _ = std::io::copy(&mut r, &mut s);
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => panic!("echo accept: {e}"),
                }
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        EchoServer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Send `msg` through 127.0.0.1:`port`, half-close, and read what comes
/// back.
pub fn echo_through(port: u16, msg: &str) -> std::io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(msg.as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut back = String::new();
    s.read_to_string(&mut back)?;
    Ok(back)
}

/// Whether nothing listens on 127.0.0.1:`port`.
fn refused(port: u16) -> bool {
    matches!(
        TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(5)),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused
    )
}

fn assert_echo(d: &TestDaemon, port: u16, msg: &str) {
    match echo_through(port, msg) {
        Ok(back) => assert_eq!(back, msg, "echo through 127.0.0.1:{port}"),
        Err(e) => panic!(
            "echo through 127.0.0.1:{port}: {e}; daemon log:\n{}",
            crate::util::tail(&d.log(), 30)
        ),
    }
}

/// `banger ARGS` must fail with `code` and say `words` on stderr.
fn assert_fails(d: &TestDaemon, args: &[&str], code: i32, words: &str) {
    let out = d.cli(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "banger {args:?}: {err}");
    assert!(err.contains(words), "banger {args:?}: {err}");
}

#[test]
fn forwards_carry_data_survive_restarts_and_go_with_remove_and_delete() {
    const TEST: &str = "forwards_carry_data_survive_restarts_and_go_with_remove_and_delete";
    let Some(fx) = Fixtures::new(TEST) else {
        return;
    };
    let Some(net) = GuestNet::new(TEST) else {
        return;
    };
    net.enter_host();
    let work = net.dir.path().join("guest-work");
    let mut d = TestDaemon::start_with(&[], &net.guest_toml(&work, "none"));
    d.register_image(&fx, "base");
    d.cli_ok(&["vm", "create", "dev", "--image", "base"]);
    let vm = d.wait_state("dev", VmState::Running, 20);
    let _echo = EchoServer::start(
        &net.guest_ns,
        SocketAddr::new(vm.guest_ip.into(), GUEST_PORT),
    );

    // A free port is picked and printed; 127.0.0.1 unless asked otherwise.
    let f: PortForward = d.cli_json(&["vm", "forward", "dev", &GUEST_PORT.to_string()]);
    assert_eq!(f.address.to_string(), "127.0.0.1");
    assert!(f.listening && f.host_port != 0, "{f:?}");
    let port = f.host_port;
    assert_echo(&d, port, "hello through the forward");
    let out = d.cli_ok(&["vm", "forward", "dev", &format!("0:{GUEST_PORT}")]);
    let second: u16 = out
        .trim()
        .strip_prefix("forwarding 127.0.0.1:")
        .and_then(|r| r.split_once(' '))
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert_ne!(second, port);
    assert_echo(&d, second, "and through the second");

    // Clear errors, nothing changed by them.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap().port();
    assert_fails(
        &d,
        &["vm", "forward", "dev", &format!("{held}:{GUEST_PORT}")],
        4,
        &format!("127.0.0.1:{held} is already in use"),
    );
    assert_fails(
        &d,
        &["vm", "forward", "dev", &format!("{port}:{GUEST_PORT}")],
        4,
        &format!("127.0.0.1:{port} is already forwarded to VM dev port {GUEST_PORT}"),
    );
    assert_fails(
        &d,
        &["vm", "forward", "nope", "80"],
        3,
        "no VM named \"nope\"",
    );
    assert_fails(
        &d,
        &["vm", "forward", "dev", "80:x"],
        2,
        "invalid guest port",
    );
    assert_fails(
        &d,
        &["vm", "forward", "dev", "80", "--address", "192.0.2.1"],
        2,
        "cannot listen on 192.0.2.1: it is not an address of this host",
    );
    assert_fails(
        &d,
        &["vm", "forward", "dev", "80", "--remove"],
        3,
        "VM dev has no forward to guest port 80",
    );

    // Listed by `vm ports` and `vm show`.
    let ports = d.cli_ok(&["vm", "ports", "dev"]);
    assert!(ports.contains(&format!("127.0.0.1:{port}")), "{ports}");
    assert!(ports.contains(&format!("dev.vm:{GUEST_PORT}")), "{ports}");
    let show = d.cli_ok(&["vm", "show", "dev"]);
    assert!(
        show.contains(&format!("127.0.0.1:{port} -> port {GUEST_PORT}")),
        "{show}"
    );
    let detail: VmDetail = d.cli_json(&["vm", "show", "dev"]);
    assert_eq!(detail.forwards.len(), 2, "{:?}", detail.forwards);

    // A stopped VM: the port stays held, connections are reset; started
    // again, data flows.
    d.cli_ok(&["vm", "stop", "dev"]);
    d.wait_state("dev", VmState::Stopped, 20);
    assert!(
        !refused(port),
        "the listener stays open while the VM is stopped"
    );
    let back = echo_through(port, "nobody home");
    assert!(
        !matches!(&back, Ok(b) if !b.is_empty()),
        "a stopped VM's connection carries nothing: {back:?}"
    );
    d.cli_ok(&["vm", "start", "dev"]);
    d.wait_state("dev", VmState::Running, 20);
    assert_echo(&d, port, "after vm start");

    // A daemon restart: the listeners close with the daemon and re-open at
    // its start; one whose port was taken meanwhile is reported.
    d.kill_hard();
    assert!(
        refused(port) && refused(second),
        "no listener without bangerd"
    );
    let squatter = TcpListener::bind(("127.0.0.1", second)).unwrap();
    d.spawn();
    assert_echo(&d, port, "after a daemon restart");
    let detail: VmDetail = d.cli_json(&["vm", "show", "dev"]);
    let lost = detail
        .forwards
        .iter()
        .find(|f| f.host_port == second)
        .unwrap();
    assert!(!lost.listening, "{lost:?}");
    assert!(
        lost.error
            .as_deref()
            .unwrap_or("")
            .contains("already in use"),
        "{lost:?}"
    );
    let ports = d.cli_ok(&["vm", "ports", "dev"]);
    assert!(ports.contains("not listening"), "{ports}");
    drop(squatter);
    d.kill_hard();
    d.spawn();
    assert_echo(&d, second, "re-opened at the next start");

    // --remove closes the listener at once; the other stays.
    let out = d.cli_ok(&[
        "vm",
        "forward",
        "dev",
        &format!("{port}:{GUEST_PORT}"),
        "--remove",
    ]);
    assert_eq!(
        out.trim(),
        format!("removed 127.0.0.1:{port} -> dev port {GUEST_PORT}")
    );
    assert!(refused(port), "--remove closed 127.0.0.1:{port}");
    assert_echo(&d, second, "the other forward is kept");

    // Deleting the VM closes its forwards; a restart does not bring them back.
    d.cli_ok(&["vm", "delete", "dev", "--force"]);
    assert!(refused(second), "vm delete closed 127.0.0.1:{second}");
    d.kill_hard();
    d.spawn();
    assert!(refused(second), "the deleted VM's forward stays gone");
    drop(holder);
}

/// A network namespace, deleted on drop.
struct DelNs(String);

impl Drop for DelNs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

/// `GET /index.html` over 127.0.0.1:`port` from inside network namespace
/// `ns` (a thread of its own, since the namespace is per thread).
fn http_get_in(ns: &str, port: u16) -> std::io::Result<String> {
    let ns_file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    std::thread::spawn(move || {
        nix::sched::setns(ns_file, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
        let mut back = String::new();
        s.read_to_string(&mut back)?;
        Ok(back)
    })
    .join()
    .unwrap()
}

/// The same forward to a real guest service: busybox `httpd` in the
/// `qemuguest` guest booted by `banger-fcqemu` under TCG, on banger's own
/// bridge and TAP inside a throwaway network namespace (where `bangerd`
/// runs). SKIPs without root, the cached kernel, QEMU, busybox or `nft`.
#[test]
fn forward_reaches_a_real_guest_service_under_qemu() {
    const TEST: &str = "forward_reaches_a_real_guest_service_under_qemu";
    use crate::qemuguest::{build_initramfs, prerequisites};
    if !crate::util::is_root() {
        banger_testsupport::skip!(TEST, "needs root (network namespace, bridge, TAP)");
    }
    let (kernel, busybox) = match prerequisites() {
        Ok(p) => p,
        Err(why) => banger_testsupport::skip!(TEST, "{why}"),
    };
    if std::process::Command::new("nft")
        .arg("-v")
        .output()
        .is_err()
    {
        banger_testsupport::skip!(TEST, "nft is not installed (apt-get install nftables)");
    }
    let Some(fx) = Fixtures::new(TEST) else {
        return;
    };
    let initrd = fx.dir.path().join("initrd.cpio");
    build_initramfs(&kernel, &busybox, &initrd);
    let ns = format!("bgfwd{}", std::process::id());
    banger_testsupport::run(&["ip", "netns", "add", &ns]);
    let _ns = DelNs(ns.clone());
    banger_testsupport::run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);

    let front = env!("CARGO_BIN_EXE_banger-fcqemu");
    let config = format!(
        "firecracker_bin = {front:?}\n[daemon]\nstop_timeout_secs = 5\nstats_interval_secs = 1\n\
         [vm]\nvcpus = 1\nmemory = \"256M\"\n\
         [guest]\nreadiness = \"none\"\nsync_identity = false\n\
         [network]\ndns_port = 5356\ntap_pool_size = 1\n"
    );
    let mut d = TestDaemon::unstarted(&config, &[("BANGER_QEMU_ACCEL", "tcg")], Some(&ns));
    d.spawn();
    d.cli_ok(&[
        "image",
        "register",
        "busybox",
        "--rootfs",
        fx.rootfs.to_str().unwrap(),
        "--kernel",
        kernel.image.to_str().unwrap(),
        "--initrd",
        initrd.to_str().unwrap(),
    ]);
    d.cli_ok(&["vm", "create", "q1", "--image", "busybox"]);
    let vm = d.wait_state("q1", VmState::Running, 120);
    let console = d.state_dir().join(format!("vms/{}/console.log", vm.id));
    let read = || std::fs::read_to_string(&console).unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    while !read().contains("MARK httpd") {
        assert!(
            std::time::Instant::now() < deadline,
            "the guest's httpd did not start; console:\n{}\ndaemon log:\n{}",
            read(),
            crate::util::tail(&d.log(), 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let f: PortForward = d.cli_json(&["vm", "forward", "q1", "8000"]);
    let page = http_get_in(&ns, f.host_port).unwrap_or_else(|e| {
        panic!(
            "GET through {f:?}: {e}\n{}",
            crate::util::tail(&d.log(), 30)
        )
    });
    assert!(
        page.starts_with("HTTP/1.0 200") || page.starts_with("HTTP/1.1 200"),
        "{page}"
    );
    assert!(page.contains("banger guest service"), "{page}");

    d.cli_ok(&["vm", "delete", "q1", "--force"]);
    assert!(
        http_get_in(&ns, f.host_port).is_err(),
        "the forward closed with the VM"
    );
}

/// A `bangerd` running as a uid without privileges (64000, no passwd
/// entry, via `setpriv`) in a namespace whose unprivileged port start is
/// 1024: a privileged host port is refused with the reason and the way
/// out, before anything else; a high one gets as far as the VM lookup.
#[test]
fn privileged_host_ports_are_refused_for_a_non_root_daemon() {
    const TEST: &str = "privileged_host_ports_are_refused_for_a_non_root_daemon";
    const UID: u32 = 64000;
    if !crate::util::is_root() {
        banger_testsupport::skip!(TEST, "needs root to switch uids and make a namespace");
    }
    if std::process::Command::new("setpriv")
        .arg("--version")
        .output()
        .is_err()
    {
        banger_testsupport::skip!(
            TEST,
            "setpriv is not installed (apt-get install util-linux)"
        );
    }
    let ns = format!("bgfwp{}", std::process::id());
    banger_testsupport::run(&["ip", "netns", "add", &ns]);
    let _ns = DelNs(ns.clone());
    banger_testsupport::run(&[
        "ip",
        "netns",
        "exec",
        &ns,
        "sysctl",
        "-qw",
        "net.ipv4.ip_unprivileged_port_start=1024",
    ]);
    let config = format!(
        "firecracker_bin = {:?}\n[network]\nenabled = false\n[guest]\nreadiness = \"none\"\nsync_identity = false\n",
        crate::util::bin("banger-fcsim").display().to_string()
    );
    let mut d = TestDaemon::unstarted(&config, &[], Some(&ns));
    let dir = d.dir.path().to_path_buf();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = dir.join("home");
    d.env.push(("HOME".into(), home.display().to_string()));
    std::fs::create_dir_all(dir.join("state/run")).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    for p in [dir.join("state"), dir.join("state/run"), home] {
        std::os::unix::fs::chown(&p, Some(UID), Some(UID)).unwrap();
    }
    d.launcher = [
        "setpriv",
        &format!("--reuid={UID}"),
        &format!("--regid={UID}"),
        "--clear-groups",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // The install metadata naming the uid as the owner: the tests' client
    // and CLI trust its daemon through it.
    let meta = format!(
        "version = \"test\"\nowner = \"bgtest\"\nowner_uid = {UID}\nowner_gid = {UID}\n\
         [paths]\nconfig = {:?}\nstate_dir = {:?}\nruntime_dir = {:?}\nhelper_socket = \"/nonexistent/root.sock\"\n\
         bin_dir = \"/usr/local/bin\"\nunit_dir = \"/etc/systemd/system\"\n",
        dir.join("config.toml"),
        dir.join("state"),
        dir.join("state/run"),
    );
    std::fs::write(dir.join("install.toml"), meta).unwrap();
    d.spawn();
    let cli = |args: &[&str]| {
        let out = d.cli(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = cli(&["vm", "forward", "dev", "80:80"]);
    assert_eq!(code, Some(2), "{err}\n{}", d.log());
    assert!(err.contains("host port 80 is privileged"), "{err}");
    assert!(err.contains(&format!("uid {UID}")), "{err}");
    assert!(err.contains("8080:GUEST_PORT"), "{err}");
    let (code, err) = cli(&["vm", "forward", "dev", "8080:80"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("no VM named \"dev\""), "{err}");
}
