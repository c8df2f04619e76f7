//! `PUT /snapshot/create` and `PUT /snapshot/load`.

use serde::{Deserialize, Serialize};

use crate::model::{ApiModel, api_enum};

/// Kind of snapshot to create.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SnapshotType {
    /// All of guest memory (default).
    #[default]
    Full,
    /// Only pages dirtied since the last snapshot.
    Diff,
}

api_enum!(SnapshotType {
    Full => "Full",
    Diff => "Diff",
});

/// Body of `PUT /snapshot/create` (the VM must be paused).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreateParams {
    /// Full or diff. Default `Full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_type: Option<SnapshotType>,
    /// Where to write the microVM state file.
    pub snapshot_path: String,
    /// Where to write guest memory.
    pub mem_file_path: String,
}

impl SnapshotCreateParams {
    /// A full snapshot written to the two paths.
    pub fn full(snapshot_path: impl Into<String>, mem_file_path: impl Into<String>) -> Self {
        Self {
            snapshot_type: Some(SnapshotType::Full),
            snapshot_path: snapshot_path.into(),
            mem_file_path: mem_file_path.into(),
        }
    }
}

impl ApiModel for SnapshotCreateParams {
    const DEFINITION: &'static str = "SnapshotCreateParams";
    const FIELDS: &'static [&'static str] = &["snapshot_type", "snapshot_path", "mem_file_path"];
    const REQUIRED: &'static [&'static str] = &["snapshot_path", "mem_file_path"];

    fn sample() -> Self {
        Self::full("/s.vmstate", "/s.mem")
    }
}

/// Guest memory backend of a snapshot load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemBackendType {
    /// Memory file mapped privately.
    File,
    /// Userfaultfd handler listening on a Unix socket.
    Uffd,
}

api_enum!(MemBackendType {
    File => "File",
    Uffd => "Uffd",
});

/// `mem_backend` of [`SnapshotLoadParams`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryBackend {
    /// File or Uffd.
    pub backend_type: MemBackendType,
    /// Memory file path, or the UFFD handler's socket path.
    pub backend_path: String,
}

impl ApiModel for MemoryBackend {
    const DEFINITION: &'static str = "MemoryBackend";
    const FIELDS: &'static [&'static str] = &["backend_type", "backend_path"];
    const REQUIRED: &'static [&'static str] = &["backend_type", "backend_path"];

    fn sample() -> Self {
        Self {
            backend_type: MemBackendType::File,
            backend_path: "/s.mem".into(),
        }
    }
}

/// Replaces a network interface's tap when loading a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOverride {
    /// Interface id recorded in the snapshot.
    pub iface_id: String,
    /// New host tap name.
    pub host_dev_name: String,
}

impl ApiModel for NetworkOverride {
    const DEFINITION: &'static str = "NetworkOverride";
    const FIELDS: &'static [&'static str] = &["iface_id", "host_dev_name"];
    const REQUIRED: &'static [&'static str] = &["iface_id", "host_dev_name"];

    fn sample() -> Self {
        Self {
            iface_id: "eth0".into(),
            host_dev_name: "tap1".into(),
        }
    }
}

/// Moves the vsock Unix socket when loading a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockOverride {
    /// New host-side socket path.
    pub uds_path: String,
}

impl ApiModel for VsockOverride {
    const DEFINITION: &'static str = "VsockOverride";
    const FIELDS: &'static [&'static str] = &["uds_path"];
    const REQUIRED: &'static [&'static str] = &["uds_path"];

    fn sample() -> Self {
        Self {
            uds_path: "/v2.sock".into(),
        }
    }
}

/// Page size choice when loading a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SnapshotHugePages {
    /// Use what the snapshot recorded.
    Snapshot,
    /// 4 KiB pages.
    None,
    /// Transparent huge pages.
    Transparent,
    /// 2 MiB hugetlbfs pages.
    #[serde(rename = "2M")]
    Hugetlbfs2M,
}

api_enum!(SnapshotHugePages {
    Snapshot => "Snapshot",
    None => "None",
    Transparent => "Transparent",
    Hugetlbfs2M => "2M",
});

/// Body of `PUT /snapshot/load` (only on a fresh process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLoadParams {
    /// Deprecated alias of `track_dirty_pages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_diff_snapshots: Option<bool>,
    /// Track dirty pages after the load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_dirty_pages: Option<bool>,
    /// Deprecated: memory file path (use `mem_backend`). Exactly one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_file_path: Option<String>,
    /// Guest memory backend. Exactly one of this and `mem_file_path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_backend: Option<MemoryBackend>,
    /// MicroVM state file written by `PUT /snapshot/create`.
    pub snapshot_path: String,
    /// Resume right after loading (otherwise the VM stays `Paused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_vm: Option<bool>,
    /// Taps replacing the recorded ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_overrides: Option<Vec<NetworkOverride>>,
    /// New vsock socket path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock_override: Option<VsockOverride>,
    /// Advance the guest's realtime clock by the time spent saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_realtime: Option<bool>,
    /// Page size to restore with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huge_pages: Option<SnapshotHugePages>,
}

impl SnapshotLoadParams {
    /// Loads `snapshot_path` with memory from the file `mem_file_path`.
    pub fn from_files(snapshot_path: impl Into<String>, mem_file_path: impl Into<String>) -> Self {
        Self {
            enable_diff_snapshots: None,
            track_dirty_pages: None,
            mem_file_path: None,
            mem_backend: Some(MemoryBackend {
                backend_type: MemBackendType::File,
                backend_path: mem_file_path.into(),
            }),
            snapshot_path: snapshot_path.into(),
            resume_vm: None,
            network_overrides: None,
            vsock_override: None,
            clock_realtime: None,
            huge_pages: None,
        }
    }
}

impl ApiModel for SnapshotLoadParams {
    const DEFINITION: &'static str = "SnapshotLoadParams";
    const FIELDS: &'static [&'static str] = &[
        "enable_diff_snapshots",
        "track_dirty_pages",
        "mem_file_path",
        "mem_backend",
        "snapshot_path",
        "resume_vm",
        "network_overrides",
        "vsock_override",
        "clock_realtime",
        "huge_pages",
    ];
    const REQUIRED: &'static [&'static str] = &["snapshot_path"];

    fn sample() -> Self {
        Self {
            enable_diff_snapshots: Some(false),
            track_dirty_pages: Some(true),
            mem_file_path: Some("/s.mem".into()),
            resume_vm: Some(true),
            network_overrides: Some(vec![NetworkOverride::sample()]),
            vsock_override: Some(VsockOverride::sample()),
            clock_realtime: Some(false),
            huge_pages: Some(SnapshotHugePages::Snapshot),
            ..Self::from_files("/s.vmstate", "/s.mem")
        }
    }
}
