//! The daemon's network flow through the privileged-ops seam, without root:
//! a recording fake answers the network operations (and keeps a pretend
//! link table), the VMM operations go to the real in-process adapter and
//! the simulator. The subnet is on loopback (127.30.0.0/24) so the real
//! `vm.` DNS server can bind its gateway address anywhere.

use crate::util;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use banger_api::rpc::VmDeleteParams;
use banger_api::{OpState, VmState};
use banger_daemon::Daemon;
use banger_privops::{LinkInfo, LocalPrivOps, PrivOp, PrivOpsError, PrivReply, PrivilegedOps};
use banger_testsupport::RecordingOps;
use util::inproc::{self, create_and_wait, register_base};

/// A pretend link table for the network operations; the VMM operations go
/// to the real adapter. The recorder in front of it validates exactly as
/// the real adapter would.
struct FakeNet {
    inner: LocalPrivOps,
    links: Mutex<BTreeSet<String>>,
}

fn label(op: &PrivOp) -> String {
    match op {
        PrivOp::DeleteLink { name } => format!("delete_link {name}"),
        other => other.name().to_string(),
    }
}

impl PrivilegedOps for FakeNet {
    fn execute(&self, op: PrivOp) -> Result<PrivReply, PrivOpsError> {
        let mut links = self.links.lock().unwrap();
        match op {
            PrivOp::SpawnVmm(_) | PrivOp::SignalVmm { .. } => {
                drop(links);
                self.inner.execute(op)
            }
            PrivOp::EnsureBridge { name, .. } => {
                links.insert(name);
                Ok(PrivReply::Done)
            }
            PrivOp::CreateTap { name, .. } => {
                links.insert(name);
                Ok(PrivReply::Done)
            }
            PrivOp::DeleteLink { name } => Ok(PrivReply::Removed {
                existed: links.remove(&name),
            }),
            PrivOp::ListLinks => Ok(PrivReply::Links {
                links: links
                    .iter()
                    .map(|n| LinkInfo {
                        name: n.clone(),
                        kind: if n.starts_with("bgt") {
                            "tun"
                        } else {
                            "bridge"
                        }
                        .into(),
                        up: true,
                        controller: None,
                    })
                    .collect(),
            }),
            PrivOp::ApplyNat { .. } => Ok(PrivReply::Done),
            PrivOp::RemoveNat => Ok(PrivReply::Removed { existed: true }),
            PrivOp::SetIpForward { .. } => Ok(PrivReply::Forwarding { previous: false }),
            PrivOp::ResolverRoute { .. } => Ok(PrivReply::Done),
            PrivOp::ListDisks => Ok(PrivReply::Disks {
                dm: Vec::new(),
                loops: Vec::new(),
            }),
            other => Err(PrivOpsError::Refused {
                op: other.name(),
                reason: "not used by the network tests".into(),
            }),
        }
    }
}

fn open(
    dir: &std::path::Path,
    pool: usize,
    refuse_tap: bool,
) -> (Daemon, Arc<RecordingOps<FakeNet>>) {
    let text = format!(
        "firecracker_bin = {:?}\n[daemon]\nstop_timeout_secs = 2\n[network]\nsubnet = \"127.30.0.0/24\"\ndns_port = 0\ntap_pool_size = {pool}\n[guest]\nreadiness = \"none\"\nsync_identity = false\n",
        util::bin("banger-fcsim").display().to_string()
    );
    inproc::open(dir, &text, |policy| {
        let ops = RecordingOps::new(FakeNet {
            inner: LocalPrivOps::new(policy.clone()),
            // A TAP a previous daemon leaked.
            links: Mutex::new(["bgt0000dead".to_string()].into()),
        })
        .validating(policy)
        .labelled(label);
        if refuse_tap {
            ops.failing(inproc::refuse("create_tap"))
        } else {
            ops
        }
    })
}

async fn pool_full(d: &Daemon) {
    let net = d.net.network().unwrap();
    for _ in 0..200 {
        if net.pool.missing() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the TAP pool did not fill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_takes_a_pooled_tap_publishes_and_gives_back() {
    let Some(fx) = util::Fixtures::new("start_takes_a_pooled_tap_publishes_and_gives_back") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (d, ops) = open(dir.path(), 2, false);
    d.reconcile().await.unwrap();
    pool_full(&d).await;
    let net = d.net.network().unwrap().clone();
    assert!(net.dns.local_addr().is_some(), "the DNS server runs");
    let log = ops.log();
    assert_eq!(
        log,
        [
            "ensure_bridge",
            "list_links",
            "delete_link bgt0000dead",
            "create_tap",
            "create_tap"
        ],
        "bridge, leak removed, pool filled"
    );
    register_base(&d, &fx).await;
    let pooled = net.pool.names();
    ops.clear_log();
    let op = create_and_wait(&d, "seam").await;
    assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
    let vm = d.vms.resolve("seam").unwrap();
    pool_full(&d).await;
    let log = ops.log();
    // The background refill interleaves freely; everything else is ordered.
    let ordered: Vec<&String> = log.iter().filter(|l| *l != "create_tap").collect();
    assert_eq!(
        ordered,
        ["set_ip_forward", "apply_nat", "spawn_vmm"],
        "first start: NAT, then the VMM: {log:?}"
    );
    assert_eq!(
        log.iter().filter(|l| *l == "create_tap").count(),
        1,
        "one refill, no inline TAP (pool hit): {log:?}"
    );
    let tap = banger_daemon::vms::handles::read_file(&d.layout.vm_dir(&vm.id))
        .unwrap()
        .tap
        .unwrap();
    assert!(pooled.contains(&tap));
    assert_eq!(net.dns.zone.addr_of("seam"), Some(vm.guest_ip));

    // Second start after a kill: no NAT work, the same kind of pool hit.
    d.vms.kill("seam").await.unwrap();
    assert_eq!(net.dns.zone.addr_of("seam"), None, "withdrawn at kill");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let taps_after_kill = net.pool.names().len();
    assert_eq!(taps_after_kill, 2, "pool stays at its target");
    ops.clear_log();
    d.vms.start("seam").await.unwrap();
    let log = ops.log();
    assert!(log.contains(&"spawn_vmm".to_string()), "{log:?}");
    assert!(
        !log.iter()
            .any(|l| l == "apply_nat" || l == "set_ip_forward"),
        "NAT is applied once: {log:?}"
    );
    assert_eq!(net.dns.zone.addr_of("seam"), Some(vm.guest_ip));

    // Reset is refused while it runs, then works.
    let err = d.network_reset().await.unwrap_err();
    assert!(err.to_string().contains("seam"), "{err}");
    d.vms
        .delete(&VmDeleteParams {
            vm: "seam".into(),
            force: true,
        })
        .await
        .unwrap();
    assert!(net.dns.zone.is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = d.network_reset().await.unwrap();
    assert!(r.links.contains(&"bg0".to_string()));
    assert_eq!(
        r.links.last().map(String::as_str),
        Some("bg0"),
        "bridge last"
    );
    assert!(r.nat_table);
    assert_eq!(r.ip_forward_restored, Some(false));
    assert!(ops.links.lock().unwrap().is_empty(), "nothing left");
    assert!(net.dns.local_addr().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tap_leaves_error_and_nothing_running() {
    let Some(fx) = util::Fixtures::new("refused_tap_leaves_error_and_nothing_running") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (d, ops) = open(dir.path(), 0, true);
    d.reconcile().await.unwrap();
    register_base(&d, &fx).await;
    let op = create_and_wait(&d, "nope").await;
    assert_eq!(op.state, OpState::Failed);
    assert!(op.error.unwrap().message.contains("test says no"));
    assert_eq!(d.vms.resolve("nope").unwrap().state, VmState::Error);
    assert!(d.vms.show("nope").unwrap().runtime.is_none());
    assert!(
        !ops.log().iter().any(|l| l == "spawn_vmm"),
        "no VMM without a TAP"
    );
}
