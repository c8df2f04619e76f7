//! Pause and resume, suspend to disk, named snapshots and `vm fork`.
//!
//! Files, in the VM's directory:
//!
//! ```text
//! suspend/                     the suspend snapshot (state `suspended`)
//!   vm.state, vm.mem           the VMM's state and memory files
//!   snapshot.json              SnapshotMeta
//! snapshots/<name>/            a named snapshot
//!   vm.state, vm.mem, snapshot.json, root.ext4, [work.ext4]   (disk copies)
//! snapshots/.partial-<name>/   one being written (removed by reconcile)
//! fork.partial/                a fork's snapshot being written (in the fork's directory)
//! ```
//!
//! A snapshot is complete once its directory has its final name (written
//! as `.partial-*` and renamed). Drives are given to the VMM relative to
//! the VM directory (its working directory), so a snapshot restores onto
//! the disks of the directory the restoring VMM runs in: a fork's own
//! copies. Every operation holds the VM's lock (`vm_locks[id]`) for its
//! whole duration; a fork holds the source's lock while it snapshots and
//! copies, releases it, then holds its own while it restores (never both).

use std::path::Path;
use std::sync::Arc;

use banger_api::rpc::{VmForkParams, VmSnapshotParams};
use banger_api::{Deleted, Vm, VmSnapshot, VmState, validate};
use banger_fcapi::SnapshotCreateParams;
use banger_fcproc::FirecrackerClient;
use serde::{Deserialize, Serialize};

use crate::common::error::error_chain;
use crate::common::{blocking, root_disk, work_disk};
use crate::vms::error::VmError;
use crate::vms::handles::VmHandles;
use crate::vms::launcher::RestoreFrom;
use crate::vms::service::VMService;

const SUSPEND_DIR: &str = "suspend";
const SNAPSHOTS_DIR: &str = "snapshots";
const PARTIAL_PREFIX: &str = ".partial-";
const FORK_PARTIAL: &str = "fork.partial";
const STATE_FILE: &str = "vm.state";
const MEM_FILE: &str = "vm.mem";
const META_FILE: &str = "snapshot.json";

/// What banger records beside a snapshot's VMM files (`snapshot.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotMeta {
    /// Snapshot name (`suspend` for the suspend snapshot).
    pub name: String,
    /// Id of the VM it was taken of.
    pub vm_id: String,
    /// When.
    pub created_at: banger_api::UnixMillis,
    /// The image the VM was booted from.
    pub image_id: String,
    /// The kernel it was booted with.
    pub kernel_path: String,
    /// Guest memory (the restoring VM must have the same).
    pub memory_mib: u32,
    /// vCPUs (likewise).
    pub vcpus: u32,
}

/// How `boot` restores a VM instead of booting its kernel.
#[derive(Debug, Clone)]
pub(crate) struct RestorePlan {
    /// The snapshot's files.
    pub from: RestoreFrom,
    /// Give the guest the VM's own identity after the restore (a fork).
    pub new_identity: bool,
}

/// Removes the suspend snapshot of the VM directory `dir`, if any.
pub(crate) fn remove_suspend(dir: &Path) {
    remove_dir(&dir.join(SUSPEND_DIR));
}

fn remove_dir(p: &Path) {
    if let Err(e) = std::fs::remove_dir_all(p)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %p.display(), error = %e, "cannot remove snapshot files");
    }
}

/// Removes what an interrupted snapshot left in the VM directory `dir`
/// (`snapshots/.partial-*`, `fork.partial`); returns how many.
pub(crate) fn remove_partials(dir: &Path) -> usize {
    let mut n = 0;
    let mut doomed = vec![
        dir.join(FORK_PARTIAL),
        dir.join(SUSPEND_DIR).with_extension("partial"),
    ];
    if let Ok(entries) = std::fs::read_dir(dir.join(SNAPSHOTS_DIR)) {
        doomed.extend(
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX))
                .map(|e| e.path()),
        );
    }
    for p in doomed.into_iter().filter(|p| p.exists()) {
        remove_dir(&p);
        n += 1;
    }
    n
}

/// Whether `dir` holds a complete suspend snapshot.
pub(crate) fn has_suspend(dir: &Path) -> bool {
    dir.join(SUSPEND_DIR).join(META_FILE).is_file()
}

fn read_meta(dir: &Path) -> Result<SnapshotMeta, VmError> {
    let p = dir.join(META_FILE);
    let text = std::fs::read(&p).map_err(VmError::io("cannot read", &p))?;
    serde_json::from_slice(&text)
        .map_err(|e| VmError::Invalid(format!("{} is not a snapshot record: {e}", p.display())))
}

fn restore_from(dir: &Path) -> RestoreFrom {
    RestoreFrom {
        state: dir.join(STATE_FILE),
        memory: dir.join(MEM_FILE),
    }
}

/// Bytes a directory's files allocate on disk (sparse files count what they hold).
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir(dir)
        .map(|es| {
            es.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0)
}

impl VMService {
    fn vm_snapshot(&self, vm: &Vm, dir: &Path) -> Option<VmSnapshot> {
        let meta = read_meta(dir).ok()?;
        Some(VmSnapshot {
            name: meta.name,
            vm: vm.name.clone(),
            created_at: meta.created_at,
            size_bytes: allocated(dir),
            memory_mib: meta.memory_mib,
            dir: dir.display().to_string(),
        })
    }

    /// The VM's complete named snapshots, oldest first.
    pub(crate) fn snapshots_of(&self, vm: &Vm) -> Vec<VmSnapshot> {
        let base = self.layout.vm_dir(&vm.id).join(SNAPSHOTS_DIR);
        let mut list: Vec<VmSnapshot> = std::fs::read_dir(&base)
            .map(|es| {
                es.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .filter_map(|e| self.vm_snapshot(vm, &e.path()))
                    .collect()
            })
            .unwrap_or_default();
        list.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
        list
    }

    fn live_handles(&self, vm: &Vm) -> Result<VmHandles, VmError> {
        if !matches!(vm.state, VmState::Running | VmState::Paused) {
            return Err(VmError::Conflict(format!(
                "VM {} is {}; it must be running or paused (start it with `banger vm start {}`)",
                vm.name, vm.state, vm.name
            )));
        }
        self.handles.get(&vm.id).ok_or_else(|| {
            VmError::Conflict(format!(
                "VM {} has no VMM record; stop and start it again",
                vm.name
            ))
        })
    }

    fn vmm_error(vm: &Vm, what: &str, e: banger_fcproc::FcClientError) -> VmError {
        VmError::Vmm {
            vm: vm.name.clone(),
            message: format!("cannot {what}: {}", error_chain(&e)),
        }
    }

    /// `vm.pause`: stop the vCPUs of a running VM (`PATCH /vm Paused`).
    pub async fn pause(self: &Arc<Self>, name: &str) -> Result<Vm, VmError> {
        self.pause_or_resume(name, VmState::Running, VmState::Paused)
            .await
    }

    /// `vm.resume`: continue a paused VM (`PATCH /vm Resumed`).
    pub async fn resume(self: &Arc<Self>, name: &str) -> Result<Vm, VmError> {
        self.pause_or_resume(name, VmState::Paused, VmState::Running)
            .await
    }

    async fn pause_or_resume(&self, name: &str, from: VmState, to: VmState) -> Result<Vm, VmError> {
        let vm = self.resolve(name)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        if vm.state == to {
            return Ok(vm);
        }
        if vm.state != from {
            return Err(VmError::Conflict(format!(
                "VM {} is {}; only a {from} VM can be made {to}",
                vm.name, vm.state
            )));
        }
        let h = self.live_handles(&vm)?;
        let fc = FirecrackerClient::new(&h.api_sock);
        let sent = if to == VmState::Paused {
            fc.pause_vm().await
        } else {
            fc.resume_vm().await
        };
        sent.map_err(|e| Self::vmm_error(&vm, &format!("make the VM {to}"), e))?;
        tracing::info!(vm = %vm.name, state = %to, "VM {to}");
        Ok(self.store.transition_vm(&vm.id, &[from], to, |_| {})?)
    }

    /// Pause `vm` (if running), write its VMM snapshot into `dir`
    /// (created), copy its disks there when `copy_disks`, then resume it
    /// when it was running, whatever happened. The caller holds its lock.
    async fn snapshot_into(
        &self,
        vm: &Vm,
        dir: &Path,
        name: &str,
        copy_disks: Option<&Path>,
    ) -> Result<(), VmError> {
        let h = self.live_handles(vm)?;
        if !h.relative_drives {
            return Err(VmError::Conflict(format!(
                "VM {} was started by an older banger that gave its VMM absolute disk paths; restart it (`banger vm restart {}`) before taking snapshots",
                vm.name, vm.name
            )));
        }
        let image = self.images.get(&vm.image_id)?;
        std::fs::create_dir_all(dir).map_err(VmError::io("cannot create", dir))?;
        let fc = FirecrackerClient::new(&h.api_sock);
        let was_running = vm.state == VmState::Running;
        if was_running {
            fc.pause_vm()
                .await
                .map_err(|e| Self::vmm_error(vm, "pause the VM", e))?;
        }
        let taken = async {
            let files = restore_from(dir);
            fc.create_snapshot(&SnapshotCreateParams::full(
                files.state.display().to_string(),
                files.memory.display().to_string(),
            ))
            .await
            .map_err(|e| Self::vmm_error(vm, "snapshot the VM", e))?;
            if let Some(to) = copy_disks {
                let src = self.layout.vm_dir(&vm.id);
                let to = to.to_path_buf();
                blocking(move || -> Result<(), VmError> {
                    for (from, dst) in [
                        (root_disk(&src), root_disk(&to)),
                        (work_disk(&src), work_disk(&to)),
                    ] {
                        if from.is_file() {
                            let _ = std::fs::remove_file(&dst);
                            banger_imagemgr::clone_or_copy(&from, &dst)?;
                        }
                    }
                    Ok(())
                })
                .await?;
            }
            let meta = SnapshotMeta {
                name: name.to_string(),
                vm_id: vm.id.clone(),
                created_at: banger_store::now_millis(),
                image_id: vm.image_id.clone(),
                kernel_path: image.kernel_path.clone(),
                memory_mib: vm.memory_mib,
                vcpus: vm.vcpus,
            };
            let p = dir.join(META_FILE);
            let text =
                serde_json::to_vec_pretty(&meta).map_err(|e| VmError::Invalid(e.to_string()))?;
            std::fs::write(&p, text).map_err(VmError::io("cannot write", &p))
        }
        .await;
        if was_running && let Err(e) = fc.resume_vm().await {
            tracing::error!(vm = %vm.name, error = %error_chain(&e), "cannot resume the VM after its snapshot; `banger vm resume` it");
        }
        taken
    }

    /// The snapshot's checks before any restore: the VM's image and
    /// kernel must still be there, and the VM's size unchanged.
    fn check_restorable(&self, vm: &Vm, dir: &Path) -> Result<SnapshotMeta, VmError> {
        let meta = read_meta(dir)?;
        let image = self.images.get(&meta.image_id).map_err(|_| {
            VmError::Conflict(format!(
                "snapshot {} cannot be restored: the image it was taken from (id {}) was deleted",
                meta.name, meta.image_id
            ))
        })?;
        if image.kernel_path != meta.kernel_path || !Path::new(&meta.kernel_path).is_file() {
            return Err(VmError::Conflict(format!(
                "snapshot {} cannot be restored: its kernel {} is gone (image {} now has {:?})",
                meta.name, meta.kernel_path, image.name, image.kernel_path
            )));
        }
        if meta.memory_mib != vm.memory_mib || meta.vcpus != vm.vcpus {
            return Err(VmError::Conflict(format!(
                "snapshot {} was taken with {} vCPUs and {} MiB; VM {} now has {} and {}",
                meta.name, meta.vcpus, meta.memory_mib, vm.name, vm.vcpus, vm.memory_mib
            )));
        }
        for f in [STATE_FILE, MEM_FILE] {
            if !dir.join(f).is_file() {
                return Err(VmError::Conflict(format!(
                    "snapshot {} is incomplete: {} is missing",
                    meta.name,
                    dir.join(f).display()
                )));
            }
        }
        Ok(meta)
    }

    /// The restore plan of a `suspended` VM.
    pub(crate) fn suspend_plan(&self, vm: &Vm) -> Result<RestorePlan, VmError> {
        let dir = self.layout.vm_dir(&vm.id).join(SUSPEND_DIR);
        if !dir.is_dir() {
            return Err(VmError::Conflict(format!(
                "VM {} has no suspend snapshot",
                vm.name
            )));
        }
        self.check_restorable(vm, &dir)?;
        Ok(RestorePlan {
            from: restore_from(&dir),
            new_identity: false,
        })
    }

    /// `vm.suspend`: snapshot the VM into `suspend/`, end its VMM (its
    /// memory is freed) and mark it `suspended`; `vm.start` resumes it.
    pub async fn suspend(self: &Arc<Self>, name: &str) -> Result<Vm, VmError> {
        let vm = self.resolve(name)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        let dir = self.layout.vm_dir(&vm.id);
        let partial = dir.join(SUSPEND_DIR).with_extension("partial");
        remove_dir(&partial);
        let h = self.live_handles(&vm)?;
        if let Err(e) = self.snapshot_into(&vm, &partial, SUSPEND_DIR, None).await {
            remove_dir(&partial);
            return Err(e);
        }
        // Paused from here on: the disks are as the snapshot expects them.
        let fc = FirecrackerClient::new(&h.api_sock);
        if let Err(e) = fc.pause_vm().await {
            remove_dir(&partial);
            return Err(Self::vmm_error(&vm, "pause the VM", e));
        }
        remove_suspend(&dir);
        let final_dir = dir.join(SUSPEND_DIR);
        std::fs::rename(&partial, &final_dir).map_err(VmError::io("cannot rename", &partial))?;
        self.net.kill(&h).await?;
        self.release(&vm.id);
        let vm = self
            .store
            .transition_vm(&vm.id, &[], VmState::Suspended, |v| {
                v.started_at = None;
                v.last_error = None;
            })?;
        tracing::info!(vm = %vm.name, size = allocated(&final_dir), "VM suspended");
        Ok(vm)
    }

    /// `vm.snapshot.create`: a named snapshot of a running or paused VM
    /// (memory, device state and disk copies); the VM keeps its state.
    pub async fn snapshot_create(
        self: &Arc<Self>,
        p: &VmSnapshotParams,
    ) -> Result<VmSnapshot, VmError> {
        snapshot_name(&p.snapshot)?;
        let vm = self.resolve(&p.vm)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        let base = self.layout.vm_dir(&vm.id).join(SNAPSHOTS_DIR);
        let final_dir = base.join(&p.snapshot);
        if final_dir.exists() {
            return Err(VmError::Conflict(format!(
                "VM {} already has a snapshot {}; delete it with `banger vm snapshot delete {} {}`",
                vm.name, p.snapshot, vm.name, p.snapshot
            )));
        }
        let partial = base.join(format!("{PARTIAL_PREFIX}{}", p.snapshot));
        remove_dir(&partial);
        if let Err(e) = self
            .snapshot_into(&vm, &partial, &p.snapshot, Some(&partial))
            .await
        {
            remove_dir(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &final_dir).map_err(VmError::io("cannot rename", &partial))?;
        tracing::info!(vm = %vm.name, snapshot = %p.snapshot, "snapshot taken");
        self.vm_snapshot(&vm, &final_dir)
            .ok_or_else(|| VmError::Invalid("the snapshot record vanished".into()))
    }

    /// `vm.snapshot.list`.
    pub fn snapshot_list(&self, name: &str) -> Result<Vec<VmSnapshot>, VmError> {
        let vm = self.resolve(name)?;
        Ok(self.snapshots_of(&vm))
    }

    /// `vm.snapshot.delete`. Forks restored from it keep running (their
    /// VMM holds the memory file it mapped).
    pub async fn snapshot_delete(
        self: &Arc<Self>,
        p: &VmSnapshotParams,
    ) -> Result<Deleted, VmError> {
        snapshot_name(&p.snapshot)?;
        let vm = self.resolve(&p.vm)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let dir = self
            .layout
            .vm_dir(&vm.id)
            .join(SNAPSHOTS_DIR)
            .join(&p.snapshot);
        if !dir.is_dir() {
            return Err(no_snapshot(&vm, &p.snapshot));
        }
        std::fs::remove_dir_all(&dir).map_err(VmError::io("cannot remove", &dir))?;
        Ok(Deleted {
            id: p.snapshot.clone(),
            name: p.snapshot.clone(),
        })
    }

    /// `vm.fork`: a new VM restored from a snapshot of `source` (a new one,
    /// or `from`), with copies of its disks and its own name, address,
    /// MAC, TAP and vsock socket; the source keeps running.
    pub async fn fork(self: &Arc<Self>, p: &VmForkParams) -> Result<Vm, VmError> {
        let requested = std::time::Instant::now();
        validate::vm_name(&p.name)?;
        if let Some(s) = &p.from {
            snapshot_name(s)?;
        }
        if self.root_disks.kind() != banger_dmsnap::StrategyKind::Copy {
            return Err(VmError::Conflict(
                "vm fork needs copied root disks; this host makes device-mapper snapshots".into(),
            ));
        }
        let src = self.resolve(&p.source)?;
        let src_dir = self.layout.vm_dir(&src.id);
        if let Some(s) = &p.from {
            let dir = src_dir.join(SNAPSHOTS_DIR).join(s);
            if !dir.is_dir() {
                return Err(no_snapshot(&src, s));
            }
            self.check_restorable(&src, &dir)?;
        }
        let vm = self
            // The source's image and sizes; its own name (and, from
            // `reserve`, id, address, MAC and times).
            .reserve(Vm {
                name: p.name.clone(),
                ..src.clone()
            })
            .await?;
        tracing::info!(vm = %vm.name, source = %src.name, ip = %vm.guest_ip, "fork reserved");
        match self
            .fork_into(&src, &vm, p.from.as_deref(), requested)
            .await
        {
            Ok(vm) => Ok(vm),
            Err(e) => {
                let removed = self
                    .delete(&banger_api::rpc::VmDeleteParams {
                        vm: vm.id.clone(),
                        force: true,
                    })
                    .await;
                if let Err(d) = removed {
                    tracing::warn!(vm = %vm.name, error = %d, "cannot remove the failed fork");
                }
                Err(e)
            }
        }
    }

    async fn fork_into(
        self: &Arc<Self>,
        src: &Vm,
        vm: &Vm,
        from: Option<&str>,
        requested: std::time::Instant,
    ) -> Result<Vm, VmError> {
        let dir = self.layout.vm_dir(&vm.id);
        std::fs::create_dir_all(&dir).map_err(VmError::io("cannot create", &dir))?;
        let snap_dir = match from {
            Some(s) => {
                let snap = self.layout.vm_dir(&src.id).join(SNAPSHOTS_DIR).join(s);
                let (snap2, to) = (snap.clone(), dir.clone());
                blocking(move || -> Result<(), VmError> {
                    for (from, dst) in [
                        (root_disk(&snap2), root_disk(&to)),
                        (work_disk(&snap2), work_disk(&to)),
                    ] {
                        if from.is_file() {
                            banger_imagemgr::clone_or_copy(&from, &dst)?;
                        }
                    }
                    Ok(())
                })
                .await?;
                snap
            }
            None => {
                let _g = self.vm_locks.lock(&src.id).await;
                let src = self.reload(&src.id)?;
                let partial = dir.join(FORK_PARTIAL);
                self.snapshot_into(&src, &partial, "fork", Some(&dir))
                    .await?;
                partial
            }
        };
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        let plan = RestorePlan {
            from: restore_from(&snap_dir),
            new_identity: true,
        };
        let booted = self.boot(&vm, None, requested, Some(plan)).await;
        // The VMM mapped the memory file: the fork's copy of the files can go.
        remove_dir(&dir.join(FORK_PARTIAL));
        booted
    }

    /// Give a restored fork its own identity (address, MAC, hostname, SSH
    /// host key) through the guest agent on its own vsock socket, before
    /// its `.vm` name is published (ARCHITECTURE.md, "vm fork").
    pub(crate) async fn apply_identity(&self, vm: &Vm, h: &VmHandles) -> Result<(), VmError> {
        let fail = |message: String| VmError::Vmm {
            vm: vm.name.clone(),
            message,
        };
        let Some(vsock) = &h.vsock else {
            return Err(fail(
                "the fork has no vsock socket to reach its guest agent".into(),
            ));
        };
        match self.ws.agent_call(vsock, &self.identity_request(vm)).await {
            None => {
                tracing::warn!(vm = %vm.name, "readiness is `none`: no guest agent to ask, so the fork's guest keeps its source's address and hostname");
                Ok(())
            }
            Some(Err(e)) => Err(fail(format!(
                "cannot give the fork its identity through the guest agent: {e}"
            ))),
            Some(Ok(reply)) => banger_guest::proto::parse_identity_reply(&reply).map_err(|e| {
                fail(format!(
                    "the guest agent did not apply the fork's identity: {e}"
                ))
            }),
        }
    }

    /// `IDENTITY <ip=…> mac=<MAC> seed=<hex>`: the kernel `ip=` argument
    /// a cold boot of this VM would get, its MAC and fresh randomness for
    /// the guest's RNG (which the restore copied from the source).
    fn identity_request(&self, vm: &Vm) -> String {
        let ip = match self.net.network() {
            Some(net) => net.settings.kernel_ip_arg_named(vm.guest_ip, &vm.name),
            None => format!("ip={}::::{}:eth0:off", vm.guest_ip, vm.name),
        };
        let mut seed = [0u8; 32];
        let seeded = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut seed))
            .is_ok();
        identity_line(&ip, &vm.guest_mac, if seeded { &seed[..] } else { &[] })
    }
}

/// The `IDENTITY` request line (`banger_guest::identity` parses it).
fn identity_line(ip_arg: &str, mac: &str, seed: &[u8]) -> String {
    let mut line = format!("{} {ip_arg} mac={mac}", banger_guest::proto::IDENTITY);
    if !seed.is_empty() {
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        line.push_str(&format!(" seed={hex}"));
    }
    line
}

/// Snapshot names follow VM names' rule (a DNS label).
fn snapshot_name(name: &str) -> Result<(), VmError> {
    validate::vm_name(name).map_err(|e| {
        VmError::Invalid(format!(
            "invalid snapshot name: {}",
            e.message.replace("VM name", "name")
        ))
    })
}

fn no_snapshot(vm: &Vm, name: &str) -> VmError {
    VmError::NotFound(format!(
        "VM {} has no snapshot {name}; see `banger vm snapshot list {}`",
        vm.name, vm.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the daemon sends is what the guest agent applies.
    #[test]
    fn identity_line_is_what_the_agent_parses() {
        for ip in [
            "ip=172.30.0.9::172.30.0.1:255.255.255.0:fork-2:eth0:off:172.30.0.1",
            "ip=172.30.0.9::::fork-2:eth0:off",
        ] {
            let line = identity_line(ip, "02:42:ac:1e:00:09", &[7; 32]);
            let args = line
                .strip_prefix("IDENTITY ")
                .expect("the request word first");
            assert!(line.len() <= banger_guest::proto::MAX_REQUEST, "{line}");
            let id = banger_guest::identity::parse(args).unwrap();
            assert_eq!(id.ip.client, std::net::Ipv4Addr::new(172, 30, 0, 9));
            assert_eq!(id.ip.hostname.as_deref(), Some("fork-2"));
            assert_eq!(id.mac, "02:42:ac:1e:00:09");
            assert_eq!(id.seed, vec![7; 32]);
        }
    }

    #[test]
    fn partial_snapshots_are_found_and_removed() {
        let t = tempfile::tempdir().unwrap();
        let keep = t.path().join(SNAPSHOTS_DIR).join("s1");
        std::fs::create_dir_all(&keep).unwrap();
        for d in [
            t.path().join(SNAPSHOTS_DIR).join(".partial-s2"),
            t.path().join(FORK_PARTIAL),
            t.path().join("suspend.partial"),
        ] {
            std::fs::create_dir_all(&d).unwrap();
        }
        assert_eq!(remove_partials(t.path()), 3);
        assert!(keep.is_dir());
        assert_eq!(remove_partials(t.path()), 0);
    }
}
