//! Request parsing: method, path and body to an [`ApiCall`], as Firecracker's
//! `parsed_request.rs` does it.
//!
//! The rules that shape the error texts:
//! 1. The path is split on `/` after trimming leading slashes; only the first
//!    segment selects the resource (so `/machine-config/` works and an unknown
//!    path reports just its first segment: `GET nosuch.`).
//! 2. An empty body counts as no body: `PUT`/`PATCH` without one is "Empty PUT
//!    request." / "Empty PATCH request.", a `GET` with one is refused.
//! 3. A path id is validated before the body is parsed, and compared with the
//!    body's id after.
//! 4. Bodies are parsed with the `banger-fcapi` models, so serde's messages
//!    (unknown field lists, missing fields, variants) are Firecracker's.

use banger_fcapi::{
    ActionType, Balloon, BalloonStartCmd, BalloonStatsUpdate, BalloonUpdate, BootSource, CpuConfig,
    Drive, EntropyDevice, InstanceActionInfo, Logger, MachineConfiguration,
    MachineConfigurationUpdate, MemoryHotplugConfig, MemoryHotplugSizeUpdate, Metrics, MmdsConfig,
    NetworkInterface, PartialDrive, PartialNetworkInterface, PartialPmem, Pmem, SerialDevice,
    SnapshotCreateParams, SnapshotLoadParams, Vm, VmState, Vsock, validate_resource_id,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::fault::Fault;

/// HTTP methods Firecracker's server understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// PUT.
    Put,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Method {
    /// Parses an HTTP method name; `None` for methods Firecracker refuses (POST, HEAD, ...).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "GET" => Some(Self::Get),
            "PUT" => Some(Self::Put),
            "PATCH" => Some(Self::Patch),
            "DELETE" => Some(Self::Delete),
            _ => None,
        }
    }

    /// Upper-case name, as in "Invalid request method and/or path: GET ...".
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }

    /// Firecracker's `Debug` spelling, used in its request log lines.
    pub fn debug_name(self) -> &'static str {
        match self {
            Self::Get => "Get",
            Self::Put => "Put",
            Self::Patch => "Patch",
            Self::Delete => "Delete",
        }
    }
}

/// A device kind that `DELETE` (hot-unplug) addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// `/drives/{id}`.
    Block,
    /// `/network-interfaces/{id}`.
    Net,
    /// `/pmem/{id}`.
    Pmem,
}

/// One parsed API call.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiCall {
    /// `GET /`.
    GetInstanceInfo,
    /// `GET /version`.
    GetVersion,
    /// `GET /vm/config`.
    GetVmConfig,
    /// `GET /machine-config`.
    GetMachineConfig,
    /// `GET /mmds`.
    GetMmds,
    /// `GET /balloon`.
    GetBalloon,
    /// `GET /balloon/statistics`.
    GetBalloonStats,
    /// `GET /balloon/hinting/status`.
    GetBalloonHinting,
    /// `GET /hotplug/memory`.
    GetMemoryHotplug,
    /// `PUT /actions`.
    Action(ActionType),
    /// `PUT /balloon`.
    PutBalloon(Balloon),
    /// `PUT /boot-source`.
    PutBootSource(BootSource),
    /// `PUT /cpu-config`.
    PutCpuConfig(CpuConfig),
    /// `PUT /drives/{id}`.
    PutDrive(Drive),
    /// `PUT /pmem/{id}`.
    PutPmem(Pmem),
    /// `PUT /logger`.
    PutLogger(Logger),
    /// `PUT /serial`.
    PutSerial(SerialDevice),
    /// `PUT` (full) or `PATCH` (partial) `/machine-config`.
    UpdateMachineConfig(MachineConfigurationUpdate),
    /// `PUT /metrics`.
    PutMetrics(Metrics),
    /// `PUT /mmds`.
    PutMmds(Value),
    /// `PUT /mmds/config`.
    PutMmdsConfig(MmdsConfig),
    /// `PUT /network-interfaces/{id}`.
    PutNet(NetworkInterface),
    /// `PUT /snapshot/create`.
    CreateSnapshot(SnapshotCreateParams),
    /// `PUT /snapshot/load`.
    LoadSnapshot(SnapshotLoadParams),
    /// `PUT /vsock`.
    PutVsock(Vsock),
    /// `PUT /entropy`.
    PutEntropy(EntropyDevice),
    /// `PUT /hotplug/memory`.
    PutMemoryHotplug(MemoryHotplugConfig),
    /// `PATCH /balloon`.
    PatchBalloon(BalloonUpdate),
    /// `PATCH /balloon/statistics`.
    PatchBalloonStats(BalloonStatsUpdate),
    /// `PATCH /balloon/hinting/start`.
    StartHinting(BalloonStartCmd),
    /// `PATCH /balloon/hinting/stop`.
    StopHinting,
    /// `PATCH /drives/{id}`.
    PatchDrive(PartialDrive),
    /// `PATCH /mmds`.
    PatchMmds(Value),
    /// `PATCH /network-interfaces/{id}`.
    PatchNet(PartialNetworkInterface),
    /// `PATCH /pmem/{id}`.
    PatchPmem(PartialPmem),
    /// `PATCH /vm`.
    PatchVm(VmState),
    /// `PATCH /hotplug/memory`.
    PatchMemoryHotplug(MemoryHotplugSizeUpdate),
    /// `DELETE /{drives,network-interfaces,pmem}/{id}`.
    Unplug(DeviceKind, String),
}

fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Fault> {
    serde_json::from_slice(body).map_err(|e| Fault::serde(&e))
}

/// Validates the id taken from the path (before the body is parsed).
fn path_id(id: Option<&str>) -> Result<String, Fault> {
    let id = id.unwrap_or("");
    validate_resource_id(id)?;
    Ok(id.to_string())
}

/// Parses one request. `body` is `None` when the request had no (or an empty) body.
pub fn parse(method: Method, path: &str, body: Option<&[u8]>) -> Result<ApiCall, Fault> {
    let mut tokens = path.trim_start_matches('/').split_terminator('/');
    let first = tokens.next().unwrap_or("");
    let second = tokens.next();
    use Method::{Delete, Get, Patch, Put};
    match (method, first, body) {
        (Get, "", None) => Ok(ApiCall::GetInstanceInfo),
        (Get, "balloon", None) => match (second, tokens.next()) {
            (None, _) => Ok(ApiCall::GetBalloon),
            (Some("statistics"), _) => Ok(ApiCall::GetBalloonStats),
            (Some("hinting"), Some("status")) => Ok(ApiCall::GetBalloonHinting),
            (Some("hinting"), other) => Err(Fault::bad_request(format!(
                "Unrecognized GET request path `/hinting/{}`.",
                other.unwrap_or("")
            ))),
            (Some(other), _) => Err(Fault::bad_request(format!(
                "Unrecognized GET request path `{other}`."
            ))),
        },
        (Get, "version", None) => Ok(ApiCall::GetVersion),
        (Get, "vm", None) if second == Some("config") => Ok(ApiCall::GetVmConfig),
        (Get, "machine-config", None) => Ok(ApiCall::GetMachineConfig),
        (Get, "mmds", None) => Ok(ApiCall::GetMmds),
        (Get, "hotplug", None) if second == Some("memory") => Ok(ApiCall::GetMemoryHotplug),
        (Get, _, Some(_)) => Err(Fault::bad_request("GET request cannot have a body.")),
        (Put, _, Some(body)) => parse_put(first, second, body),
        (Put, _, None) => Err(Fault::bad_request("Empty PUT request.")),
        (Patch, "balloon", _) => parse_patch_balloon(second, tokens.next(), body),
        (Patch, _, Some(body)) => parse_patch(first, second, body),
        (Patch, _, None) => Err(Fault::bad_request("Empty PATCH request.")),
        (Delete, "drives", None) => Ok(ApiCall::Unplug(DeviceKind::Block, path_id(second)?)),
        (Delete, "network-interfaces", None) => {
            Ok(ApiCall::Unplug(DeviceKind::Net, path_id(second)?))
        }
        (Delete, "pmem", None) => Ok(ApiCall::Unplug(DeviceKind::Pmem, path_id(second)?)),
        (Delete, _, Some(_)) => Err(Fault::bad_request("Empty Delete request.")),
        (method, first, _) => Err(Fault::invalid_path_method(method.as_str(), first)),
    }
}

fn parse_put(first: &str, second: Option<&str>, body: &[u8]) -> Result<ApiCall, Fault> {
    match first {
        "actions" => Ok(ApiCall::Action(
            json::<InstanceActionInfo>(body)?.action_type,
        )),
        "balloon" => Ok(ApiCall::PutBalloon(json(body)?)),
        "boot-source" => Ok(ApiCall::PutBootSource(json(body)?)),
        "cpu-config" => Ok(ApiCall::PutCpuConfig(json(body)?)),
        "drives" => {
            let id = path_id(second)?;
            let drive: Drive = json(body)?;
            if drive.drive_id != id {
                return Err(Fault::id_mismatch());
            }
            Ok(ApiCall::PutDrive(drive))
        }
        "pmem" => {
            let id = path_id(second)?;
            let pmem: Pmem = json(body)?;
            if pmem.id != id {
                return Err(Fault::id_mismatch());
            }
            Ok(ApiCall::PutPmem(pmem))
        }
        "logger" => Ok(ApiCall::PutLogger(json(body)?)),
        "serial" => Ok(ApiCall::PutSerial(json(body)?)),
        "machine-config" => {
            let cfg: MachineConfiguration = json(body)?;
            Ok(ApiCall::UpdateMachineConfig((&cfg).into()))
        }
        "metrics" => Ok(ApiCall::PutMetrics(json(body)?)),
        "mmds" => match second {
            None => Ok(ApiCall::PutMmds(json(body)?)),
            Some("config") => Ok(ApiCall::PutMmdsConfig(json(body)?)),
            Some(other) => Err(Fault::bad_request(format!(
                "Unrecognized PUT request path `{other}`."
            ))),
        },
        "network-interfaces" => {
            let id = path_id(second)?;
            let iface: NetworkInterface = json(body)?;
            if iface.iface_id != id {
                return Err(Fault::net_id_mismatch(&id, &iface.iface_id));
            }
            Ok(ApiCall::PutNet(iface))
        }
        "snapshot" => match second {
            Some("create") => Ok(ApiCall::CreateSnapshot(json(body)?)),
            Some("load") => {
                let params: SnapshotLoadParams = json(body)?;
                match (&params.mem_backend, &params.mem_file_path) {
                    (Some(_), Some(_)) => Err(Fault::serde_custom(
                        "too many fields: either `mem_backend` or `mem_file_path` exclusively is required",
                    )),
                    (None, None) => Err(Fault::serde_custom(
                        "missing field: either `mem_backend` or `mem_file_path` is required",
                    )),
                    _ => Ok(ApiCall::LoadSnapshot(params)),
                }
            }
            Some(other) => Err(Fault::invalid_path_method(
                "PUT",
                &format!("/snapshot/{other}"),
            )),
            None => Err(Fault::bad_request("Missing snapshot operation type.")),
        },
        "vsock" => Ok(ApiCall::PutVsock(json(body)?)),
        "entropy" => Ok(ApiCall::PutEntropy(json(body)?)),
        "hotplug" if second == Some("memory") => Ok(ApiCall::PutMemoryHotplug(json(body)?)),
        other => Err(Fault::invalid_path_method("PUT", other)),
    }
}

fn parse_patch(first: &str, second: Option<&str>, body: &[u8]) -> Result<ApiCall, Fault> {
    match first {
        "drives" => {
            let id = path_id(second)?;
            let update: PartialDrive = json(body)?;
            if update.drive_id != id {
                return Err(Fault::id_mismatch());
            }
            Ok(ApiCall::PatchDrive(update))
        }
        "machine-config" => {
            let update: MachineConfigurationUpdate = json(body)?;
            if update.is_empty() {
                return Err(Fault::bad_request("Empty PATCH request."));
            }
            Ok(ApiCall::UpdateMachineConfig(update))
        }
        "mmds" => Ok(ApiCall::PatchMmds(json(body)?)),
        "network-interfaces" => {
            let id = path_id(second)?;
            let update: PartialNetworkInterface = json(body)?;
            if update.iface_id != id {
                return Err(Fault::net_id_mismatch(&id, &update.iface_id));
            }
            Ok(ApiCall::PatchNet(update))
        }
        "pmem" => {
            let id = path_id(second)?;
            let update: PartialPmem = json(body)?;
            if update.id != id {
                return Err(Fault::id_mismatch());
            }
            Ok(ApiCall::PatchPmem(update))
        }
        "vm" => Ok(ApiCall::PatchVm(json::<Vm>(body)?.state)),
        "hotplug" if second == Some("memory") => Ok(ApiCall::PatchMemoryHotplug(json(body)?)),
        other => Err(Fault::invalid_path_method("PATCH", other)),
    }
}

fn parse_patch_balloon(
    second: Option<&str>,
    third: Option<&str>,
    body: Option<&[u8]>,
) -> Result<ApiCall, Fault> {
    match (second, body) {
        (Some("statistics"), Some(body)) => Ok(ApiCall::PatchBalloonStats(json(body)?)),
        (Some("hinting"), body) => match third {
            Some("start") => Ok(ApiCall::StartHinting(match body {
                Some(body) => json(body)?,
                None => BalloonStartCmd::default(),
            })),
            Some("stop") => Ok(ApiCall::StopHinting),
            other => Err(Fault::bad_request(format!(
                "Unrecognized PATCH request path `/hinting/{}`.",
                other.unwrap_or("")
            ))),
        },
        (_, Some(body)) => Ok(ApiCall::PatchBalloon(json(body)?)),
        (_, None) => Err(Fault::bad_request("Empty PATCH request.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(method: Method, path: &str, body: Option<&str>) -> String {
        parse(method, path, body.map(str::as_bytes))
            .unwrap_err()
            .message
    }

    #[test]
    fn unknown_paths_report_the_first_segment() {
        assert_eq!(
            err(Method::Get, "/nosuch", None),
            "Invalid request method and/or path: GET nosuch."
        );
        assert_eq!(
            err(Method::Put, "/", Some("{}")),
            "Invalid request method and/or path: PUT ."
        );
        assert_eq!(
            err(Method::Get, "/drives/x", None),
            "Invalid request method and/or path: GET drives."
        );
    }

    #[test]
    fn trailing_slash_and_empty_bodies() {
        assert_eq!(
            parse(Method::Get, "/machine-config/", None),
            Ok(ApiCall::GetMachineConfig)
        );
        assert_eq!(err(Method::Put, "/actions", None), "Empty PUT request.");
        assert_eq!(
            err(Method::Patch, "/machine-config", Some("{}")),
            "Empty PATCH request."
        );
    }

    #[test]
    fn path_id_is_checked_before_the_body() {
        assert_eq!(
            err(Method::Put, "/drives/root-fs", Some("not json")),
            "API Resource IDs can only contain alphanumeric characters and underscores."
        );
        assert_eq!(
            err(
                Method::Put,
                "/network-interfaces/eth0",
                Some(r#"{"iface_id":"eth1","host_dev_name":"t"}"#)
            ),
            "The id from the path [eth0] does not match the id from the body [eth1]!"
        );
    }
}
