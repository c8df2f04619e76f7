//! `image.promote`: a stopped VM's root disk becomes a new image, and the
//! kernel reference of `image register --kernel-name`.
//!
//! The VM's own lock (`vm_locks[id]`, the outermost lock) is held for the
//! whole promotion so the VM cannot start while its disk is copied; the copy
//! (reflink or sparse) runs into an image staging directory, and the
//! publication atom is `ImageService::publish` under `image_ops_mu`, as for
//! every other image path. The new image boots the VM image's kernel and
//! initrd (hard-linked, so a catalog kernel stays "in use").

use std::path::Path;

use banger_api::rpc::ImagePromoteParams;
use banger_api::{Image, validate};

use crate::common::root_disk;
use crate::images::{Staged, link_or_copy, name_taken};
use crate::vms::VmError;
use crate::vms::service::VMService;

impl VMService {
    /// `image.promote`.
    pub async fn promote_to_image(&self, p: ImagePromoteParams) -> Result<Image, VmError> {
        validate::image_name(&p.name)?;
        let vm = self.resolve(&p.vm)?;
        let _g = self.vm_locks.lock(&vm.id).await;
        let vm = self.resolve(&vm.id)?;
        if vm.state.has_vmm() {
            return Err(VmError::Conflict(format!(
                "VM {} is {}; stop it first with `banger vm stop {}`, then promote it",
                vm.name, vm.state, vm.name
            )));
        }
        let disk = root_disk(&self.layout.vm_dir(&vm.id));
        if disk
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            return Err(VmError::Conflict(format!(
                "VM {}'s root disk is a device-mapper snapshot, which promote cannot copy yet; use a host without device-mapper or `banger image export-bundle` the base image",
                vm.name
            )));
        }
        if !disk.is_file() {
            return Err(VmError::Conflict(format!(
                "VM {} has no root disk yet (never started); start it once, or register the image's files instead",
                vm.name
            )));
        }
        let base = self.images.get(&vm.image_id).map_err(|_| {
            VmError::Conflict(format!(
                "the image VM {} was created from no longer exists, so there is no kernel for the new image; register its disk with `banger image register` instead",
                vm.name
            ))
        })?;
        if self.store.find_image(&p.name)?.is_some() {
            return Err(name_taken(&p.name).into());
        }
        let id = banger_store::new_id();
        let staging = self.images.staging_dir(&id);
        let has_initrd = base.initrd_path.is_some();
        let st = staging.clone();
        let copy = tokio::task::spawn_blocking(move || -> Result<(), VmError> {
            std::fs::create_dir_all(&st).map_err(VmError::io("cannot create", &st))?;
            banger_imagemgr::clone_or_copy(&disk, &st.join("rootfs.ext4"))?;
            link_or_copy(Path::new(&base.kernel_path), &st.join("vmlinux"))?;
            if let Some(i) = &base.initrd_path {
                link_or_copy(Path::new(i), &st.join("initrd"))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| VmError::Internal(e.to_string()))
        .and_then(|r| r);
        let result = match copy {
            Ok(()) => self
                .images
                .publish(
                    &staging,
                    Staged {
                        id,
                        name: p.name.clone(),
                        has_kernel: true,
                        has_initrd,
                        source: format!("promote:{}", vm.name),
                    },
                )
                .await
                .map_err(VmError::from),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        result
    }
}
