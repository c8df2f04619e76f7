//! `PUT`/`PATCH`/`GET /machine-config`: vCPUs, memory and page size.

use serde::{Deserialize, Serialize};

use crate::model::{ApiModel, api_enum};
use crate::validate::{ValidationError, validate_mem_size_mib, validate_vcpu_count};

/// Firecracker's default vCPU count (`GET /machine-config` before any `PUT`).
pub const DEFAULT_VCPU_COUNT: u8 = 1;
/// Firecracker's default memory size in MiB.
pub const DEFAULT_MEM_SIZE_MIB: usize = 128;

/// Static CPU template (deprecated in Firecracker in favour of `PUT /cpu-config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CpuTemplate {
    /// Intel Cascade Lake/Ice Lake C3 template.
    C3,
    /// T2 template.
    T2,
    /// T2S template.
    T2S,
    /// T2CL template.
    T2CL,
    /// T2A template (AMD).
    T2A,
    /// V1N1 template (aarch64).
    V1N1,
    /// No template.
    None,
}

api_enum!(CpuTemplate {
    C3 => "C3",
    T2 => "T2",
    T2S => "T2S",
    T2CL => "T2CL",
    T2A => "T2A",
    V1N1 => "V1N1",
    None => "None",
});

/// Page size backing guest memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HugePages {
    /// Regular 4 KiB pages.
    #[default]
    None,
    /// Transparent huge pages.
    Transparent,
    /// 2 MiB hugetlbfs pages.
    #[serde(rename = "2M")]
    Hugetlbfs2M,
}

api_enum!(HugePages {
    None => "None",
    Transparent => "Transparent",
    Hugetlbfs2M => "2M",
});

/// Body of `PUT /machine-config` and of `GET /machine-config`.
///
/// On `PUT`, omitted optional fields reset to their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfiguration {
    /// Number of vCPUs, 1..=32 (1 or even when `smt`).
    pub vcpu_count: u8,
    /// Guest memory in MiB.
    pub mem_size_mib: usize,
    /// Simultaneous multithreading (x86_64 only). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smt: Option<bool>,
    /// Deprecated static CPU template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_template: Option<CpuTemplate>,
    /// Track dirty pages (needed for diff snapshots). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_dirty_pages: Option<bool>,
    /// Page size backing guest memory. Default `None` (4 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huge_pages: Option<HugePages>,
}

impl MachineConfiguration {
    /// A configuration with `vcpu_count` vCPUs and `mem_size_mib` MiB, other fields unset.
    pub fn new(vcpu_count: u8, mem_size_mib: usize) -> Self {
        Self {
            vcpu_count,
            mem_size_mib,
            smt: None,
            cpu_template: None,
            track_dirty_pages: None,
            huge_pages: None,
        }
    }

    /// Fills every unset optional field with Firecracker's default, as `GET` shows it.
    pub fn with_defaults(mut self) -> Self {
        self.smt.get_or_insert(false);
        self.track_dirty_pages.get_or_insert(false);
        self.huge_pages.get_or_insert(HugePages::None);
        self
    }

    /// Checks the vCPU count and memory size the way Firecracker does.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_vcpu_count(self.vcpu_count, self.smt.unwrap_or(false))?;
        validate_mem_size_mib(self.mem_size_mib, self.huge_pages.unwrap_or_default())
    }

    /// Applies a `PATCH` on top of this configuration (without validating).
    pub fn apply(&self, update: &MachineConfigurationUpdate) -> Self {
        Self {
            vcpu_count: update.vcpu_count.unwrap_or(self.vcpu_count),
            mem_size_mib: update.mem_size_mib.unwrap_or(self.mem_size_mib),
            smt: update.smt.or(self.smt),
            cpu_template: match update.cpu_template {
                Some(CpuTemplate::None) => None,
                Some(other) => Some(other),
                None => self.cpu_template,
            },
            track_dirty_pages: update.track_dirty_pages.or(self.track_dirty_pages),
            huge_pages: update.huge_pages.or(self.huge_pages),
        }
    }
}

impl Default for MachineConfiguration {
    /// Firecracker's defaults: 1 vCPU, 128 MiB.
    fn default() -> Self {
        Self::new(DEFAULT_VCPU_COUNT, DEFAULT_MEM_SIZE_MIB)
    }
}

impl ApiModel for MachineConfiguration {
    const DEFINITION: &'static str = "MachineConfiguration";
    const FIELDS: &'static [&'static str] = &[
        "vcpu_count",
        "mem_size_mib",
        "smt",
        "cpu_template",
        "track_dirty_pages",
        "huge_pages",
    ];
    const REQUIRED: &'static [&'static str] = &["vcpu_count", "mem_size_mib"];

    fn sample() -> Self {
        Self {
            vcpu_count: 2,
            mem_size_mib: 256,
            smt: Some(false),
            cpu_template: Some(CpuTemplate::None),
            track_dirty_pages: Some(true),
            huge_pages: Some(HugePages::Transparent),
        }
    }
}

/// Body of `PATCH /machine-config`: the same fields, all optional.
///
/// Not a separate definition in the spec (which reuses `MachineConfiguration`
/// with relaxed requirements); Firecracker refuses an empty update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfigurationUpdate {
    /// New vCPU count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu_count: Option<u8>,
    /// New memory size in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_size_mib: Option<usize>,
    /// New SMT setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smt: Option<bool>,
    /// New static CPU template (`None` clears it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_template: Option<CpuTemplate>,
    /// New dirty page tracking setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_dirty_pages: Option<bool>,
    /// New page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huge_pages: Option<HugePages>,
}

impl MachineConfigurationUpdate {
    /// True when no field is set (Firecracker answers "Empty PATCH request.").
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

impl From<&MachineConfiguration> for MachineConfigurationUpdate {
    /// The update a `PUT` amounts to: optional fields reset to their defaults.
    fn from(cfg: &MachineConfiguration) -> Self {
        Self {
            vcpu_count: Some(cfg.vcpu_count),
            mem_size_mib: Some(cfg.mem_size_mib),
            smt: Some(cfg.smt.unwrap_or(false)),
            cpu_template: cfg.cpu_template,
            track_dirty_pages: Some(cfg.track_dirty_pages.unwrap_or(false)),
            huge_pages: Some(cfg.huge_pages.unwrap_or_default()),
        }
    }
}

impl ApiModel for MachineConfigurationUpdate {
    const DEFINITION: &'static str = "MachineConfiguration";
    const FIELDS: &'static [&'static str] = MachineConfiguration::FIELDS;
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        (&MachineConfiguration::sample()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_merges_and_put_resets() {
        let cfg = MachineConfiguration::new(2, 512).with_defaults();
        let patched = cfg.apply(&MachineConfigurationUpdate {
            mem_size_mib: Some(256),
            ..Default::default()
        });
        assert_eq!(patched.vcpu_count, 2);
        assert_eq!(patched.mem_size_mib, 256);
        assert!(MachineConfigurationUpdate::default().is_empty());
    }

    #[test]
    fn json_array_is_accepted_positionally() {
        let cfg: MachineConfiguration = serde_json::from_str("[1, 256]").unwrap();
        assert_eq!(cfg, MachineConfiguration::new(1, 256));
    }
}
