//! Snapshot files: what `PUT /snapshot/create` writes and `/snapshot/load` reads.
//!
//! The state file is the simulator's own JSON (not Firecracker's format): the
//! full configuration at snapshot time, so a load on a fresh simulator
//! restores the same devices. The memory file is a sparse file of guest
//! memory size, as Firecracker's is that size. Only the "while running"
//! refusal was recorded; other error texts are approximate.
//!
//! With the QEMU front the memory file is QEMU's migration stream instead
//! (RAM and device state, `qemu::migrate`), and the state file also holds
//! the exact kernel command line QEMU ran with (`qemu_cmdline`), which the
//! incoming QEMU must be started with again.

use std::fs::{File, OpenOptions};
use std::io::Write;

use banger_fcapi::{
    FullVmConfiguration, MemBackendType, SnapshotCreateParams, SnapshotLoadParams, SnapshotType,
};
use serde::{Deserialize, Serialize};

use crate::fault::Fault;

/// Format tag of simulator state files.
const FORMAT: &str = "banger-fcsim-snapshot-v1";

/// Contents of a simulator state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotState {
    /// Always [`FORMAT`].
    pub format: String,
    /// `--id` of the process that created it.
    pub instance_id: String,
    /// Full or diff.
    pub snapshot_type: SnapshotType,
    /// Configuration at snapshot time.
    pub config: FullVmConfiguration,
    /// The QEMU front's kernel command line (`None`: the simulated guest's snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_cmdline: Option<String>,
}

fn create_error(what: &str, e: std::io::Error) -> Fault {
    Fault::bad_request(format!(
        "Create snapshot error: Cannot perform {what} on the snapshot backing file: {e}"
    ))
}

/// Writes the state and memory files (the VM must already be paused).
pub fn create(
    params: &SnapshotCreateParams,
    instance_id: &str,
    config: FullVmConfiguration,
) -> Result<(), Fault> {
    let mem_size_mib = config.machine_config.as_ref().map_or(0, |m| m.mem_size_mib);
    write_state(params, instance_id, config, None)?;
    let mem = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&params.mem_file_path)
        .map_err(|e| {
            Fault::bad_request(format!(
                "Create snapshot error: Cannot write memory file: {e}"
            ))
        })?;
    mem.set_len((mem_size_mib as u64) << 20).map_err(|e| {
        Fault::bad_request(format!(
            "Create snapshot error: Cannot write memory file: {e}"
        ))
    })?;
    Ok(())
}

/// Writes the state file.
pub fn write_state(
    params: &SnapshotCreateParams,
    instance_id: &str,
    config: FullVmConfiguration,
    qemu_cmdline: Option<String>,
) -> Result<(), Fault> {
    let state = SnapshotState {
        format: FORMAT.into(),
        instance_id: instance_id.into(),
        snapshot_type: params.snapshot_type.unwrap_or_default(),
        config,
        qemu_cmdline,
    };
    let text = serde_json::to_vec_pretty(&state).map_err(|e| Fault::bad_request(e.to_string()))?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&params.snapshot_path)
        .map_err(|e| create_error("open", e))?;
    file.write_all(&text).map_err(|e| create_error("write", e))
}

fn load_error(detail: String) -> Fault {
    Fault::bad_request(format!(
        "Load snapshot error: Failed to restore from snapshot: {detail}"
    ))
}

/// Reads and checks the files named by a load request.
pub fn read(params: &SnapshotLoadParams) -> Result<SnapshotState, Fault> {
    let text = std::fs::read(&params.snapshot_path).map_err(|e| {
        load_error(format!(
            "Failed to get snapshot state from file: Failed to open snapshot file: {e}"
        ))
    })?;
    let state: SnapshotState = serde_json::from_slice(&text)
        .ok()
        .filter(|s: &SnapshotState| s.format == FORMAT)
        .ok_or_else(|| {
            load_error("Failed to get snapshot state from file: Failed to load snapshot state from file: Invalid data".into())
        })?;
    let (backend_type, backend_path) = match (&params.mem_backend, &params.mem_file_path) {
        (Some(backend), _) => (backend.backend_type, backend.backend_path.as_str()),
        (None, Some(path)) => (MemBackendType::File, path.as_str()),
        (None, None) => missing_backend()?,
    };
    let mem_size_mib = state
        .config
        .machine_config
        .as_ref()
        .map_or(0, |m| m.mem_size_mib);
    match backend_type {
        MemBackendType::File => {
            let len = File::open(backend_path)
                .and_then(|f| f.metadata())
                .map_err(|e| load_error(format!("Failed to load guest memory: {e}")))?
                .len();
            // A migration stream (QEMU front) is not the size of the memory.
            if state.qemu_cmdline.is_none() && len < (mem_size_mib as u64) << 20 {
                return Err(load_error(format!(
                    "Failed to load guest memory: the memory file is smaller than the snapshot's {mem_size_mib} MiB"
                )));
            }
        }
        MemBackendType::Uffd => {
            std::fs::metadata(backend_path).map_err(|e| {
                load_error(format!("Failed to connect to the UFFD handler socket: {e}"))
            })?;
        }
    }
    Ok(state)
}

/// The router refuses a load without a backend before it gets here.
fn missing_backend() -> Result<(MemBackendType, &'static str), Fault> {
    Err(Fault::serde_custom(
        "missing field: either `mem_backend` or `mem_file_path` is required",
    ))
}
