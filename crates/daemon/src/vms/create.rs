//! `vm.create`: validate, reserve (name, IP, MAC, row) under the narrow
//! `create_vm_mu`, then prepare the root disk and boot asynchronously under
//! the VM's own lock, reporting progress through an operation.

use std::collections::HashSet;
use std::sync::Arc;

use banger_api::rpc::VmCreateParams;
use banger_api::{ByteSize, Image, Vm, VmCreated, VmState, validate};

use crate::common::blocking;
use crate::common::error::DaemonError;
use crate::common::{Persist, root_disk};
use crate::vms::alloc;
use crate::vms::error::VmError;
use crate::vms::service::VMService;

impl VMService {
    /// `vm.create`.
    pub async fn create(self: &Arc<Self>, p: VmCreateParams) -> Result<VmCreated, VmError> {
        let requested = std::time::Instant::now();
        validate::vm_name(&p.name)?;
        let vcpus = p.vcpus.unwrap_or(self.config.vm.vcpus);
        validate::vcpus(vcpus)?;
        let memory_mib = match p.memory_mib {
            Some(m) => m,
            None => u32::try_from(self.config.vm.memory.as_mib()).unwrap_or(u32::MAX),
        };
        validate::memory_mib(memory_mib)?;
        let image_name = p
            .image
            .clone()
            .unwrap_or_else(|| self.config.vm.image.clone());
        let image = self.images.resolve(&image_name)?;
        let work_disk_bytes = work_disk_size(
            p.work_disk.unwrap_or(self.config.vm.work_disk),
            &image,
            p.work_disk.is_some(),
        )?;
        let disk_bytes = disk_size(p.disk.or(self.config.vm.disk), &image, p.disk.is_some())?;
        // Sizes the ext4 inside cannot grow to fail here, before any row
        // or file exists (not later in resize2fs).
        if disk_bytes > image.size_bytes
            && self.root_disks.kind() == banger_dmsnap::StrategyKind::Copy
        {
            check_growable(
                std::path::Path::new(&image.rootfs_path),
                ByteSize(disk_bytes),
                "disk",
            )?;
        }
        if let Some(seed) = image.work_seed_path.as_deref()
            && work_disk_bytes > 0
        {
            let seed = std::path::Path::new(seed);
            let seed_len = std::fs::metadata(seed).map(|m| m.len()).unwrap_or(0);
            if work_disk_bytes > seed_len {
                check_growable(seed, ByteSize(work_disk_bytes), "work disk")?;
            }
        }
        if self.root_disks.kind() == banger_dmsnap::StrategyKind::DmSnapshot
            && disk_bytes > image.size_bytes
        {
            // A snapshot is as large as its image: refuse now, not after
            // the VM was reserved (banger-dmsnap refuses it too).
            return Err(VmError::Invalid(
                banger_dmsnap::RootDiskError::CannotGrow {
                    vm: p.name.clone(),
                    image_bytes: image.size_bytes,
                    wanted_bytes: disk_bytes,
                }
                .to_string(),
            ));
        }

        let vm = {
            let _reserve = self.create_vm_mu.lock().await;
            if self.store.find_vm(&p.name)?.is_some() {
                return Err(VmError::NameTaken(p.name.clone()));
            }
            let used: HashSet<_> = self.store.used_guest_ips()?.into_iter().collect();
            let subnet = self.config.network.subnet;
            let ip = alloc::next_guest_ip(subnet, &used).ok_or_else(|| {
                VmError::Conflict(format!(
                    "no free guest address left in {subnet}; delete a VM or configure a larger network.subnet"
                ))
            })?;
            let now = banger_store::now_millis();
            let vm = Vm {
                id: banger_store::new_id(),
                name: p.name.clone(),
                state: VmState::Created,
                image_id: image.id.clone(),
                image_name: image.name.clone(),
                vcpus,
                memory_mib,
                disk_bytes,
                guest_ip: ip,
                guest_mac: alloc::mac_for(ip),
                created_at: now,
                updated_at: now,
                started_at: None,
                last_error: None,
                work_disk_bytes,
            };
            self.store.insert_vm(&vm)?;
            vm
        };
        tracing::info!(vm = %vm.name, id = %vm.id, ip = %vm.guest_ip, "VM reserved");

        let op = self.create_ops.start(
            "vm.create",
            vm.name.clone(),
            if p.no_start { 1 } else { 4 },
            Persist::Always {
                vm_id: vm.id.clone(),
            },
        );
        let this = Arc::clone(self);
        let (vm_id, op_id, no_start) = (vm.id.clone(), op.id.clone(), p.no_start);
        tokio::spawn(async move { this.run_create(vm_id, op_id, no_start, requested).await });
        Ok(VmCreated {
            vm,
            operation: Some(op),
        })
    }

    async fn run_create(
        self: Arc<Self>,
        vm_id: String,
        op_id: String,
        no_start: bool,
        requested: std::time::Instant,
    ) {
        let _vm_lock = self.vm_locks.lock(&vm_id).await;
        let vm = match self.store.get_vm(&vm_id) {
            Ok(Some(vm)) => vm,
            Ok(None) => {
                return self.finish_op(&op_id, Err(VmError::Deleted));
            }
            Err(e) => return self.finish_op(&op_id, Err(e.into())),
        };
        self.op_stage(&op_id, 1, "preparing root disk");
        if let Err(e) = self.prepare_root_disk(&vm).await {
            // Nothing of a VM whose disk could not be made is kept.
            let _ = std::fs::remove_dir_all(self.layout.vm_dir(&vm.id));
            let _ = self.store.delete_vm(&vm.id);
            return self.finish_op(&op_id, Err(e));
        }
        if no_start {
            return self.finish_op(&op_id, Ok(()));
        }
        let result = self
            .start_locked(&vm, Some(&op_id), requested)
            .await
            .map(|_| ());
        self.finish_op(&op_id, result);
    }

    /// Make the VM's root disk from the image's root filesystem through the
    /// root-disk strategy (banger-dmsnap: a reflink/sparse copy renamed
    /// into place, or a device-mapper snapshot). On error the strategy
    /// leaves nothing behind.
    async fn prepare_root_disk(&self, vm: &Vm) -> Result<(), VmError> {
        let image = self.images.get(&vm.image_id)?;
        let dir = self.layout.vm_dir(&vm.id);
        let disk_bytes = vm.disk_bytes;
        let strategy = Arc::clone(&self.root_disks);
        let vm_id = vm.id.clone();
        blocking(move || -> Result<(), VmError> {
            std::fs::create_dir_all(&dir).map_err(VmError::io("cannot create", &dir))?;
            let disk = strategy.create(
                &vm_id,
                std::path::Path::new(&image.rootfs_path),
                &dir,
                disk_bytes,
            )?;
            debug_assert_eq!(disk, root_disk(&dir));
            tracing::debug!(disk = %disk.display(), strategy = ?strategy.kind(), "root disk ready");
            Ok(())
        })
        .await
    }

    /// Move operation `op_id` to step `step`.
    pub(crate) fn op_stage(&self, op_id: &str, step: u32, stage: &str) {
        self.create_ops.stage(op_id, step, stage);
    }

    pub(crate) fn finish_op(&self, op_id: &str, result: Result<(), VmError>) {
        let result = result.map_err(DaemonError::from);
        let outcome = result.as_ref().map(|_| "done".to_string());
        if let Some(e) = self.create_ops.finish(op_id, outcome) {
            tracing::warn!(op = op_id, error = %e.message, "VM operation failed");
        }
    }
}

fn disk_size(requested: Option<ByteSize>, image: &Image, explicit: bool) -> Result<u64, VmError> {
    let Some(size) = requested else {
        return Ok(image.size_bytes);
    };
    validate::disk_size("disk", size)?;
    if size.bytes() < image.size_bytes {
        if !explicit {
            return Ok(image.size_bytes);
        }
        return Err(VmError::Invalid(format!(
            "disk size {size} is smaller than image {} ({}); use --disk {} or more",
            image.name,
            ByteSize(image.size_bytes),
            ByteSize(image.size_bytes)
        )));
    }
    Ok(size.bytes())
}

/// The work disk size: at least the image's work seed (a smaller configured
/// default is raised to it; a smaller explicit size is refused). 0 when the
/// image has no work seed (such a VM gets no work disk).
fn work_disk_size(size: ByteSize, image: &Image, explicit: bool) -> Result<u64, VmError> {
    let Some(seed) = image.work_seed_path.as_deref() else {
        return Ok(0);
    };
    let seed_len = std::fs::metadata(seed).map(|m| m.len()).unwrap_or(0);
    validate::disk_size("work disk", size)?;
    if size.bytes() < seed_len {
        if !explicit {
            return Ok(seed_len);
        }
        return Err(VmError::Invalid(format!(
            "work disk size {size} is smaller than image {}'s work seed ({}); use --work-disk {} or more",
            image.name,
            ByteSize(seed_len),
            ByteSize(seed_len)
        )));
    }
    Ok(size.bytes())
}

/// Refuse `size` for a disk made from the ext4 image `fs` when resize2fs
/// could not grow that filesystem so far (its block size and `64bit`
/// feature set the limit; see `banger_imagemgr::Ext4Geometry`). `what` is
/// "disk" or "work disk", as the option is named.
pub(crate) fn check_growable(
    fs: &std::path::Path,
    size: ByteSize,
    what: &str,
) -> Result<(), VmError> {
    match banger_imagemgr::check_ext4_growable(fs, size.bytes()) {
        Ok(()) => Ok(()),
        Err(banger_imagemgr::ImageMgrError::TooLargeForFilesystem {
            max,
            block_size,
            is_64bit,
            ..
        }) => {
            // Whole MiB, rounded down, so the suggested size is accepted.
            let max_mib = format!("{}M", max / ByteSize::MIB);
            Err(VmError::Invalid(format!(
                "{what} size {size} is more than the ext4 filesystem of {} can grow to: at most {max_mib} (about {}) with its {block_size}-byte blocks{}; use --{} {max_mib} or less, or an image made with 4 KiB blocks (mkfs.ext4 -b 4096 -O 64bit)",
                fs.display(),
                ByteSize(max),
                if is_64bit {
                    ""
                } else {
                    " and no 64bit feature"
                },
                what.replace(' ', "-"),
            )))
        }
        Err(e) => Err(VmError::Invalid(format!(
            "cannot check the {what} size against {}: {e}",
            fs.display()
        ))),
    }
}
