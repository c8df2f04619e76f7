//! The files of a VM directory (`<state>/vms/<id>/`) and of its runtime
//! directory.

use std::path::{Path, PathBuf};

/// Largest a VM's console or VMM log grows before it is rotated.
pub const LOG_MAX_BYTES: u64 = 8 << 20;

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

/// The one rotated generation of a log (`console.log.1`).
pub fn rotated(log: &Path) -> PathBuf {
    let mut name = log.file_name().unwrap_or_default().to_os_string();
    name.push(".1");
    log.with_file_name(name)
}

/// Rotate `log` when it is larger than `max`: copy it to
/// [`rotated`]`(log)` (through a temporary file and a rename, replacing the
/// previous generation), then truncate it in place. The VMM keeps its file
/// open with `O_APPEND`, so it goes on writing at the new end; lines
/// written between the copy and the truncation are lost (logrotate's
/// `copytruncate`). Returns whether it rotated. Blocking.
pub fn rotate_log(log: &Path, max: u64) -> std::io::Result<bool> {
    let len = match std::fs::symlink_metadata(log) {
        Ok(m) if m.file_type().is_file() => m.len(),
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max {
        return Ok(false);
    }
    let dest = rotated(log);
    let mut tmp = dest.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::copy(log, &tmp)?;
    std::fs::rename(&tmp, &dest)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(log)?
        .set_len(0)?;
    Ok(true)
}

/// Rotate the logs of the VM whose directory is `dir` (console, VMM log,
/// VMM stderr) that passed [`LOG_MAX_BYTES`].
pub fn rotate_vm_logs(dir: &Path) {
    for log in [
        VmFiles::console(dir),
        VmFiles::vmm_log(dir),
        VmFiles::stderr(dir),
    ] {
        match rotate_log(&log, LOG_MAX_BYTES) {
            Ok(true) => tracing::info!(log = %log.display(), "rotated a VM log"),
            Ok(false) => {}
            Err(e) => tracing::warn!(log = %log.display(), error = %e, "cannot rotate a VM log"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn a_log_over_the_cap_is_copied_and_truncated_under_its_writer() {
        let dir = tempfile::tempdir().unwrap();
        let log = VmFiles::console(dir.path());
        // The VMM's view: one O_APPEND descriptor for its whole life.
        let mut writer = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        writer.write_all(&[b'a'; 40]).unwrap();
        assert!(!rotate_log(&log, 50).unwrap(), "under the cap: untouched");
        writer.write_all(&[b'b'; 20]).unwrap();
        assert!(rotate_log(&log, 50).unwrap());
        assert_eq!(std::fs::read(rotated(&log)).unwrap().len(), 60);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 0);
        writer.write_all(b"after\n").unwrap();
        assert_eq!(
            std::fs::read(&log).unwrap(),
            b"after\n",
            "no hole, no old bytes"
        );
        // The next rotation replaces the previous generation.
        writer.write_all(&[b'c'; 60]).unwrap();
        assert!(rotate_log(&log, 50).unwrap());
        let gen1 = std::fs::read(rotated(&log)).unwrap();
        assert!(gen1.starts_with(b"after\n") && gen1.len() == 66);
        assert!(!rotate_log(&dir.path().join("missing.log"), 1).unwrap());
    }
}
