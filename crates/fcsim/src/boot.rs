//! The configured boot source: kernel and initrd files, opened at `PUT /boot-source`.
//!
//! Firecracker opens both files when the boot source is set (so a missing
//! file fails the PUT) and parses the kernel only at InstanceStart, reading
//! through the descriptor it kept.

use std::fs::File;
use std::io::Read;

use banger_fcapi::BootSource;

use crate::fault::Fault;
use crate::kernel::check_kernel_image;

/// A boot source whose files are open.
#[derive(Debug)]
pub struct BootConfig {
    /// The body as configured.
    pub source: BootSource,
    kernel: File,
    _initrd: Option<File>,
}

impl BootConfig {
    /// Opens the kernel and initrd, as `PUT /boot-source` does.
    pub fn open(source: BootSource) -> Result<Self, Fault> {
        let kernel = File::open(&source.kernel_image_path).map_err(|e| {
            Fault::bad_request(format!(
                "Boot source error: The kernel file cannot be opened: {e}"
            ))
        })?;
        let initrd = match &source.initrd_path {
            Some(path) => Some(File::open(path).map_err(|e| {
                Fault::bad_request(format!(
                    "Boot source error: The initrd file cannot be opened due to invalid path or invalid permissions. {e}"
                ))
            })?),
            None => None,
        };
        Ok(Self {
            source,
            kernel,
            _initrd: initrd,
        })
    }

    /// Checks that the kernel looks loadable. The message is the full
    /// `Start microvm error: ...` fault text.
    pub fn check_kernel(&self) -> Result<(), Fault> {
        let start_error =
            |detail: String| Fault::bad_request(format!("Start microvm error: {detail}"));
        let mut file = &self.kernel;
        let len = file
            .metadata()
            .map_err(|e| start_error(e.to_string()))?
            .len();
        let mut head = Vec::with_capacity(4096);
        // The descriptor is shared with nobody else; read from its start.
        std::io::Seek::rewind(&mut file).map_err(|e| start_error(e.to_string()))?;
        file.take(4096)
            .read_to_end(&mut head)
            .map_err(|e| start_error(e.to_string()))?;
        check_kernel_image(&head, len).map_err(|e| start_error(e.to_string()))
    }

    /// The kernel command line the guest gets (configured or Firecracker's default).
    pub fn boot_args(&self) -> &str {
        self.source
            .boot_args
            .as_deref()
            .unwrap_or(BootSource::DEFAULT_BOOT_ARGS)
    }
}
