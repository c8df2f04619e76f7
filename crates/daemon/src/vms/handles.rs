//! The handle cache: transient facts about each running VM's VMM, mirrored
//! to `handles.json` in the VM's directory so a restarted daemon can find
//! (and adopt or clean up) what the previous one started.
//!
//! Crash safety: before a VMM is spawned, the same facts without a pid are
//! written to `vmm.intent` ([`write_intent`]); `handles.json` follows right
//! after the spawn with the pid and start time, and the intent goes. A
//! daemon killed in between leaves the intent, and reconcile finds the VMM
//! by its `--id` (`banger_privops::scan_vmms`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use banger_api::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::vms::VmError;

/// File name inside each VM directory.
pub const HANDLES_FILE: &str = "handles.json";

/// The record written before a VMM is spawned (see the module docs).
pub const INTENT_FILE: &str = "vmm.intent";

/// What the daemon must remember about a running VMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmHandles {
    /// VMM process id (0 in an intent record: not spawned yet).
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field
    /// 22): with the pid, what identifies the process to the root helper.
    /// Absent in files of older versions (filled in at adoption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    /// Its API socket.
    pub api_sock: PathBuf,
    /// Its hybrid-vsock socket.
    pub vsock: Option<PathBuf>,
    /// The binary that was started.
    pub binary: PathBuf,
    /// When it started.
    pub started_at: UnixMillis,
    /// The VM's TAP device, when it has a network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tap: Option<String>,
    /// `<name>.vm` published for it, with its address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<(String, std::net::Ipv4Addr)>,
    /// The VMM was given its disks relative to the VM directory (its
    /// working directory), so its snapshots can restore onto a fork's own
    /// disks. False for VMMs started by older versions.
    #[serde(default)]
    pub relative_drives: bool,
}

/// In-memory map VM id → handles. Its mutex is a leaf lock.
#[derive(Debug, Default)]
pub struct HandleCache {
    map: Mutex<HashMap<String, VmHandles>>,
}

impl HandleCache {
    /// Handles of VM `id`.
    pub fn get(&self, id: &str) -> Option<VmHandles> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Record VM `id`'s handles in memory and in `dir/handles.json`.
    pub fn put(&self, id: &str, dir: &Path, h: VmHandles) -> Result<(), VmError> {
        write_file(dir, &h)?;
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), h);
        Ok(())
    }

    /// Put into memory only (reconcile, after reading the file).
    pub fn adopt(&self, id: &str, h: VmHandles) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), h);
    }

    /// Forget VM `id`'s handles and remove its file.
    pub fn remove(&self, id: &str, dir: &Path) -> Option<VmHandles> {
        let _ = std::fs::remove_file(dir.join(HANDLES_FILE));
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
    }

    /// Every cached entry.
    pub fn all(&self) -> Vec<(String, VmHandles)> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Ids with handles.
    pub fn ids(&self) -> Vec<String> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

/// Read `dir/handles.json`, if present and valid.
pub fn read_file(dir: &Path) -> Option<VmHandles> {
    let text = std::fs::read(dir.join(HANDLES_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Record the intent to spawn a VMM described by `h` (pid 0) in
/// `dir/vmm.intent`, durably, before the spawn.
pub fn write_intent(dir: &Path, h: &VmHandles) -> Result<(), VmError> {
    write_json(dir, INTENT_FILE, h)
}

/// The intent record of `dir`, if any.
pub fn read_intent(dir: &Path) -> Option<VmHandles> {
    let text = std::fs::read(dir.join(INTENT_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Remove `dir`'s intent record.
pub fn remove_intent(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(INTENT_FILE));
}

fn write_file(dir: &Path, h: &VmHandles) -> Result<(), VmError> {
    write_json(dir, HANDLES_FILE, h)
}

fn write_json(dir: &Path, name: &str, h: &VmHandles) -> Result<(), VmError> {
    use std::io::Write;
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let body = serde_json::to_vec_pretty(h).map_err(|e| VmError::Internal(e.to_string()))?;
    let mut f = std::fs::File::create(&tmp).map_err(VmError::io("cannot write", &tmp))?;
    f.write_all(&body)
        .and_then(|()| f.sync_all())
        .map_err(VmError::io("cannot write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(VmError::io("cannot write", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let cache = HandleCache::default();
        let h = VmHandles {
            pid: 42,
            start_time: Some(7),
            api_sock: "/run/x/api.sock".into(),
            vsock: None,
            binary: "/usr/bin/firecracker".into(),
            started_at: 1,
            tap: Some("bgt00000001".into()),
            dns: Some(("dev".into(), std::net::Ipv4Addr::new(172, 30, 0, 2))),
            relative_drives: true,
        };
        cache.put("a", t.path(), h.clone()).unwrap();
        assert_eq!(read_file(t.path()), Some(h.clone()));
        assert_eq!(cache.get("a"), Some(h.clone()));
        cache.remove("a", t.path());
        assert_eq!(read_file(t.path()), None);
        assert_eq!(cache.get("a"), None);
        let intent = VmHandles {
            pid: 0,
            start_time: None,
            ..h
        };
        write_intent(t.path(), &intent).unwrap();
        assert_eq!(read_intent(t.path()), Some(intent));
        remove_intent(t.path());
        assert_eq!(read_intent(t.path()), None);
    }

    #[test]
    fn files_without_a_start_time_still_read() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join(HANDLES_FILE),
            r#"{"pid":5,"api_sock":"/a","vsock":null,"binary":"/fc","started_at":1}"#,
        )
        .unwrap();
        let h = read_file(t.path()).unwrap();
        assert_eq!((h.pid, h.start_time), (5, None));
    }
}
