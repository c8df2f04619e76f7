//! The daemon in-process, with a recording privileged-ops adapter: every
//! privileged step of the VM lifecycle goes through the seam, in order, and
//! a refused operation leaves the VM in `error` with nothing running.

use crate::util;

use std::sync::Arc;

use banger_api::rpc::{ImageRegisterParams, VmCreateParams, VmDeleteParams, VmStopParams};
use banger_api::{OpState, VmState};
use banger_daemon::config::{Config, Layout, Mode};
use banger_daemon::{Daemon, OpenOptions};
use banger_privops::{LocalPrivOps, PrivOp, PrivOpsError};
use banger_testsupport::RecordingOps;

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
    let config: Config = toml::from_str(&text).unwrap();
    let layout = Layout::resolve(
        Mode::Dev,
        dir.join("config.toml"),
        &config,
        Some(&dir.join("state")),
    )
    .unwrap();
    let mut ops = RecordingOps::new(LocalPrivOps::new(banger_daemon::root::privops_policy(
        &config, &layout,
    )))
    .labelled(label);
    if refuse_spawn {
        ops = ops.failing(|op| {
            matches!(op, PrivOp::SpawnVmm(_)).then(|| PrivOpsError::Refused {
                op: "spawn_vmm",
                reason: "test says no".into(),
            })
        });
    }
    let ops = Arc::new(ops);
    let d = Daemon::open(OpenOptions {
        config,
        layout,
        privops: Some(ops.clone()),
        root_disks: None,
        procfs: None,
    })
    .unwrap();
    (d, ops)
}

async fn create_and_wait(d: &Daemon, name: &str) -> banger_api::Operation {
    let created = d
        .vms
        .create(VmCreateParams {
            name: name.into(),
            image: Some("base".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let id = created.operation.unwrap().id;
    let mut rx = match d.vms.watch(&id).unwrap() {
        Ok(rx) => rx,
        Err(done) => return done,
    };
    rx.wait_for(|o| o.0.state.is_done())
        .await
        .unwrap()
        .0
        .clone()
}

#[tokio::test]
async fn lifecycle_goes_through_the_seam() {
    let Some(fx) = util::Fixtures::new("lifecycle_goes_through_the_seam") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (d, ops) = open(dir.path(), false);
    d.images
        .register(ImageRegisterParams {
            name: "base".into(),
            rootfs: fx.rootfs.display().to_string(),
            kernel: fx.kernel.display().to_string(),
            initrd: None,
            kernel_name: None,
        })
        .await
        .unwrap();
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
    d.images
        .register(ImageRegisterParams {
            name: "base".into(),
            rootfs: fx.rootfs.display().to_string(),
            kernel: fx.kernel.display().to_string(),
            initrd: None,
            kernel_name: None,
        })
        .await
        .unwrap();
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
