//! Firecracker's HTTP API, encoded as Rust types.
//!
//! Each type is one definition of Firecracker's OpenAPI description (same
//! name, except the error body `Error`, called [`FaultBody`]). Field order
//! follows Firecracker's own Rust structs, because serde lists fields in
//! declaration order in the error messages Firecracker returns verbatim.
//! Request bodies deny unknown fields (except [`Metrics`], as Firecracker
//! does), optional fields are `Option`s that are omitted when `None`, and
//! string enums are Rust enums.
//!
//! The types serve both sides: banger's Firecracker client builds request
//! bodies from them, and the simulator (`banger-fcsim`) parses requests with
//! them, so its error messages are the ones Firecracker's serde produces.
//! [`ApiModel`] and [`ApiEnum`] expose field and value lists for the
//! spec-conformance test; [`validate`] holds Firecracker's range checks.
#![warn(missing_docs)]

mod action;
mod balloon;
mod boot;
mod cpu;
mod device;
mod drive;
mod fault;
mod hotplug;
mod instance;
mod logger;
mod mac;
mod machine;
mod metrics;
mod mmds;
pub mod model;
mod net;
mod rate_limiter;
mod snapshot;
pub mod validate;
mod vm;
mod vm_config;
mod vsock;

pub use action::{ActionType, InstanceActionInfo};
pub use balloon::{
    Balloon, BalloonHintingStatus, BalloonStartCmd, BalloonStats, BalloonStatsUpdate, BalloonUpdate,
};
pub use boot::BootSource;
pub use cpu::{
    ArmRegisterModifier, CpuConfig, CpuidLeafModifier, CpuidRegister, CpuidRegisterModifier,
    MsrModifier, VcpuFeatures,
};
pub use device::{EntropyDevice, PartialPmem, Pmem, SerialDevice};
pub use drive::{CacheType, Drive, IoEngine, PartialDrive};
pub use fault::FaultBody;
pub use hotplug::{MemoryHotplugConfig, MemoryHotplugSizeUpdate, MemoryHotplugStatus};
pub use instance::{FirecrackerVersion, InstanceInfo, InstanceState};
pub use logger::{LogLevel, LogLevelError, Logger};
pub use mac::{MacAddr, MacAddrError};
pub use machine::{
    CpuTemplate, DEFAULT_MEM_SIZE_MIB, DEFAULT_VCPU_COUNT, HugePages, MachineConfiguration,
    MachineConfigurationUpdate,
};
pub use metrics::Metrics;
pub use mmds::{MmdsConfig, MmdsVersion};
pub use model::{ApiEnum, ApiModel};
pub use net::{NetworkInterface, PartialNetworkInterface};
pub use rate_limiter::{RateLimiter, TokenBucket};
pub use snapshot::{
    MemBackendType, MemoryBackend, NetworkOverride, SnapshotCreateParams, SnapshotHugePages,
    SnapshotLoadParams, SnapshotType, VsockOverride,
};
pub use validate::{
    InstanceIdError, ValidationError, validate_guest_cid, validate_instance_id,
    validate_mem_size_mib, validate_mtu, validate_resource_id, validate_vcpu_count,
};
pub use vm::{Vm, VmState};
pub use vm_config::{FullVmConfiguration, VmConfig};
pub use vsock::Vsock;
