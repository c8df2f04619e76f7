//! The composition root.

use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_api::DaemonStatus;
use banger_dmsnap::RootDiskStrategy;
use banger_fcproc::ProcFs;
use banger_privops::{LocalPrivOps, Policy, PrivilegedOps};
use banger_store::Store;

use banger_config::resolve_binary;

use crate::common::error::DaemonError;
use crate::common::lockset::VmLockSet;
use crate::common::{DEVICE_PREFIX, owner_home};
use crate::config::{Config, Layout};
use crate::forwards::ForwardService;
use crate::images::ImageService;
use crate::vms::HandleCache;
use crate::vms::ReconcileReport;
use crate::vms::VmmLauncher;
use crate::vms::{StoreVmLookup, VMService};
use crate::workspace::{GuestDial, SshClient, WaitForSsh, banner_waiter};
use crate::workspace::{WorkspaceDeps, WorkspaceService};

/// The shared infrastructure plus the four services. RPC dispatch forwards
/// into the services; no lifecycle, image, workspace or network behaviour
/// lives here.
pub struct Daemon {
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Resolved directories.
    pub layout: Layout,
    /// The database.
    pub store: Arc<Store>,
    /// The privileged-operations seam.
    pub privops: Arc<dyn PrivilegedOps>,
    /// Bridge, TAPs, NAT, DNS and the VMM process.
    pub net: Arc<VmmLauncher>,
    /// Images and kernels.
    pub images: Arc<ImageService>,
    /// Workspace prepare/export.
    pub workspaces: Arc<WorkspaceService>,
    /// The kernel catalogue.
    pub kernels: Arc<crate::images::KernelService>,
    /// VM lifecycle.
    pub vms: Arc<VMService>,
    /// Port forwards.
    pub forwards: Arc<ForwardService>,
    /// Guest SSH test seam: how the daemon runs a command on a guest.
    pub guest_dial: Arc<dyn GuestDial>,
    /// Guest SSH test seam: waiting for a guest's SSH banner.
    pub guest_wait_for_ssh: WaitForSsh,
    started: Instant,
    _lock: std::fs::File,
}

/// Everything `Daemon::open` needs that is not in the config file.
pub struct OpenOptions {
    /// Effective configuration.
    pub config: Config,
    /// Resolved directories.
    pub layout: Layout,
    /// The privileged-operations adapter; the in-process one when `None`.
    pub privops: Option<Arc<dyn PrivilegedOps>>,
    /// How root disks are made; when `None`, `banger_dmsnap::choose` over
    /// the host's `/dev` (device-mapper snapshots where they work, else
    /// copies).
    pub root_disks: Option<Arc<dyn RootDiskStrategy>>,
    /// The `/proc` read for VMM identities and stats; the host's when `None`.
    pub procfs: Option<ProcFs>,
}

/// The host as the services see it, beyond the privileged seam: how root
/// disks are made and the `/proc` they read.
#[derive(Clone)]
pub struct HostSeams {
    /// Root-disk strategy.
    pub root_disks: Arc<dyn RootDiskStrategy>,
    /// The `/proc` view.
    pub procfs: ProcFs,
}

impl Daemon {
    /// Create the directories, take the state-dir lock, open the store and
    /// wire the services. Does not reconcile or serve.
    pub fn open(opts: OpenOptions) -> Result<Daemon, DaemonError> {
        let OpenOptions {
            config,
            layout,
            privops,
            root_disks,
            procfs,
        } = opts;
        // Before anything is created: Firecracker could not make its
        // sockets under a runtime dir this long.
        layout
            .check_socket_paths()
            .map_err(|e| DaemonError::Invalid(e.to_string()))?;
        create_private_dir(&layout.state_dir)
            .map_err(DaemonError::io("cannot create", &layout.state_dir))?;
        crate::config::secure_runtime_dir(&layout.runtime_dir)
            .map_err(|e| DaemonError::Invalid(e.to_string()))?;
        let lock_path = layout.state_dir.join("bangerd.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(DaemonError::io("cannot open", &lock_path))?;
        if lock.try_lock().is_err() {
            return Err(DaemonError::Conflict(format!(
                "another bangerd already uses {}; stop it first or pass a different --state-dir",
                layout.state_dir.display()
            )));
        }
        let store = Arc::new(Store::open(layout.database())?);
        let privops = privops
            .unwrap_or_else(|| Arc::new(LocalPrivOps::new(privops_policy(&config, &layout))));
        let config = Arc::new(config);
        let seams = GuestSeams::from_config(&config, &layout);
        let host = HostSeams {
            root_disks: root_disks.unwrap_or_else(|| {
                banger_dmsnap::choose(std::path::Path::new("/dev"), Arc::clone(&privops))
            }),
            procfs: procfs.unwrap_or_else(ProcFs::host),
        };
        let (net, images, workspaces, vms) =
            wire_services(&config, &layout, &store, &privops, &seams, &host);
        let forwards = Arc::clone(&vms.forwards);
        let kernels = Arc::new(crate::images::KernelService::new(
            Arc::clone(&store),
            layout.clone(),
            config.kernel_catalog.clone(),
        ));
        Ok(Daemon {
            config,
            layout,
            store,
            privops,
            net,
            images,
            workspaces,
            kernels,
            vms,
            forwards,
            guest_dial: seams.dial,
            guest_wait_for_ssh: seams.wait_for_ssh,
            started: Instant::now(),
            _lock: lock,
        })
    }

    /// Reconcile the store with the host (see `vms/reconcile.rs`): set the
    /// network up (bridge, DNS), settle the VMs, remove TAPs no VM owns and
    /// fill the TAP pool, then re-open the stored port forwards.
    pub async fn reconcile(&self) -> Result<ReconcileReport, DaemonError> {
        self.images.sweep_staging();
        self.kernels.sweep_staging();
        if let Some(net) = self.net.network() {
            net.setup().await?;
        }
        let report = self.vms.reconcile().await?;
        if let Some(net) = self.net.network() {
            let owned = self
                .vms
                .handles
                .all()
                .into_iter()
                .filter_map(|(_, h)| h.tap)
                .collect();
            net.remove_leaked_taps(&owned).await?;
            net.refill();
        }
        let opened = self.forwards.restore().await?;
        if opened > 0 {
            tracing::info!(opened, "port forwards re-opened");
        }
        Ok(report)
    }

    /// Start the background loops: stats sampling (one `/proc` pass per
    /// tick on a blocking thread; idle stops as tasks of their own, see
    /// `VMService::stats_loop`) and operation pruning, each on its own
    /// ticker.
    pub fn spawn_background(&self) {
        let every = Duration::from_secs(self.config.daemon.stats_interval_secs.max(1));
        tokio::spawn(Arc::clone(&self.vms).stats_loop(every));
        let vms = Arc::clone(&self.vms);
        let images = Arc::clone(&self.images);
        let keep = Duration::from_secs(self.config.daemon.operation_retention_secs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                images.prune_operations(keep);
                if let Err(e) = vms.prune_operations() {
                    tracing::warn!(error = %e, "cannot prune operations");
                }
            }
        });
    }

    /// `daemon.status`.
    pub fn status(&self) -> Result<DaemonStatus, DaemonError> {
        let vms = self.store.list_vms()?;
        Ok(DaemonStatus {
            version: banger_api::BANGER_VERSION.to_string(),
            pid: std::process::id(),
            uptime_secs: self.started.elapsed().as_secs(),
            state_dir: self.layout.state_dir.display().to_string(),
            runtime_dir: self.layout.runtime_dir.display().to_string(),
            firecracker_bin: self.net.firecracker_bin().display().to_string(),
            vms_total: vms.len() as u32,
            vms_running: vms
                .iter()
                .filter(|v| v.state == banger_api::VmState::Running)
                .count() as u32,
        })
    }
}

/// Build the four services over the shared infrastructure, in dependency
/// order. The workspace service sees VMs only through its `VmLookup` seam.
pub fn wire_services(
    config: &Arc<Config>,
    layout: &Layout,
    store: &Arc<Store>,
    privops: &Arc<dyn PrivilegedOps>,
    seams: &GuestSeams,
    host_seams: &HostSeams,
) -> (
    Arc<VmmLauncher>,
    Arc<ImageService>,
    Arc<WorkspaceService>,
    Arc<VMService>,
) {
    let mut host = VmmLauncher::new(
        Arc::clone(privops),
        resolve_binary(&config.firecracker_bin),
        Duration::from_millis(config.daemon.socket_timeout_ms),
    )
    .with_procfs(host_seams.procfs.clone());
    if config.network.enabled {
        host = host.with_network(Arc::new(crate::host_network::HostNetwork::new(
            Arc::clone(privops),
            config,
            &layout.state_dir,
        )));
    }
    let net = Arc::new(host);
    let images = Arc::new(
        ImageService::new(Arc::clone(store), layout.clone())
            .with_seeding(crate::images::SeedSettings::from_config(config)),
    );
    let handles = Arc::new(HandleCache::default());
    let vm_locks = Arc::new(VmLockSet::default());
    let workspaces = Arc::new(WorkspaceService::new(
        Arc::new(StoreVmLookup {
            store: Arc::clone(store),
            handles: Arc::clone(&handles),
            vm_locks: Arc::clone(&vm_locks),
            procfs: host_seams.procfs.clone(),
        }),
        WorkspaceDeps {
            dial: Arc::clone(&seams.dial),
            wait_for_ssh: Arc::clone(&seams.wait_for_ssh),
            ssh: seams.ssh.clone(),
            guest: config.guest.clone(),
            vms_dir: layout.state_dir.join("vms"),
            home: owner_home(),
        },
    ));
    let forwards = Arc::new(ForwardService::new(Arc::clone(store)));
    let vms = Arc::new(
        VMService::new(
            Arc::clone(store),
            Arc::clone(config),
            layout.clone(),
            Arc::clone(&net),
            Arc::clone(&images),
            Arc::clone(&workspaces),
            handles,
        )
        .sharing_vm_locks(vm_locks)
        .with_forwards(forwards)
        .with_root_disks(Arc::clone(&host_seams.root_disks))
        .with_procfs(host_seams.procfs.clone()),
    );
    (net, images, workspaces, vms)
}

/// The limits every privileged operation of this daemon is checked against.
pub fn privops_policy(config: &Config, layout: &Layout) -> Policy {
    Policy {
        device_prefix: DEVICE_PREFIX.to_string(),
        state_dir: layout.state_dir.clone(),
        runtime_dir: layout.runtime_dir.clone(),
        subnet: (
            config.network.subnet.network(),
            config.network.subnet.prefix_len(),
        ),
        owner_uid: nix::unistd::geteuid().as_raw(),
        vmm_binary: resolve_binary(&config.firecracker_bin),
    }
}

/// The guest SSH seams the composition root owns and hands to the
/// workspace service.
pub struct GuestSeams {
    /// The OpenSSH client settings.
    pub ssh: SshClient,
    /// `guest_dial`.
    pub dial: Arc<dyn GuestDial>,
    /// `guest_wait_for_ssh`.
    pub wait_for_ssh: WaitForSsh,
}

impl GuestSeams {
    /// The production seams: OpenSSH by argv with the daemon's known_hosts
    /// (`<state_dir>/ssh/known_hosts`) and banger's key.
    pub fn from_config(config: &Config, layout: &Layout) -> GuestSeams {
        let ssh = SshClient {
            bin: config.guest.ssh_bin.clone(),
            key: config.guest.key_path(),
            known_hosts: layout.state_dir.join("ssh/known_hosts"),
            user: config.guest.user.clone(),
            connect_timeout: Duration::from_secs(config.guest.connect_timeout_secs),
        };
        GuestSeams {
            dial: Arc::new(ssh.clone()),
            ssh,
            wait_for_ssh: banner_waiter(),
        }
    }
}

/// Create `dir` (and missing parents) 0700: the state directory holds disks,
/// keys and the database, for its owner only. An existing directory keeps
/// its mode.
fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod state_dir_tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn state_dir_is_created_0700() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("a/state");
        super::create_private_dir(&dir).unwrap();
        for d in [&dir, &t.path().join("a")] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o7777;
            assert_eq!(mode, 0o700, "{} has mode {mode:o}", d.display());
        }
        // Again on the existing directory: fine.
        super::create_private_dir(&dir).unwrap();
    }
}
