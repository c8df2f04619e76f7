//! `PUT /cpu-config`: custom CPU templates (CPUID, MSR and register modifiers).
//!
//! Firecracker interprets the strings (bitmaps like `0bxx1x...`, hex leaves);
//! banger only passes them through, so they are kept as strings here.

use serde::{Deserialize, Serialize};

use crate::model::{ApiModel, api_enum};

/// Body of `PUT /cpu-config`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuConfig {
    /// KVM capabilities to add (`"121"`) or remove (`"!121"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvm_capabilities: Option<Vec<String>>,
    /// CPUID leaf modifiers (x86_64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuid_modifiers: Option<Vec<CpuidLeafModifier>>,
    /// MSR modifiers (x86_64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msr_modifiers: Option<Vec<MsrModifier>>,
    /// Register modifiers (aarch64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg_modifiers: Option<Vec<ArmRegisterModifier>>,
    /// vCPU feature modifiers (aarch64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpu_features: Option<Vec<VcpuFeatures>>,
}

impl ApiModel for CpuConfig {
    const DEFINITION: &'static str = "CpuConfig";
    const FIELDS: &'static [&'static str] = &[
        "kvm_capabilities",
        "cpuid_modifiers",
        "msr_modifiers",
        "reg_modifiers",
        "vcpu_features",
    ];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            kvm_capabilities: Some(vec!["!56".into()]),
            cpuid_modifiers: Some(vec![CpuidLeafModifier::sample()]),
            msr_modifiers: Some(vec![MsrModifier::sample()]),
            reg_modifiers: Some(vec![ArmRegisterModifier::sample()]),
            vcpu_features: Some(vec![VcpuFeatures::sample()]),
        }
    }
}

/// Modifies one CPUID leaf/subleaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuidLeafModifier {
    /// Leaf, e.g. `"0x1"`.
    pub leaf: String,
    /// Subleaf, e.g. `"0x0"`.
    pub subleaf: String,
    /// KVM CPUID flags.
    pub flags: i32,
    /// Register modifiers.
    pub modifiers: Vec<CpuidRegisterModifier>,
}

impl ApiModel for CpuidLeafModifier {
    const DEFINITION: &'static str = "CpuidLeafModifier";
    const FIELDS: &'static [&'static str] = &["leaf", "subleaf", "flags", "modifiers"];
    const REQUIRED: &'static [&'static str] = &["leaf", "subleaf", "flags", "modifiers"];

    fn sample() -> Self {
        Self {
            leaf: "0x1".into(),
            subleaf: "0x0".into(),
            flags: 0,
            modifiers: vec![CpuidRegisterModifier::sample()],
        }
    }
}

/// A CPUID output register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CpuidRegister {
    /// `eax`.
    Eax,
    /// `ebx`.
    Ebx,
    /// `ecx`.
    Ecx,
    /// `edx`.
    Edx,
}

api_enum!(CpuidRegister {
    Eax => "eax",
    Ebx => "ebx",
    Ecx => "ecx",
    Edx => "edx",
});

/// Modifies bits of one CPUID register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuidRegisterModifier {
    /// Register to modify.
    pub register: CpuidRegister,
    /// Bitmap like `0bxxxx...` (`x` keeps a bit).
    pub bitmap: String,
}

impl ApiModel for CpuidRegisterModifier {
    const DEFINITION: &'static str = "CpuidRegisterModifier";
    const FIELDS: &'static [&'static str] = &["register", "bitmap"];
    const REQUIRED: &'static [&'static str] = &["register", "bitmap"];

    fn sample() -> Self {
        Self {
            register: CpuidRegister::Ecx,
            bitmap: "0bxxxx".into(),
        }
    }
}

/// Modifies bits of one MSR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MsrModifier {
    /// MSR address, e.g. `"0x10a"`.
    pub addr: String,
    /// Bitmap.
    pub bitmap: String,
}

impl ApiModel for MsrModifier {
    const DEFINITION: &'static str = "MsrModifier";
    const FIELDS: &'static [&'static str] = &["addr", "bitmap"];
    const REQUIRED: &'static [&'static str] = &["addr", "bitmap"];

    fn sample() -> Self {
        Self {
            addr: "0x10a".into(),
            bitmap: "0bxx".into(),
        }
    }
}

/// Modifies bits of one aarch64 register.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArmRegisterModifier {
    /// Register id, e.g. `"0x603000000013c020"`.
    pub addr: String,
    /// Bitmap.
    pub bitmap: String,
}

impl ApiModel for ArmRegisterModifier {
    const DEFINITION: &'static str = "ArmRegisterModifier";
    const FIELDS: &'static [&'static str] = &["addr", "bitmap"];
    const REQUIRED: &'static [&'static str] = &["addr", "bitmap"];

    fn sample() -> Self {
        Self {
            addr: "0x603000000013c020".into(),
            bitmap: "0bxx".into(),
        }
    }
}

/// Modifies one aarch64 vCPU feature word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VcpuFeatures {
    /// Feature word index.
    pub index: i32,
    /// Bitmap.
    pub bitmap: String,
}

impl ApiModel for VcpuFeatures {
    const DEFINITION: &'static str = "VcpuFeatures";
    const FIELDS: &'static [&'static str] = &["index", "bitmap"];
    const REQUIRED: &'static [&'static str] = &["index", "bitmap"];

    fn sample() -> Self {
        Self {
            index: 0,
            bitmap: "0bxx".into(),
        }
    }
}
