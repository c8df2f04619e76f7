//! `GET /` and `GET /version`: who the Firecracker process is.

use serde::{Deserialize, Serialize};

use crate::model::{ApiModel, api_enum};

/// Lifecycle state of the microVM as reported by `GET /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstanceState {
    /// Configurable; `InstanceStart` has not succeeded yet.
    #[serde(rename = "Not started")]
    NotStarted,
    /// Booted and vCPUs running.
    Running,
    /// Booted, vCPUs paused (`PATCH /vm {"state": "Paused"}` or a snapshot load).
    Paused,
}

api_enum!(InstanceState {
    NotStarted => "Not started",
    Running => "Running",
    Paused => "Paused",
});

/// Body of `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceInfo {
    /// The `--id` the process was started with (`anonymous-instance` by default).
    pub id: String,
    /// Current lifecycle state.
    pub state: InstanceState,
    /// Firecracker's version, e.g. `1.17.0-dev`.
    pub vmm_version: String,
    /// Always `Firecracker`.
    pub app_name: String,
}

impl ApiModel for InstanceInfo {
    const DEFINITION: &'static str = "InstanceInfo";
    const FIELDS: &'static [&'static str] = &["id", "state", "vmm_version", "app_name"];
    const REQUIRED: &'static [&'static str] = &["id", "state", "vmm_version", "app_name"];

    fn sample() -> Self {
        Self {
            id: "vm1".into(),
            state: InstanceState::NotStarted,
            vmm_version: "1.17.0-dev".into(),
            app_name: "Firecracker".into(),
        }
    }
}

/// Body of `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirecrackerVersion {
    /// Firecracker's version, e.g. `1.17.0-dev`.
    pub firecracker_version: String,
}

impl ApiModel for FirecrackerVersion {
    const DEFINITION: &'static str = "FirecrackerVersion";
    const FIELDS: &'static [&'static str] = &["firecracker_version"];
    const REQUIRED: &'static [&'static str] = &["firecracker_version"];

    fn sample() -> Self {
        Self {
            firecracker_version: "1.17.0-dev".into(),
        }
    }
}
