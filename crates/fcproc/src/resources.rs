//! Typed helpers for the Firecracker API resources banger uses.
//!
//! Each helper is one call of [`FirecrackerClient`] with the right method, path and
//! `banger-fcapi` body type. Resource IDs that go into a path (`drive_id`, `iface_id`) are
//! taken from the body, so path and body cannot disagree, and are checked against
//! Firecracker's rule (ASCII letters, digits, `_`) first, so a bad ID can never produce a
//! malformed request line. Anything without a helper goes through the generic
//! [`FirecrackerClient::put`], [`FirecrackerClient::patch`] and [`FirecrackerClient::get`].

use banger_fcapi::{
    BootSource, Drive, FirecrackerVersion, InstanceActionInfo, InstanceInfo, Logger,
    MachineConfiguration, Metrics, NetworkInterface, SnapshotCreateParams, SnapshotLoadParams, Vm,
    Vsock,
};

use crate::client::{FcClientError, FirecrackerClient};

impl FirecrackerClient {
    /// `PUT /machine-config` (pre-boot). Omitted optional fields reset to their defaults.
    pub async fn put_machine_config(
        &self,
        config: &MachineConfiguration,
    ) -> Result<(), FcClientError> {
        self.put("/machine-config", config).await
    }

    /// `PUT /boot-source` (pre-boot). The kernel is opened now and parsed at boot.
    pub async fn put_boot_source(&self, boot_source: &BootSource) -> Result<(), FcClientError> {
        self.put("/boot-source", boot_source).await
    }

    /// `PUT /drives/{drive_id}`. The backing file is opened during the call.
    pub async fn put_drive(&self, drive: &Drive) -> Result<(), FcClientError> {
        check_id("drive", &drive.drive_id)?;
        self.put(&format!("/drives/{}", drive.drive_id), drive)
            .await
    }

    /// `PUT /network-interfaces/{iface_id}`. The tap is opened during the call (and, as
    /// root, silently created if missing).
    pub async fn put_network_interface(
        &self,
        iface: &NetworkInterface,
    ) -> Result<(), FcClientError> {
        check_id("network interface", &iface.iface_id)?;
        self.put(&format!("/network-interfaces/{}", iface.iface_id), iface)
            .await
    }

    /// `PUT /vsock` (pre-boot). Firecracker binds `uds_path` during the call, so the path must
    /// not exist.
    pub async fn put_vsock(&self, vsock: &Vsock) -> Result<(), FcClientError> {
        self.put("/vsock", vsock).await
    }

    /// `PUT /logger`.
    pub async fn put_logger(&self, logger: &Logger) -> Result<(), FcClientError> {
        self.put("/logger", logger).await
    }

    /// `PUT /metrics` (once per process).
    pub async fn put_metrics(&self, metrics: &Metrics) -> Result<(), FcClientError> {
        self.put("/metrics", metrics).await
    }

    /// `PUT /actions {"action_type": "InstanceStart"}`: boots the configured microVM. A 204
    /// means "started", not "booted": readiness must come from the guest. On failure the
    /// process keeps running, unstarted, and the call may be retried.
    pub async fn instance_start(&self) -> Result<(), FcClientError> {
        self.put_action(&InstanceActionInfo::instance_start()).await
    }

    /// `PUT /actions {"action_type": "SendCtrlAltDel"}`: asks the guest to shut down (x86_64,
    /// post-boot; needs the guest's i8042 keyboard driver). See [`crate::graceful_shutdown`].
    pub async fn send_ctrl_alt_del(&self) -> Result<(), FcClientError> {
        self.put_action(&InstanceActionInfo::send_ctrl_alt_del())
            .await
    }

    /// `PUT /actions {"action_type": "FlushMetrics"}` (post-boot).
    pub async fn flush_metrics(&self) -> Result<(), FcClientError> {
        self.put_action(&InstanceActionInfo::flush_metrics()).await
    }

    /// `PUT /actions` with any action.
    pub async fn put_action(&self, action: &InstanceActionInfo) -> Result<(), FcClientError> {
        self.put("/actions", action).await
    }

    /// `PATCH /vm {"state": "Paused"}` (post-boot): stops the vCPUs; only API calls are served
    /// while paused. Pausing a paused VM succeeds.
    pub async fn pause_vm(&self) -> Result<(), FcClientError> {
        self.patch("/vm", &Vm::paused()).await
    }

    /// `PATCH /vm {"state": "Resumed"}` (post-boot). Resuming a running VM succeeds.
    pub async fn resume_vm(&self) -> Result<(), FcClientError> {
        self.patch("/vm", &Vm::resumed()).await
    }

    /// `PUT /snapshot/create`: writes the microVM state and guest memory files. The VM must be
    /// paused (Firecracker refuses "save/restore unavailable while running"); disks are not
    /// copied, the caller copies the disk files while the VM stays paused.
    pub async fn create_snapshot(
        &self,
        params: &SnapshotCreateParams,
    ) -> Result<(), FcClientError> {
        self.put("/snapshot/create", params).await
    }

    /// `PUT /snapshot/load`: only on a fresh process (logger and metrics may come first, nothing
    /// else). A failure is fatal: Firecracker answers 400 and exits 1.
    pub async fn load_snapshot(&self, params: &SnapshotLoadParams) -> Result<(), FcClientError> {
        self.put("/snapshot/load", params).await
    }

    /// `GET /`: instance ID, state and VMM version.
    pub async fn instance_info(&self) -> Result<InstanceInfo, FcClientError> {
        self.get("/").await
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<FirecrackerVersion, FcClientError> {
        self.get("/version").await
    }
}

/// Firecracker's rule for IDs in a path, kept to ASCII so the ID is always a valid URI
/// segment: letters, digits and `_`, at least one.
fn check_id(kind: &'static str, id: &str) -> Result<(), FcClientError> {
    let valid = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(FcClientError::InvalidResourceId {
            kind,
            id: id.to_owned(),
        })
    }
}
