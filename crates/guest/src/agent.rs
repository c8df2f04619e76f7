//! What `banger-guest init` and `banger-guest serve` do inside the guest.
//! Each step logs one line to stderr (the unit sends it to the journal and
//! the console). Paths under `/etc` are relative to a root so the file
//! steps are tested on temp directories.

use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::cmdline::{self, IpConfig};
use crate::netlink::{self, Netlink};
use crate::proto;

/// Log one line as the agent.
pub fn log(msg: impl std::fmt::Display) {
    let _ = writeln!(io::stderr(), "banger-guest: {msg}");
}

/// How long `init` waits for the network device to appear (its driver may
/// be a module udev is still loading).
const DEVICE_WAIT: Duration = Duration::from_secs(20);

/// `/etc/resolv.conf` from the `ip=` DNS servers. A symlink (managed by
/// systemd-resolved or resolvconf) is left alone. Returns whether it wrote.
pub fn write_resolv_conf(root: &Path, c: &IpConfig) -> io::Result<bool> {
    let servers: Vec<Ipv4Addr> = [c.dns0, c.dns1].into_iter().flatten().collect();
    if servers.is_empty() {
        return Ok(false);
    }
    let path = root.join("etc/resolv.conf");
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        log(format!(
            "{} is a symlink (managed by the image); not writing DNS servers",
            path.display()
        ));
        return Ok(false);
    }
    let mut text = String::from("# written by banger-guest from the kernel's ip= argument\n");
    for s in servers {
        text.push_str(&format!("nameserver {s}\n"));
    }
    std::fs::write(&path, text)?;
    Ok(true)
}

/// Whether `name` is a DNS label (what banger names VMs).
pub fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// `/etc/hostname` and a `127.0.1.1 <name>` line in `/etc/hosts` (so
/// `sudo` and friends resolve the name), replacing an older `127.0.1.1`
/// line.
pub fn write_hostname_files(root: &Path, name: &str) -> io::Result<()> {
    std::fs::write(root.join("etc/hostname"), format!("{name}\n"))?;
    let hosts = root.join("etc/hosts");
    let old = match std::fs::read_to_string(&hosts) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        }
        Err(e) => return Err(e),
    };
    let mut out: String = old
        .lines()
        .filter(|l| l.split_whitespace().next() != Some("127.0.1.1"))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("127.0.1.1\t{name}\n"));
    if out != old {
        std::fs::write(&hosts, out)?;
    }
    Ok(())
}

/// Set the kernel hostname and write `/etc/hostname` and `/etc/hosts` under `root`.
pub fn set_hostname(root: &Path, name: &str) -> Result<(), String> {
    set_kernel_hostname(name).map_err(|e| format!("cannot set the hostname to {name}: {e}"))?;
    write_hostname_files(root, name).map_err(|e| {
        format!("hostname {name} set, but /etc/hostname or /etc/hosts not written: {e}")
    })
}

fn set_kernel_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes.
    if unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The device to configure: the named one once it exists, or else the
/// only non-loopback device of `/sys/class/net` (renamed by udev).
fn wait_for_device(name: &str) -> Option<(String, u32)> {
    let start = Instant::now();
    loop {
        if let Some(i) = netlink::link_index(name) {
            return Some((name.to_string(), i));
        }
        if start.elapsed() > DEVICE_WAIT {
            let others: Vec<String> = std::fs::read_dir("/sys/class/net")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n != "lo")
                .collect();
            if let [only] = others.as_slice() {
                log(format!(
                    "no device {name}; configuring the only one, {only}"
                ));
                return netlink::link_index(only).map(|i| (only.clone(), i));
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Bring `lo` and the device up, add the address and default route.
fn configure_network(c: &IpConfig) -> Result<(), String> {
    let wanted = c.device.as_deref().unwrap_or("eth0");
    let Some((dev, index)) = wait_for_device(wanted) else {
        return Err(format!(
            "network device {wanted} did not appear within {}s; is its driver (virtio_net) in the initrd or the image's modules?",
            DEVICE_WAIT.as_secs()
        ));
    };
    if netlink::has_ipv4(&dev).map_err(|e| format!("cannot list addresses: {e}"))? {
        log(format!(
            "{dev} already has an IPv4 address (kernel ip=); leaving the network as is"
        ));
        return Ok(());
    }
    let mut nl = Netlink::open().map_err(|e| format!("cannot open a netlink socket: {e}"))?;
    if let Some(lo) = netlink::link_index("lo") {
        nl.set_up(lo, "lo").map_err(|e| e.to_string())?;
    }
    nl.set_up(index, &dev).map_err(|e| e.to_string())?;
    match nl.add_address(index, &dev, c.client, c.prefix) {
        Ok(()) => {}
        Err(e) if netlink::already_exists(&e) => {}
        Err(e) => return Err(e.to_string()),
    }
    if let Some(gw) = c.gateway {
        match nl.add_default_route(index, &dev, gw) {
            Ok(()) => {}
            Err(e) if netlink::already_exists(&e) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    log(format!(
        "configured {dev}: {}/{} via {}",
        c.client,
        c.prefix,
        c.gateway
            .map_or("no gateway".to_string(), |g| g.to_string())
    ));
    Ok(())
}

/// Create the Ed25519 SSH host key when the image lacks it (under
/// `root`), so an image built without host keys gets its own per VM. Only
/// Ed25519, not `ssh-keygen -A`: its RSA-3072 key took 12–44 s of a TCG
/// boot (prime search), while sshd skips absent default key types
/// silently and OpenSSH clients prefer Ed25519.
pub(crate) fn ensure_host_keys(root: &Path) {
    let dir = root.join("etc/ssh");
    if !dir.is_dir() {
        log("no /etc/ssh; skipping SSH host keys");
        return;
    }
    let key = dir.join("ssh_host_ed25519_key");
    if key.exists() {
        log("SSH host key present (from the image)");
        return;
    }
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "", "-f"])
        .arg(&key)
        .output();
    match out {
        Ok(o) if o.status.success() => log(format!("generated SSH host key {}", key.display())),
        Ok(o) => log(format!(
            "ssh-keygen for {} failed ({}): {}",
            key.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            log("ssh-keygen not installed; skipping SSH host keys")
        }
        Err(e) => log(format!("cannot run ssh-keygen: {e}")),
    }
}

/// `banger-guest init`: [`init_with`] on `/` and `/proc/cmdline`.
pub fn init() -> i32 {
    let line = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    init_with(Path::new("/"), &line)
}

/// Apply kernel command line `line`: the network from `ip=` (in the
/// caller's network namespace), resolv.conf, the hostname (kernel and
/// files), SSH host keys; files go under `root`. Returns the process exit
/// code: 0 unless the network from `ip=` could not be applied.
pub fn init_with(root: &Path, line: &str) -> i32 {
    let mut code = 0;
    let config = match cmdline::ip_arg(line).map(cmdline::parse_ip) {
        None => {
            log("no ip= on the kernel command line; leaving the network to the image");
            None
        }
        Some(Ok(None)) => {
            log("ip= is not a static configuration; leaving the network to the image");
            None
        }
        Some(Ok(Some(c))) => Some(c),
        Some(Err(e)) => {
            log(e);
            code = 1;
            None
        }
    };
    if let Some(c) = &config {
        if let Err(e) = configure_network(c) {
            log(e);
            code = 1;
        }
        match write_resolv_conf(root, c) {
            Ok(true) => log("wrote /etc/resolv.conf from ip="),
            Ok(false) => {}
            Err(e) => log(format!("cannot write /etc/resolv.conf: {e}")),
        }
        match c.hostname.as_deref() {
            Some(h) if is_dns_label(h) => {
                if let Err(e) = set_kernel_hostname(h) {
                    log(format!("cannot set the hostname to {h}: {e}"));
                } else if let Err(e) = write_hostname_files(root, h) {
                    log(format!(
                        "hostname {h} set, but /etc/hostname or /etc/hosts not written: {e}"
                    ));
                } else {
                    log(format!("hostname {h}"));
                }
            }
            Some(h) => log(format!("ignoring hostname {h:?} from ip=: not a DNS label")),
            None => {}
        }
    }
    ensure_host_keys(root);
    code
}

/// How long `serve` keeps trying to bind vsock before it concludes the VM
/// has no vsock device (the transport module may still be loading).
const VSOCK_WAIT: Duration = Duration::from_secs(30);

/// A listening `AF_VSOCK` socket on `port` (any CID).
pub fn vsock_listen(port: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero sockaddr_vm is valid; fields are set below.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_port = port;
    addr.svm_cid = libc::VMADDR_CID_ANY;
    // SAFETY: `addr` is a valid sockaddr_vm of the given size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: listen on a bound socket we own.
    if unsafe { libc::listen(fd.as_raw_fd(), 16) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// How long a connection may stay idle before the agent drops it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Accept connections on `listener` forever, one thread each, answering
/// the protocol from `proc_root`.
pub fn accept_loop(listener: &OwnedFd, proc_root: &'static Path) -> io::Error {
    loop {
        // SAFETY: accept4 on a listening socket we own; no peer address wanted.
        let c = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if c < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.raw_os_error(),
                Some(libc::EINTR | libc::ECONNABORTED | libc::EMFILE | libc::ENFILE)
            ) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            return e;
        }
        // SAFETY: `c` is the fresh connected socket accept4 returned.
        let conn = unsafe { OwnedFd::from_raw_fd(c) };
        // A host that goes quiet must not pin a thread forever.
        let idle = libc::timeval {
            tv_sec: IDLE_TIMEOUT.as_secs() as libc::time_t,
            tv_usec: 0,
        };
        // SAFETY: `idle` is a valid timeval for SO_RCVTIMEO on our socket.
        unsafe {
            libc::setsockopt(
                conn.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&idle as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        let conn = std::fs::File::from(conn);
        std::thread::spawn(move || {
            if let Err(e) = proto::handle(conn, proc_root) {
                log(format!("connection ended: {e}"));
            }
        });
    }
}

/// `banger-guest serve`: listen on vsock port `port` and answer. Exits 0
/// when the VM has no vsock (readiness then goes over SSH).
pub fn serve(port: u32) -> i32 {
    let start = Instant::now();
    let listener = loop {
        match vsock_listen(port) {
            Ok(l) => break l,
            Err(e) if start.elapsed() < VSOCK_WAIT => {
                if start.elapsed() < Duration::from_millis(200) {
                    log(format!(
                        "vsock port {port} not available yet ({e}); retrying"
                    ));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => {
                log(format!(
                    "no vsock in this VM ({e}); not serving (the host falls back to SSH)"
                ));
                return 0;
            }
        }
    };
    log(format!(
        "listening on vsock port {port} (agent {})",
        proto::AGENT_VERSION
    ));
    let e = accept_loop(&listener, Path::new("/proc"));
    log(format!("accept on vsock port {port} failed: {e}"));
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dns: Option<Ipv4Addr>) -> IpConfig {
        IpConfig {
            client: Ipv4Addr::new(10, 0, 0, 2),
            gateway: None,
            prefix: 24,
            hostname: Some("dev".into()),
            device: None,
            dns0: dns,
            dns1: None,
        }
    }

    #[test]
    fn resolv_conf_written_unless_absent_or_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        assert!(!write_resolv_conf(t.path(), &config(None)).unwrap());
        assert!(!t.path().join("etc/resolv.conf").exists());
        assert!(write_resolv_conf(t.path(), &config(Some(Ipv4Addr::new(192, 0, 2, 53)))).unwrap());
        let text = std::fs::read_to_string(t.path().join("etc/resolv.conf")).unwrap();
        assert!(text.ends_with("nameserver 192.0.2.53\n"), "{text}");
        std::fs::remove_file(t.path().join("etc/resolv.conf")).unwrap();
        std::os::unix::fs::symlink("../run/resolved.conf", t.path().join("etc/resolv.conf"))
            .unwrap();
        assert!(!write_resolv_conf(t.path(), &config(Some(Ipv4Addr::new(192, 0, 2, 53)))).unwrap());
        assert!(
            t.path()
                .join("etc/resolv.conf")
                .symlink_metadata()
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn hostname_files_replace_the_old_name() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/hosts"),
            "127.0.0.1 localhost\n127.0.1.1 debian\n::1 localhost\n",
        )
        .unwrap();
        write_hostname_files(t.path(), "dev").unwrap();
        write_hostname_files(t.path(), "dev").unwrap();
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/hostname")).unwrap(),
            "dev\n"
        );
        assert_eq!(
            std::fs::read_to_string(t.path().join("etc/hosts")).unwrap(),
            "127.0.0.1 localhost\n::1 localhost\n127.0.1.1\tdev\n"
        );
    }

    #[test]
    fn accept_loop_serves_each_connection() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("agent.sock");
        let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let fd = OwnedFd::from(l);
        std::thread::spawn(move || accept_loop(&fd, Path::new("/proc")));
        for _ in 0..2 {
            let mut c = std::os::unix::net::UnixStream::connect(&path).unwrap();
            c.write_all(b"PING\n").unwrap();
            let line = proto::read_line(&mut c, proto::MAX_REPLY).unwrap().unwrap();
            assert_eq!(proto::parse_pong(&line).unwrap(), proto::AGENT_VERSION);
        }
    }

    #[test]
    fn vsock_listen_binds_where_the_host_has_vsock() {
        match vsock_listen(40000 + std::process::id() % 20000) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::ENODEV)) => {
                banger_testsupport::skip!(
                    "vsock_listen_binds_where_the_host_has_vsock",
                    "no AF_VSOCK on this host: {e}"
                );
            }
            Err(e) => panic!("vsock bind: {e}"),
        }
    }

    /// The whole `init` in a throwaway network and UTS namespace (this
    /// thread only) with a veth named eth0 and a temp root.
    #[test]
    fn init_applies_ip_hostname_dns_and_host_keys() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            banger_testsupport::skip!(
                "init_applies_ip_hostname_dns_and_host_keys",
                "needs root for namespaces"
            );
        }
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/ssh")).unwrap();
        let r = root.path().to_path_buf();
        let t = std::thread::spawn(move || -> Result<(i32, String, String), String> {
            // SAFETY: unshare of net and UTS affects this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWUTS) } != 0 {
                return Err(format!("unshare: {}", io::Error::last_os_error()));
            }
            let ip = |args: &[&str]| std::process::Command::new("ip").args(args).output();
            match ip(&[
                "link", "add", "eth0", "type", "veth", "peer", "name", "peer0",
            ]) {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    return Err(format!(
                        "no veth links: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ));
                }
                Err(e) => return Err(format!("cannot run ip: {e}")),
            }
            let code = init_with(
                &r,
                "console=ttyS0 ip=172.30.0.9::172.30.0.1:255.255.255.0:vm-one:eth0:off:192.0.2.53 quiet",
            );
            let mut host = [0u8; 65];
            // SAFETY: `host` is writable for its length.
            unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) };
            let host = std::ffi::CStr::from_bytes_until_nul(&host).unwrap();
            let addr = ip(&["-4", "-o", "addr", "show"]).unwrap();
            let route = ip(&["-4", "route", "show", "default"]).unwrap();
            Ok((
                code,
                host.to_string_lossy().into_owned(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&addr.stdout),
                    String::from_utf8_lossy(&route.stdout)
                ),
            ))
        });
        let (code, host, net) = match t.join().unwrap() {
            Ok(v) => v,
            Err(why) => {
                banger_testsupport::skip!("init_applies_ip_hostname_dns_and_host_keys", "{why}")
            }
        };
        assert_eq!(code, 0);
        assert_eq!(host, "vm-one");
        assert!(net.contains("lo    inet 127.0.0.1/8"), "lo is up: {net}");
        assert!(net.contains("eth0    inet 172.30.0.9/24"), "{net}");
        assert!(net.contains("default via 172.30.0.1 dev eth0"), "{net}");
        let etc = root.path().join("etc");
        assert_eq!(
            std::fs::read_to_string(etc.join("hostname")).unwrap(),
            "vm-one\n"
        );
        assert!(
            std::fs::read_to_string(etc.join("resolv.conf"))
                .unwrap()
                .contains("nameserver 192.0.2.53")
        );
        if std::process::Command::new("ssh-keygen")
            .arg("-?")
            .output()
            .is_ok()
        {
            assert!(
                etc.join("ssh/ssh_host_ed25519_key").is_file(),
                "host keys generated"
            );
        } else {
            banger_testsupport::print_skip(
                "init_applies_ip_hostname_dns_and_host_keys (host keys part)",
                format_args!("no ssh-keygen"),
            );
        }
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("dev-1"));
        assert!(!is_dns_label("-dev"));
        assert!(!is_dns_label("a.b"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
