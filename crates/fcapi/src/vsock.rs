//! `PUT /vsock`: the virtio-vsock device and its host-side Unix socket.

use serde::{Deserialize, Serialize};

use crate::model::ApiModel;

/// Body of `PUT /vsock`, and `GET /vm/config`'s `vsock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vsock {
    /// Deprecated device id, ignored by Firecracker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vsock_id: Option<String>,
    /// Guest context id (spec minimum 3; see [`crate::validate_guest_cid`]).
    pub guest_cid: u32,
    /// Host path Firecracker binds and listens on at this call.
    pub uds_path: String,
}

impl Vsock {
    /// A vsock device with context id `guest_cid` listening on `uds_path`.
    pub fn new(guest_cid: u32, uds_path: impl Into<String>) -> Self {
        Self {
            vsock_id: None,
            guest_cid,
            uds_path: uds_path.into(),
        }
    }
}

impl ApiModel for Vsock {
    const DEFINITION: &'static str = "Vsock";
    const FIELDS: &'static [&'static str] = &["vsock_id", "guest_cid", "uds_path"];
    const REQUIRED: &'static [&'static str] = &["guest_cid", "uds_path"];

    fn sample() -> Self {
        Self {
            vsock_id: Some("vsock0".into()),
            ..Self::new(3, "/v.sock")
        }
    }
}
