//! The handle cache: transient facts about each running VM's VMM, mirrored
//! to `handles.json` in the VM's directory so a restarted daemon can find
//! (and adopt or clean up) what the previous one started.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use banger_api::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::error::DaemonError;

/// File name inside each VM directory.
pub const HANDLES_FILE: &str = "handles.json";

/// What the daemon must remember about a running VMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmHandles {
    /// VMM process id.
    pub pid: u32,
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
    pub fn put(&self, id: &str, dir: &Path, h: VmHandles) -> Result<(), DaemonError> {
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

fn write_file(dir: &Path, h: &VmHandles) -> Result<(), DaemonError> {
    let path = dir.join(HANDLES_FILE);
    let tmp = dir.join(".handles.json.tmp");
    let body = serde_json::to_vec_pretty(h).map_err(|e| DaemonError::Internal(e.to_string()))?;
    std::fs::write(&tmp, body).map_err(DaemonError::io("cannot write", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(DaemonError::io("cannot write", &path))
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
            api_sock: "/run/x/api.sock".into(),
            vsock: None,
            binary: "/usr/bin/firecracker".into(),
            started_at: 1,
            tap: Some("bgt00000001".into()),
            dns: Some(("dev".into(), std::net::Ipv4Addr::new(172, 30, 0, 2))),
        };
        cache.put("a", t.path(), h.clone()).unwrap();
        assert_eq!(read_file(t.path()), Some(h.clone()));
        assert_eq!(cache.get("a"), Some(h));
        cache.remove("a", t.path());
        assert_eq!(read_file(t.path()), None);
        assert_eq!(cache.get("a"), None);
    }
}
