//! The daemon in-process, no RPC, with a privileged-ops adapter the test
//! chooses (the seam tests: `privops_seam`, `network_seam`).

use std::path::Path;
use std::sync::Arc;

use banger_api::rpc::{ImageRegisterParams, VmCreateParams};
use banger_daemon::config::{Config, Layout, Mode};
use banger_daemon::{Daemon, OpenOptions};
use banger_privops::{Policy, PrivOp, PrivOpsError, PrivilegedOps};

use super::Fixtures;

/// Open a dev-mode daemon with state in `dir/state` and the config `text`;
/// `ops` makes its privileged-ops adapter from the policy the real one
/// would have.
pub fn open<O: PrivilegedOps + 'static>(
    dir: &Path,
    text: &str,
    ops: impl FnOnce(Policy) -> O,
) -> (Daemon, Arc<O>) {
    let config: Config = toml::from_str(text).unwrap();
    let layout = Layout::resolve(
        Mode::Dev,
        dir.join("config.toml"),
        &config,
        Some(&dir.join("state")),
    )
    .unwrap();
    let ops = Arc::new(ops(banger_daemon::root::privops_policy(&config, &layout)));
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

/// For `RecordingOps::failing`: refuse every operation named `name`
/// (`spawn_vmm`, `create_tap`) with the reason "test says no".
pub fn refuse(name: &'static str) -> impl Fn(&PrivOp) -> Option<PrivOpsError> + Send + Sync {
    move |op| {
        (op.name() == name).then(|| PrivOpsError::Refused {
            op: name,
            reason: "test says no".into(),
        })
    }
}

/// Register the fixtures as image `base`.
pub async fn register_base(d: &Daemon, fx: &Fixtures) {
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
}

/// Create VM `name` from image `base` and wait for its operation to end.
pub async fn create_and_wait(d: &Daemon, name: &str) -> banger_api::Operation {
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
