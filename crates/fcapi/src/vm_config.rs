//! `GET /vm/config`: the whole configuration in one document.

use serde::{Deserialize, Serialize};

use crate::balloon::Balloon;
use crate::boot::BootSource;
use crate::cpu::CpuConfig;
use crate::device::{EntropyDevice, Pmem};
use crate::drive::Drive;
use crate::hotplug::MemoryHotplugConfig;
use crate::logger::Logger;
use crate::machine::MachineConfiguration;
use crate::metrics::Metrics;
use crate::mmds::MmdsConfig;
use crate::model::ApiModel;
use crate::net::NetworkInterface;
use crate::vsock::Vsock;

/// Body of `GET /vm/config` (the spec's `FullVmConfiguration`).
///
/// Unlike request bodies, unset members are serialized as `null` (lists as
/// `[]`), which is what Firecracker sends. Firecracker always reports
/// `logger` and `metrics` as `null`, and `boot-source` as
/// `{"kernel_image_path": ""}` when none was configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullVmConfiguration {
    /// The balloon device.
    #[serde(default)]
    pub balloon: Option<Balloon>,
    /// Block devices, root first.
    #[serde(default)]
    pub drives: Vec<Drive>,
    /// Kernel, initrd and command line.
    #[serde(default, rename = "boot-source")]
    pub boot_source: Option<BootSource>,
    /// Custom CPU template.
    #[serde(default, rename = "cpu-config")]
    pub cpu_config: Option<CpuConfig>,
    /// Logger (always `null` in Firecracker's answer).
    #[serde(default)]
    pub logger: Option<Logger>,
    /// vCPUs and memory.
    #[serde(default, rename = "machine-config")]
    pub machine_config: Option<MachineConfiguration>,
    /// Metrics (always `null` in Firecracker's answer).
    #[serde(default)]
    pub metrics: Option<Metrics>,
    /// MMDS configuration.
    #[serde(default, rename = "mmds-config")]
    pub mmds_config: Option<MmdsConfig>,
    /// Network interfaces in insertion order.
    #[serde(default, rename = "network-interfaces")]
    pub network_interfaces: Vec<NetworkInterface>,
    /// The vsock device.
    #[serde(default)]
    pub vsock: Option<Vsock>,
    /// The entropy device.
    #[serde(default)]
    pub entropy: Option<EntropyDevice>,
    /// pmem devices.
    #[serde(default)]
    pub pmem: Vec<Pmem>,
    /// The memory hotplug device.
    #[serde(default, rename = "memory-hotplug")]
    pub memory_hotplug: Option<MemoryHotplugConfig>,
}

/// Short name used by banger for [`FullVmConfiguration`].
pub type VmConfig = FullVmConfiguration;

impl ApiModel for FullVmConfiguration {
    const DEFINITION: &'static str = "FullVmConfiguration";
    const FIELDS: &'static [&'static str] = &[
        "balloon",
        "drives",
        "boot-source",
        "cpu-config",
        "logger",
        "machine-config",
        "metrics",
        "mmds-config",
        "network-interfaces",
        "vsock",
        "entropy",
        "pmem",
        "memory-hotplug",
    ];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            balloon: Some(Balloon::sample()),
            drives: vec![Drive::sample()],
            boot_source: Some(BootSource::sample()),
            cpu_config: Some(CpuConfig::sample()),
            logger: Some(Logger::sample()),
            machine_config: Some(MachineConfiguration::sample()),
            metrics: Some(Metrics::sample()),
            mmds_config: Some(MmdsConfig::sample()),
            network_interfaces: vec![NetworkInterface::sample()],
            vsock: Some(Vsock::sample()),
            entropy: Some(EntropyDevice::sample()),
            pmem: vec![Pmem::sample()],
            memory_hotplug: Some(MemoryHotplugConfig::sample()),
        }
    }
}
