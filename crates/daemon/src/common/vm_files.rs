//! The files of a VM directory (`<state>/vms/<id>/`) and of its runtime
//! directory.

use std::path::{Path, PathBuf};

/// Files of a VM directory the VMM writes.
pub struct VmFiles;

impl VmFiles {
    /// Serial console (the VMM's stdout).
    pub fn console(dir: &Path) -> PathBuf {
        dir.join("console.log")
    }
    /// The VMM's log (`PUT /logger`).
    pub fn vmm_log(dir: &Path) -> PathBuf {
        dir.join("firecracker.log")
    }
    /// The VMM's stderr.
    pub fn stderr(dir: &Path) -> PathBuf {
        dir.join("vmm.stderr")
    }
    /// Metrics (`PUT /metrics`).
    pub fn metrics(dir: &Path) -> PathBuf {
        dir.join("metrics.json")
    }
    /// Exit status line written when the VMM ends.
    pub fn exit_status(dir: &Path) -> PathBuf {
        dir.join("vmm.exit")
    }
    /// The per-VM lock the VMM holds through an inherited fd (`flock`).
    pub fn lock(dir: &Path) -> PathBuf {
        dir.join("vmm.lock")
    }
    /// API socket.
    pub fn api_sock(run_dir: &Path) -> PathBuf {
        run_dir.join("api.sock")
    }
    /// Hybrid-vsock socket.
    pub fn vsock(run_dir: &Path) -> PathBuf {
        run_dir.join("vsock.sock")
    }
}

/// Root disk of the VM whose directory is `dir`.
pub fn root_disk(dir: &std::path::Path) -> PathBuf {
    dir.join("root.ext4")
}

/// Persistent work disk of the VM whose directory is `dir`.
pub fn work_disk(dir: &std::path::Path) -> PathBuf {
    dir.join("work.ext4")
}

/// Work-disk templates of the image whose directory is `image_dir`
/// (`vms/work_disk.rs`): ready-made work disks a new VM's is cloned from.
/// They go with the image's directory (`image delete`, `system uninstall
/// --purge`).
pub fn work_templates_dir(image_dir: &Path) -> PathBuf {
    image_dir.join("work-templates")
}
