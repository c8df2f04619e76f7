//! `PUT /actions`: the three instance actions.

use serde::{Deserialize, Serialize};

use crate::model::{ApiModel, api_enum};

/// The action requested by `PUT /actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActionType {
    /// Write the metrics now (post-boot only).
    FlushMetrics,
    /// Boot the configured microVM (pre-boot only, once).
    InstanceStart,
    /// Press Ctrl+Alt+Del on the guest's i8042 keyboard (x86_64, post-boot only).
    SendCtrlAltDel,
}

api_enum!(ActionType {
    FlushMetrics => "FlushMetrics",
    InstanceStart => "InstanceStart",
    SendCtrlAltDel => "SendCtrlAltDel",
});

/// Body of `PUT /actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceActionInfo {
    /// The action to perform.
    pub action_type: ActionType,
}

impl InstanceActionInfo {
    /// An action body for `action_type`.
    pub fn new(action_type: ActionType) -> Self {
        Self { action_type }
    }

    /// `{"action_type": "InstanceStart"}`.
    pub fn instance_start() -> Self {
        Self::new(ActionType::InstanceStart)
    }

    /// `{"action_type": "SendCtrlAltDel"}`.
    pub fn send_ctrl_alt_del() -> Self {
        Self::new(ActionType::SendCtrlAltDel)
    }

    /// `{"action_type": "FlushMetrics"}`.
    pub fn flush_metrics() -> Self {
        Self::new(ActionType::FlushMetrics)
    }
}

impl ApiModel for InstanceActionInfo {
    const DEFINITION: &'static str = "InstanceActionInfo";
    const FIELDS: &'static [&'static str] = &["action_type"];
    const REQUIRED: &'static [&'static str] = &["action_type"];

    fn sample() -> Self {
        Self::instance_start()
    }
}
