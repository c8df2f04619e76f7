//! `PUT /metrics`: the metrics sink (configurable once per process).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::ApiModel;

/// Body of `PUT /metrics`.
///
/// Unlike every other body, Firecracker accepts unknown fields here (an extra
/// key was answered 204, see OBSERVED.md), so this type does not deny them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// Metrics file or FIFO (one JSON object per line).
    pub metrics_path: String,
    /// Add the instance id to every metrics line. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit_id: Option<bool>,
    /// Extra string properties added to every metrics line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, String>>,
}

impl Metrics {
    /// Metrics written to `metrics_path`.
    pub fn new(metrics_path: impl Into<String>) -> Self {
        Self {
            metrics_path: metrics_path.into(),
            emit_id: None,
            properties: None,
        }
    }
}

impl ApiModel for Metrics {
    const DEFINITION: &'static str = "Metrics";
    const FIELDS: &'static [&'static str] = &["metrics_path", "emit_id", "properties"];
    const REQUIRED: &'static [&'static str] = &["metrics_path"];
    const DENIES_UNKNOWN: bool = false;

    fn sample() -> Self {
        Self {
            metrics_path: "/m.json".into(),
            emit_id: Some(true),
            properties: Some(BTreeMap::from([("host".to_string(), "h1".to_string())])),
        }
    }
}
