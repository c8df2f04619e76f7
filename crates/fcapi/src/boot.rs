//! `PUT /boot-source`: kernel, initrd and command line.

use serde::{Deserialize, Serialize};

use crate::model::ApiModel;

/// Body of `PUT /boot-source`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSource {
    /// Host path of the guest kernel (ELF `vmlinux` or, on this version, `bzImage`).
    pub kernel_image_path: String,
    /// Host path of an initrd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
    /// Kernel command line; replaces Firecracker's default when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_args: Option<String>,
}

impl BootSource {
    /// Firecracker's command line when `boot_args` is omitted (no serial console).
    pub const DEFAULT_BOOT_ARGS: &'static str = "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce";

    /// A boot source for `kernel_image_path` with no initrd and the default command line.
    pub fn new(kernel_image_path: impl Into<String>) -> Self {
        Self {
            kernel_image_path: kernel_image_path.into(),
            initrd_path: None,
            boot_args: None,
        }
    }

    /// Sets the kernel command line.
    pub fn with_boot_args(mut self, boot_args: impl Into<String>) -> Self {
        self.boot_args = Some(boot_args.into());
        self
    }

    /// Sets the initrd.
    pub fn with_initrd(mut self, initrd_path: impl Into<String>) -> Self {
        self.initrd_path = Some(initrd_path.into());
        self
    }
}

impl ApiModel for BootSource {
    const DEFINITION: &'static str = "BootSource";
    const FIELDS: &'static [&'static str] = &["kernel_image_path", "initrd_path", "boot_args"];
    const REQUIRED: &'static [&'static str] = &["kernel_image_path"];

    fn sample() -> Self {
        Self::new("/k")
            .with_initrd("/i")
            .with_boot_args("console=ttyS0")
    }
}
