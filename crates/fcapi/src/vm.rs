//! `PATCH /vm`: pause and resume.

use serde::{Deserialize, Serialize};

use crate::model::{ApiModel, api_enum};

/// Requested vCPU state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VmState {
    /// Pause the vCPUs (required before `PUT /snapshot/create`).
    Paused,
    /// Resume the vCPUs.
    Resumed,
}

api_enum!(VmState {
    Paused => "Paused",
    Resumed => "Resumed",
});

/// Body of `PATCH /vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// Target state.
    pub state: VmState,
}

impl Vm {
    /// `{"state": "Paused"}`.
    pub fn paused() -> Self {
        Self {
            state: VmState::Paused,
        }
    }

    /// `{"state": "Resumed"}`.
    pub fn resumed() -> Self {
        Self {
            state: VmState::Resumed,
        }
    }
}

impl ApiModel for Vm {
    const DEFINITION: &'static str = "Vm";
    const FIELDS: &'static [&'static str] = &["state"];
    const REQUIRED: &'static [&'static str] = &["state"];

    fn sample() -> Self {
        Self::paused()
    }
}
