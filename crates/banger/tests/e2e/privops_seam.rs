//! The daemon in-process, with a recording privileged-ops adapter: every
//! privileged step of the VM lifecycle goes through the seam, in order, and
//! a refused operation leaves the VM in `error` with nothing running.

use crate::util;

use std::sync::Arc;

use banger_api::rpc::{VmDeleteParams, VmStopParams};
use banger_api::{OpState, VmState};
use banger_daemon::Daemon;
use banger_privops::{LocalPrivOps, PrivOp};
use banger_testsupport::RecordingOps;
use util::inproc::{self, create_and_wait, register_base};

/// Records each operation, then forwards it (or refuses spawns when asked).
type Recording = RecordingOps<LocalPrivOps>;

fn label(op: &PrivOp) -> String {
    match op {
        PrivOp::SpawnVmm(s) => format!("spawn {}", s.id),
        PrivOp::SignalVmm { signal, .. } => format!("signal {signal:?}"),
        other => other.name().to_string(),
    }
}

fn open(dir: &std::path::Path, refuse_spawn: bool) -> (Daemon, Arc<Recording>) {
    let text = format!(
        "firecracker_bin = {:?}\n[daemon]\nstop_timeout_secs = 2\n[network]\nenabled = false\n[guest]\nreadiness = \"none\"\nsync_identity = false\n",
        util::bin("banger-fcsim").display().to_string()
    );
    inproc::open(dir, &text, |policy| {
        let ops = RecordingOps::new(LocalPrivOps::new(policy)).labelled(label);
        if refuse_spawn {
            ops.failing(inproc::refuse("spawn_vmm"))
        } else {
            ops
        }
    })
}

#[tokio::test]
async fn lifecycle_goes_through_the_seam() {
    let Some(fx) = util::Fixtures::new("lifecycle_goes_through_the_seam") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (d, ops) = open(dir.path(), false);
    register_base(&d, &fx).await;
    let op = create_and_wait(&d, "seam").await;
    assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
    let vm = d.vms.resolve("seam").unwrap();
    assert_eq!(vm.state, VmState::Running);
    d.vms.kill("seam").await.unwrap();
    d.vms
        .delete(&VmDeleteParams {
            vm: "seam".into(),
            force: false,
        })
        .await
        .unwrap();
    let log = ops.log();
    assert_eq!(
        log,
        vec![format!("spawn banger-{}", vm.id), "signal Kill".to_string()]
    );
}

#[tokio::test]
async fn refused_spawn_leaves_error_and_nothing_running() {
    let Some(fx) = util::Fixtures::new("refused_spawn") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (d, _ops) = open(dir.path(), true);
    register_base(&d, &fx).await;
    let op = create_and_wait(&d, "nope").await;
    assert_eq!(op.state, OpState::Failed);
    assert!(op.error.unwrap().message.contains("test says no"));
    let vm = d.vms.resolve("nope").unwrap();
    assert_eq!(vm.state, VmState::Error);
    assert!(d.vms.show("nope").unwrap().runtime.is_none());
    // Stopping a VM in error is a no-op, not a failure.
    let vm = d
        .vms
        .stop(&VmStopParams {
            vm: "nope".into(),
            timeout_secs: None,
        })
        .await
        .unwrap();
    assert_eq!(vm.state, VmState::Error);
}
