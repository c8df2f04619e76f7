//! The guest network end to end, as root, with a `bangerd` (and its
//! simulated VMMs) running inside a throwaway network namespace
//! (`ip netns exec`): bridge and warm TAPs at start, leaked TAPs removed by
//! reconcile, a VM's Firecracker config carrying its TAP, MAC and `ip=`,
//! `<name>.vm` and its PTR answered while it runs and NXDOMAIN after stop,
//! crash and delete, TAPs returned, and `banger network reset` leaving
//! nothing banger-prefixed. The machine's own namespace is never touched.

use crate::util;

use banger_testsupport::{run, skip};

use std::process::Command;
use std::time::{Duration, Instant};

use banger_api::VmState;
use util::{Fixtures, TestDaemon};

const PORT: &str = "5354";

struct NetNs(String);

impl NetNs {
    fn add(name: &str) -> NetNs {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        run(&["ip", "netns", "add", name]);
        run(&["ip", "-n", name, "link", "set", "lo", "up"]);
        NetNs(name.to_string())
    }

    fn exec(&self, args: &[&str]) -> String {
        let mut a = vec!["ip", "netns", "exec", &self.0];
        a.extend_from_slice(args);
        run(&a)
    }

    /// banger links in the namespace: (name, kind, master).
    fn links(&self) -> Vec<(String, String, Option<String>)> {
        let v: serde_json::Value =
            serde_json::from_str(&run(&["ip", "-n", &self.0, "-d", "-j", "link", "show"])).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|l| l["ifname"].as_str().unwrap().starts_with("bg"))
            .map(|l| {
                (
                    l["ifname"].as_str().unwrap().to_string(),
                    l["linkinfo"]["info_kind"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    l["master"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    fn taps(&self) -> Vec<String> {
        self.links()
            .into_iter()
            .filter(|(_, kind, _)| kind == "tun")
            .map(|(n, _, _)| n)
            .collect()
    }

    fn dig(&self, args: &[&str]) -> String {
        let mut a = vec!["dig", "@172.30.0.1", "-p", PORT, "+time=2", "+tries=1"];
        a.extend_from_slice(args);
        self.exec(&a)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn missing_tools() -> Option<&'static str> {
    ["ip", "nft", "dig"].into_iter().find(|tool| {
        Command::new(tool).arg("-V").output().is_err()
            && Command::new(tool).arg("-v").output().is_err()
    })
}

fn vm_config(api_sock: &std::path::Path) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        banger_fcproc::FirecrackerClient::new(api_sock)
            .get::<serde_json::Value>("/vm/config")
            .await
            .unwrap()
    })
}

#[test]
fn network_end_to_end_in_a_namespace() {
    const T: &str = "network_end_to_end_in_a_namespace";
    if !nix::unistd::geteuid().is_root() {
        skip!(T, "needs root (network namespaces, bridge, TAPs)");
    }
    if let Some(tool) = missing_tools() {
        skip!(T, "{tool} is not installed (see .ci/run)");
    }
    let Some(fx) = Fixtures::new(T) else { return };
    let ns = NetNs::add(&format!("bgtest-e2e-{}", std::process::id()));
    // A TAP left behind by an earlier daemon (owned by the daemon's uid,
    // root here, as banger's TAPs are): reconcile must remove it.
    ns.exec(&[
        "ip",
        "tuntap",
        "add",
        "dev",
        "bgtdeadbeef",
        "mode",
        "tap",
        "user",
        "0",
    ]);
    let keys = format!("dns_port = {PORT}\ntap_pool_size = 2\nguest_dns = \"172.30.0.1\"\n");
    let mut d = TestDaemon::start_full(&[], "", &keys, Some(&ns.0));

    // Bridge + warm pool, the leak gone.
    wait_for("the TAP pool to fill", 10, || ns.taps().len() == 2);
    let links = ns.links();
    assert!(
        links.iter().any(|(n, k, _)| n == "bg0" && k == "bridge"),
        "{links:?}"
    );
    assert!(
        !ns.taps().contains(&"bgtdeadbeef".to_string()),
        "leaked TAP removed"
    );
    for (name, kind, master) in &links {
        if kind == "tun" {
            assert_eq!(master.as_deref(), Some("bg0"), "{name} on the bridge");
        }
    }
    let pool = ns.taps();

    d.register_image(&fx, "base");
    let vm = d.create("dev", "base").unwrap();
    assert_eq!(vm.state, VmState::Running);
    let ip = vm.guest_ip.to_string();

    // The VM's TAP came from the pool and its Firecracker config carries it.
    let dir = d.state_dir().join("vms").join(&vm.id);
    let handles: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("handles.json")).unwrap()).unwrap();
    let tap = handles["tap"]
        .as_str()
        .expect("handles.json names the TAP")
        .to_string();
    assert!(pool.contains(&tap), "{tap} taken from the pool {pool:?}");
    let cfg = vm_config(std::path::Path::new(handles["api_sock"].as_str().unwrap()));
    let nic = &cfg["network-interfaces"][0];
    assert_eq!(nic["iface_id"], "eth0");
    assert_eq!(nic["host_dev_name"], tap.as_str());
    assert_eq!(nic["guest_mac"], vm.guest_mac.as_str());
    let args = cfg["boot-source"]["boot_args"].as_str().unwrap();
    assert!(
        args.contains(&format!(
            "ip={ip}::172.30.0.1:255.255.255.0:dev:eth0:off:172.30.0.1"
        )),
        "{args}"
    );

    // NAT applied and forwarding on, in the namespace only.
    assert!(
        ns.exec(&["nft", "-j", "list", "tables"])
            .contains("\"banger\"")
    );
    assert_eq!(
        ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "1"
    );

    // DNS while running: A, PTR, NXDOMAIN for strangers.
    assert_eq!(ns.dig(&["+short", "dev.vm"]).trim(), ip);
    assert_eq!(ns.dig(&["+short", "-x", &ip]).trim(), "dev.vm.");
    assert_eq!(
        ns.dig(&["+tcp", "+short", "dev.vm"]).trim(),
        ip,
        "over TCP too"
    );
    assert!(ns.dig(&["nobody.vm"]).contains("status: NXDOMAIN"));

    // Stop: record withdrawn, TAP back (pool full again, no extra TAP).
    d.cli_ok(&["vm", "stop", "dev"]);
    assert!(ns.dig(&["dev.vm"]).contains("status: NXDOMAIN"));
    wait_for("the TAPs to settle after stop", 10, || ns.taps().len() == 2);

    // Crash: the VMM dies, the record goes, the TAP comes back.
    d.cli_ok(&["vm", "start", "dev"]);
    assert_eq!(ns.dig(&["+short", "dev.vm"]).trim(), ip);
    let handles: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("handles.json")).unwrap()).unwrap();
    let pid = handles["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    d.wait_state("dev", VmState::Stopped, 10);
    assert!(ns.dig(&["dev.vm"]).contains("status: NXDOMAIN"));
    wait_for("the TAPs to settle after a crash", 10, || {
        ns.taps().len() == 2
    });

    // A daemon restart republishes a running VM and removes a new leak.
    d.cli_ok(&["vm", "start", "dev"]);
    d.kill_hard();
    ns.exec(&[
        "ip",
        "tuntap",
        "add",
        "dev",
        "bgt0badf00d",
        "mode",
        "tap",
        "user",
        "0",
    ]);
    d.spawn();
    assert_eq!(
        ns.dig(&["+short", "dev.vm"]).trim(),
        ip,
        "republished by reconcile"
    );
    assert!(!ns.taps().contains(&"bgt0badf00d".to_string()));

    // Reset is refused while a VM runs, naming it.
    let out = d.cli(&["network", "reset"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("dev"),
        "{out:?}"
    );

    // Delete: no record, no TAP beyond the pool.
    d.cli_ok(&["vm", "delete", "--force", "dev"]);
    assert!(ns.dig(&["dev.vm"]).contains("status: NXDOMAIN"));
    wait_for("the TAPs to settle after delete", 10, || {
        ns.taps().len() == 2
    });

    // Reset: nothing banger-prefixed, no table, forwarding restored.
    let reset: serde_json::Value = d.cli_json(&["network", "reset"]);
    assert_eq!(reset["nat_table"], true, "{reset}");
    assert_eq!(reset["ip_forward_restored"], false, "{reset}");
    assert!(ns.links().is_empty(), "{:?}", ns.links());
    assert!(
        !ns.exec(&["nft", "-j", "list", "tables"])
            .contains("\"banger\"")
    );
    assert_eq!(
        ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]).trim(),
        "0"
    );
    drop(d);
}
