//! The error body every failed Firecracker API call returns.

use serde::{Deserialize, Serialize};

use crate::model::ApiModel;

/// `{"fault_message": "..."}`, the body of every 400 (and 413) answer.
///
/// The spec calls this definition `Error`; it is named `FaultBody` here so it
/// does not shadow `std::error::Error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultBody {
    /// Human-readable reason, Firecracker's error chain joined by `: `.
    #[serde(default)]
    pub fault_message: String,
}

impl FaultBody {
    /// A fault body carrying `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            fault_message: message.into(),
        }
    }
}

impl ApiModel for FaultBody {
    const DEFINITION: &'static str = "Error";
    const FIELDS: &'static [&'static str] = &["fault_message"];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self::new("Empty PUT request.")
    }
}
