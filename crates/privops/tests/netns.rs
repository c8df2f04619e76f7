//! The network operations for real, as root, inside throwaway network
//! namespaces: the test thread `unshare(CLONE_NEWNET)`s into a private
//! "host" namespace, and `ip netns add` makes a "guest" and an "outside"
//! namespace that are deleted afterwards. The machine's own namespace is
//! never touched. Skips (saying so) when not root.

use banger_testsupport::run;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use banger_privops::{LocalPrivOps, NetOps, Policy, PrivOpsError};

const GW: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 1);
const NET: Ipv4Addr = Ipv4Addr::new(172, 30, 0, 0);

fn skip(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        banger_testsupport::skip!(return true; test, "needs root (network namespaces, TAPs)");
    }
    false
}

fn ops(owner: u32) -> LocalPrivOps {
    LocalPrivOps::new(Policy {
        device_prefix: "bg".into(),
        state_dir: PathBuf::from("/nonexistent/state"),
        runtime_dir: PathBuf::from("/nonexistent/run"),
        subnet: (NET, 24),
        owner_uid: owner,
        vmm_binary: PathBuf::from("/nonexistent/fc"),
    })
}

/// Run `f` on a thread that lives in a fresh network namespace.
fn in_private_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        f()
    })
    .join()
    .expect("netns thread panicked")
}

fn link_json(name: &str) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_str(&run(&["ip", "-d", "-j", "addr", "show", "dev", name])).unwrap();
    v[0].clone()
}

#[test]
fn bridge_tap_owner_list_delete() {
    if skip("bridge_tap_owner_list_delete") {
        return;
    }
    let owner = 4242;
    in_private_netns(move || {
        let ops = ops(owner);
        ops.ensure_bridge("bg0", GW, 24).unwrap();
        ops.ensure_bridge("bg0", GW, 24).unwrap(); // idempotent
        let br = link_json("bg0");
        assert_eq!(br["linkinfo"]["info_kind"], "bridge");
        assert!(
            br["flags"].as_array().unwrap().contains(&"UP".into()),
            "{br}"
        );
        let addrs: Vec<_> = br["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["family"] == "inet")
            .collect();
        assert_eq!(addrs.len(), 1, "one gateway address after two calls: {br}");
        assert_eq!(addrs[0]["local"], "172.30.0.1");
        assert_eq!(addrs[0]["prefixlen"], 24);

        ops.create_tap("bgtap0", "bg0").unwrap();
        ops.create_tap("bgtap0", "bg0").unwrap(); // idempotent
        ops.create_tap("bgtap1", "bg0").unwrap();
        let tap = link_json("bgtap0");
        assert_eq!(tap["master"], "bg0");
        let data = &tap["linkinfo"]["info_data"];
        assert_eq!(data["type"], "tap", "{tap}");
        assert_eq!(data["persist"], true);
        assert_eq!(data["vnet_hdr"], true);
        assert_eq!(data["pi"], false);
        assert_eq!(
            data["user"].to_string().trim_matches('"'),
            owner.to_string()
        );

        // The owner uid can attach (as Firecracker does); another uid cannot.
        // A private 0666 node stands in for /dev/net/tun, which is 0600 on
        // these machines; the real one is left alone.
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("tun");
        nix::sys::stat::mknod(
            &node,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(10, 200),
        )
        .unwrap();
        std::fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .unwrap();
        assert!(attach_as(owner, &node, "bgtap0").is_ok(), "owner attaches");
        let other = attach_as(owner + 1, &node, "bgtap0");
        assert!(other.is_err(), "another uid must be refused");

        let links = ops.list_links().unwrap();
        let names: Vec<_> = links.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names.len(), 3, "{links:?}");
        let t0 = links.iter().find(|l| l.name == "bgtap0").unwrap();
        assert_eq!(t0.kind, "tun");
        assert_eq!(t0.controller.as_deref(), Some("bg0"));
        assert!(t0.up);
        assert_eq!(
            links.iter().find(|l| l.name == "bg0").unwrap().kind,
            "bridge"
        );

        assert!(ops.delete_link("bgtap1").unwrap());
        assert!(!ops.delete_link("bgtap1").unwrap(), "already gone");
        assert!(matches!(
            ops.delete_link("lo"),
            Err(PrivOpsError::Refused { .. })
        ));
        assert!(matches!(
            ops.create_tap("bgtap2", "bgnobridge"),
            Err(PrivOpsError::Refused { .. })
        ));
        assert!(
            !ops.list_links().unwrap().iter().any(|l| l.name == "bgtap2"),
            "a failed create leaves no TAP"
        );
    });
}

/// TUNSETIFF on `name` through `node` from a thread whose (only its own,
/// via the raw syscall) uid is `uid`.
fn attach_as(uid: u32, node: &Path, name: &str) -> Result<(), String> {
    let node = node.to_path_buf();
    let name = name.to_string();
    std::thread::spawn(move || {
        // SAFETY: raw setresuid changes only this thread's credentials.
        let rc = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
        if rc != 0 {
            return Err(format!("setresuid: {}", std::io::Error::last_os_error()));
        }
        banger_privops::open_tap_at(&node, &name)
            .map(drop)
            .map_err(|e| format!("{e}: {:?}", std::error::Error::source(&e)))
    })
    .join()
    .unwrap()
}

#[test]
fn nat_table_forwarding_and_masquerade() {
    if skip("nat_table_forwarding_and_masquerade") {
        return;
    }
    let tag = std::process::id();
    let guest = NetNs::add(&format!("bgtest-guest-{tag}"));
    let outside = NetNs::add(&format!("bgtest-out-{tag}"));
    let (g, o) = (guest.0.clone(), outside.0.clone());
    in_private_netns(move || {
        let ops = ops(0);
        ops.ensure_bridge("bg0", GW, 24).unwrap();
        // The "guest": a veth whose far end is eth0 in the guest namespace.
        run(&[
            "ip", "link", "add", "bgveth0", "type", "veth", "peer", "name", "eth0", "netns", &g,
        ]);
        run(&["ip", "link", "set", "bgveth0", "master", "bg0", "up"]);
        run(&[
            "ip",
            "-n",
            &g,
            "addr",
            "add",
            "172.30.0.2/24",
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &g, "link", "set", "eth0", "up"]);
        run(&[
            "ip",
            "-n",
            &g,
            "route",
            "add",
            "default",
            "via",
            "172.30.0.1",
        ]);
        // The "outside": an uplink with no route back to the guest subnet.
        run(&[
            "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "eth0", "netns", &o,
        ]);
        run(&["ip", "addr", "add", "198.51.100.1/24", "dev", "uplink0"]);
        run(&["ip", "link", "set", "uplink0", "up"]);
        run(&[
            "ip",
            "-n",
            &o,
            "addr",
            "add",
            "198.51.100.2/24",
            "dev",
            "eth0",
        ]);
        run(&["ip", "-n", &o, "link", "set", "eth0", "up"]);

        assert!(
            !ops.set_ip_forward(true).unwrap(),
            "a new namespace starts with forwarding off"
        );
        assert!(banger_privops::ip_forward().unwrap());
        ops.apply_nat("bg0", NET, 24).unwrap();
        ops.apply_nat("bg0", NET, 24).unwrap(); // a replacement, not a second table
        let rules = run(&["nft", "-j", "list", "ruleset"]);
        let v: serde_json::Value = serde_json::from_str(&rules).unwrap();
        let items = v["nftables"].as_array().unwrap();
        let tables: Vec<_> = items.iter().filter(|i| i.get("table").is_some()).collect();
        assert_eq!(tables.len(), 1, "{rules}");
        assert_eq!(tables[0]["table"]["family"], "inet");
        assert_eq!(tables[0]["table"]["name"], "banger");
        let rules_of = |chain: &str| items.iter().filter(|i| i["rule"]["chain"] == chain).count();
        assert_eq!(rules_of("postrouting"), 1, "{rules}");
        assert_eq!(rules_of("forward"), 2, "{rules}");
        assert!(rules.contains("masquerade"), "{rules}");

        // The guest reaches the outside; the outside sees the uplink's
        // address, i.e. the masquerade happened.
        let seen = connect_through(&g, &o).expect("guest reaches the outside through NAT");
        assert_eq!(
            seen.ip(),
            std::net::IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))
        );

        assert!(ops.remove_nat().unwrap());
        assert!(!ops.remove_nat().unwrap());
        assert!(!run(&["nft", "-j", "list", "ruleset"]).contains("banger"));
        // Without the masquerade the outside cannot answer.
        assert!(connect_through(&g, &o).is_err(), "no NAT, no way back");
        assert!(ops.set_ip_forward(false).unwrap());
    });
    drop(guest);
    drop(outside);
}

/// From the guest namespace, connect to a listener in the outside
/// namespace; returns the peer address the listener saw.
fn connect_through(guest: &str, outside: &str) -> Result<SocketAddr, String> {
    let listener = {
        let outside = outside.to_string();
        std::thread::spawn(move || {
            enter(&outside);
            TcpListener::bind("198.51.100.2:0").unwrap()
        })
        .join()
        .unwrap()
    };
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let guest = guest.to_string();
    let client = std::thread::spawn(move || {
        enter(&guest);
        let addr = SocketAddr::from((Ipv4Addr::new(198, 51, 100, 2), port));
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        s.write_all(b"x").map_err(|e| e.to_string())?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).map_err(|e| e.to_string())
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut seen = None;
    while std::time::Instant::now() < deadline {
        match listener.accept() {
            Ok((mut s, peer)) => {
                s.set_nonblocking(false).unwrap();
                let mut b = [0u8; 1];
                s.read_exact(&mut b).unwrap();
                s.write_all(b"y").unwrap();
                seen = Some(peer);
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    client.join().unwrap()?;
    seen.ok_or_else(|| "nothing arrived".into())
}

fn enter(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
}

/// A named namespace, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn add(name: &str) -> NetNs {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run(&["ip", "netns", "add", name]);
        NetNs(name.to_string())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}
