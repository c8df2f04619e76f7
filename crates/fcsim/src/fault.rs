//! A failed API call: status and Firecracker's `fault_message`.
//!
//! Messages recorded from real Firecracker (OBSERVED.md) are reproduced
//! verbatim. Where no recording exists, the text follows Firecracker's error
//! chain style (`Category error: detail`) and is marked "approximate" at its
//! construction site.

use std::fmt;

/// Prefix of every body-deserialization error.
const SERDE_PREFIX: &str = "An error occurred when deserializing the json body of a request: ";

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// HTTP status (400, or 413 for an oversized MMDS store).
    pub status: u16,
    /// The `fault_message`.
    pub message: String,
}

impl Fault {
    /// A 400 with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
        }
    }

    /// A serde error on the request body.
    pub fn serde(err: &serde_json::Error) -> Self {
        Self::bad_request(format!("{SERDE_PREFIX}{err}."))
    }

    /// A custom body error without position (Firecracker's `serde_json::Error::custom`).
    pub fn serde_custom(message: &str) -> Self {
        Self::bad_request(format!("{SERDE_PREFIX}{message}."))
    }

    /// Unknown method/path combination. `first_token` is the path's first segment.
    pub fn invalid_path_method(method: &str, first_token: &str) -> Self {
        Self::bad_request(format!(
            "Invalid request method and/or path: {method} {first_token}."
        ))
    }

    /// A post-boot-only call before InstanceStart.
    pub fn not_supported_pre_boot() -> Self {
        Self::bad_request("The requested operation is not supported before starting the microVM.")
    }

    /// A pre-boot-only call after InstanceStart.
    pub fn not_supported_post_boot() -> Self {
        Self::bad_request("The requested operation is not supported after starting the microVM.")
    }

    /// Path id and body id differ (drives and pmem wording).
    pub fn id_mismatch() -> Self {
        Self::bad_request("The id from the path does not match the id from the body!")
    }

    /// Path id and body id differ (network interface wording).
    pub fn net_id_mismatch(path_id: &str, body_id: &str) -> Self {
        Self::bad_request(format!(
            "The id from the path [{path_id}] does not match the id from the body [{body_id}]!"
        ))
    }

    /// The JSON `{"fault_message": ...}` body.
    pub fn body(&self) -> String {
        serde_json::json!({ "fault_message": self.message }).to_string()
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<banger_fcapi::ValidationError> for Fault {
    fn from(err: banger_fcapi::ValidationError) -> Self {
        Self::bad_request(err.to_string())
    }
}
