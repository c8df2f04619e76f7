//! Checks the API models against serde and against Firecracker's OpenAPI spec.
//!
//! 1. `models_agree_with_serde` (always runs): every model's hand-written
//!    `FIELDS`/`REQUIRED` lists match what serde really serializes, requires
//!    and lists in its "unknown field" message, and every enum's values match
//!    its serde names.
//! 2. `models_match_openapi_spec`: when `shared/firecracker/firecracker.yaml`
//!    sits beside the workspace, each encoded definition must have exactly the
//!    spec's properties and required list, and enum values must match. When
//!    the file is absent the test prints a `SKIP` line and passes.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::io::Write;
use std::path::PathBuf;

use banger_fcapi::*;
use serde_json::Value;

/// One model's facts, gathered through [`ApiModel`].
struct ModelInfo {
    rust_name: &'static str,
    definition: &'static str,
    fields: &'static [&'static str],
    required: &'static [&'static str],
    check_serde: fn() -> Result<(), String>,
    /// False for types that reuse a definition with different rules.
    in_spec: bool,
}

fn info<T: ApiModel + PartialEq + Debug>(rust_name: &'static str, in_spec: bool) -> ModelInfo {
    ModelInfo {
        rust_name,
        definition: T::DEFINITION,
        fields: T::FIELDS,
        required: T::REQUIRED,
        check_serde: check_model::<T>,
        in_spec,
    }
}

macro_rules! models {
    ($($ty:ident),+ $(,)?) => {
        vec![$(info::<$ty>(stringify!($ty), true)),+]
    };
}

fn all_models() -> Vec<ModelInfo> {
    let mut models = models![
        ArmRegisterModifier,
        Balloon,
        BalloonHintingStatus,
        BalloonStartCmd,
        BalloonStats,
        BalloonStatsUpdate,
        BalloonUpdate,
        BootSource,
        CpuConfig,
        CpuidLeafModifier,
        CpuidRegisterModifier,
        Drive,
        EntropyDevice,
        FaultBody,
        FirecrackerVersion,
        FullVmConfiguration,
        InstanceActionInfo,
        InstanceInfo,
        Logger,
        MachineConfiguration,
        MemoryBackend,
        MemoryHotplugConfig,
        MemoryHotplugSizeUpdate,
        MemoryHotplugStatus,
        Metrics,
        MmdsConfig,
        MsrModifier,
        NetworkInterface,
        NetworkOverride,
        PartialDrive,
        PartialNetworkInterface,
        PartialPmem,
        Pmem,
        RateLimiter,
        SerialDevice,
        SnapshotCreateParams,
        SnapshotLoadParams,
        TokenBucket,
        VcpuFeatures,
        Vm,
        Vsock,
        VsockOverride,
    ];
    // PATCH body: same fields as MachineConfiguration, none required.
    models.push(info::<MachineConfigurationUpdate>(
        "MachineConfigurationUpdate",
        false,
    ));
    models
}

/// Spec definitions deliberately not encoded, with the reason.
const NOT_ENCODED: &[(&str, &str)] = &[(
    "MmdsContentsObject",
    "free-form JSON, kept as serde_json::Value",
)];

/// Where an enum lives in the spec: (definition, property or "" for a definition-level enum).
struct EnumInfo {
    definition: &'static str,
    property: &'static str,
    values: Vec<&'static str>,
    check_serde: fn() -> Result<(), String>,
}

fn enum_info<E: ApiEnum + PartialEq + Debug>(
    definition: &'static str,
    property: &'static str,
) -> EnumInfo {
    EnumInfo {
        definition,
        property,
        values: E::values(),
        check_serde: check_enum::<E>,
    }
}

fn all_enums() -> Vec<EnumInfo> {
    vec![
        enum_info::<CacheType>("Drive", "cache_type"),
        enum_info::<IoEngine>("Drive", "io_engine"),
        enum_info::<ActionType>("InstanceActionInfo", "action_type"),
        enum_info::<InstanceState>("InstanceInfo", "state"),
        enum_info::<LogLevel>("Logger", "level"),
        enum_info::<HugePages>("MachineConfiguration", "huge_pages"),
        enum_info::<CpuTemplate>("CpuTemplate", ""),
        enum_info::<MemBackendType>("MemoryBackend", "backend_type"),
        enum_info::<MmdsVersion>("MmdsConfig", "version"),
        enum_info::<SnapshotType>("SnapshotCreateParams", "snapshot_type"),
        enum_info::<SnapshotHugePages>("SnapshotLoadParams", "huge_pages"),
        enum_info::<VmState>("Vm", "state"),
        enum_info::<CpuidRegister>("CpuidRegisterModifier", "register"),
    ]
}

/// Backticked names in serde's "expected ..." tail, in order.
fn expected_names(message: &str) -> Vec<String> {
    let Some(tail) = message.split_once("expected") else {
        return Vec::new();
    };
    tail.1
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn check_model<T: ApiModel + PartialEq + Debug>() -> Result<(), String> {
    let sample = T::sample();
    let Value::Object(object) = serde_json::to_value(&sample).map_err(|e| e.to_string())? else {
        return Err("sample does not serialize to an object".into());
    };
    let keys: BTreeSet<&str> = object.keys().map(String::as_str).collect();
    let fields: BTreeSet<&str> = T::FIELDS.iter().copied().collect();
    if keys != fields {
        return Err(format!("serialized keys {keys:?} != FIELDS {fields:?}"));
    }
    let back: T =
        serde_json::from_value(Value::Object(object.clone())).map_err(|e| e.to_string())?;
    if back != sample {
        return Err("sample does not round-trip".into());
    }

    let mut required = BTreeSet::new();
    for field in T::FIELDS {
        let mut partial = object.clone();
        partial.remove(*field);
        match serde_json::from_value::<T>(Value::Object(partial)) {
            Ok(_) => {}
            Err(e) if e.to_string().contains(&format!("missing field `{field}`")) => {
                required.insert(*field);
            }
            Err(e) => return Err(format!("removing `{field}`: unexpected error {e}")),
        }
    }
    let declared: BTreeSet<&str> = T::REQUIRED.iter().copied().collect();
    if required != declared {
        return Err(format!(
            "serde requires {required:?}, REQUIRED says {declared:?}"
        ));
    }

    let mut extended = object;
    extended.insert("zz_unknown".into(), Value::from(1));
    let text = Value::Object(extended).to_string();
    match (serde_json::from_str::<T>(&text), T::DENIES_UNKNOWN) {
        (Ok(_), false) => {}
        (Ok(_), true) => return Err("an unknown field was accepted".into()),
        (Err(e), false) => return Err(format!("an unknown field was refused: {e}")),
        (Err(e), true) => {
            let listed = expected_names(&e.to_string());
            if listed != T::FIELDS {
                return Err(format!(
                    "serde lists {listed:?}, FIELDS order is {:?}",
                    T::FIELDS
                ));
            }
        }
    }
    Ok(())
}

fn check_enum<E: ApiEnum + PartialEq + Debug>() -> Result<(), String> {
    for value in E::ALL {
        let json = serde_json::to_string(value).map_err(|e| e.to_string())?;
        if json != format!("\"{}\"", value.as_str()) {
            return Err(format!(
                "{value:?} serializes as {json}, as_str says {}",
                value.as_str()
            ));
        }
        let back: E = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        if back != *value {
            return Err(format!("{json} does not round-trip"));
        }
    }
    let err = serde_json::from_str::<E>("\"zz_unknown\"")
        .map(|_| ())
        .unwrap_err()
        .to_string();
    let listed = expected_names(&err);
    // LogLevel has Firecracker's own parser ("Invalid LevelFilter"); the others are derived.
    if !listed.is_empty() && listed != E::values() {
        return Err(format!(
            "serde lists {listed:?}, ALL order is {:?}",
            E::values()
        ));
    }
    Ok(())
}

#[test]
fn models_agree_with_serde() {
    let mut failures = Vec::new();
    for model in all_models() {
        if let Err(e) = (model.check_serde)() {
            failures.push(format!("{}: {e}", model.rust_name));
        }
    }
    for e in all_enums() {
        if let Err(err) = (e.check_serde)() {
            failures.push(format!("enum {}.{}: {err}", e.definition, e.property));
        }
    }
    assert!(
        failures.is_empty(),
        "serde disagreements:\n{}",
        failures.join("\n")
    );
}

/// `shared/firecracker/firecracker.yaml` beside the workspace, or under
/// `$BANGER_FIRECRACKER_SHARED_DIR` when set.
fn spec_path() -> PathBuf {
    std::env::var_os("BANGER_FIRECRACKER_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/firecracker")
        })
        .join("firecracker.yaml")
}

/// Writes to the real stderr, bypassing libtest's capture, so the line shows
/// even when the test passes.
fn visible(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn as_string(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn string_set(value: Option<&serde_norway::Value>) -> BTreeSet<String> {
    match value {
        Some(serde_norway::Value::Sequence(items)) => items.iter().map(as_string).collect(),
        _ => BTreeSet::new(),
    }
}

fn key_set(value: Option<&serde_norway::Value>) -> BTreeSet<String> {
    match value {
        Some(serde_norway::Value::Mapping(map)) => map.keys().map(as_string).collect(),
        _ => BTreeSet::new(),
    }
}

#[test]
fn models_match_openapi_spec() {
    let path = spec_path();
    let Ok(text) = std::fs::read_to_string(&path) else {
        banger_testsupport::skip!(
            "models_match_openapi_spec",
            "spec conformance: {} not present",
            path.display()
        );
    };
    let spec: serde_norway::Value = serde_norway::from_str(&text).expect("firecracker.yaml parses");
    let definitions = spec.get("definitions").expect("spec has definitions");
    let serde_norway::Value::Mapping(definition_map) = definitions else {
        panic!("definitions is not a mapping");
    };

    let mut failures = Vec::new();
    let models = all_models();
    let mut encoded: BTreeSet<String> = BTreeSet::new();
    for model in models.iter().filter(|m| m.in_spec) {
        encoded.insert(model.definition.to_string());
        let Some(def) = definitions.get(model.definition) else {
            failures.push(format!(
                "{}: definition {} not in the spec",
                model.rust_name, model.definition
            ));
            continue;
        };
        let spec_fields = key_set(def.get("properties"));
        let our_fields: BTreeSet<String> = model.fields.iter().map(|s| s.to_string()).collect();
        if spec_fields != our_fields {
            failures.push(format!(
                "{}: spec properties {spec_fields:?} != our fields {our_fields:?}",
                model.rust_name
            ));
        }
        let spec_required = string_set(def.get("required"));
        let our_required: BTreeSet<String> = model.required.iter().map(|s| s.to_string()).collect();
        if spec_required != our_required {
            failures.push(format!(
                "{}: spec required {spec_required:?} != ours {our_required:?}",
                model.rust_name
            ));
        }
    }

    let enums = all_enums();
    for e in &enums {
        encoded.insert(e.definition.to_string());
        let def = definitions.get(e.definition);
        let node = if e.property.is_empty() {
            def
        } else {
            def.and_then(|d| d.get("properties"))
                .and_then(|p| p.get(e.property))
        };
        let spec_values = string_set(node.and_then(|n| n.get("enum")));
        let ours: BTreeSet<String> = e.values.iter().map(|s| s.to_string()).collect();
        if spec_values != ours {
            failures.push(format!(
                "enum {}.{}: spec {spec_values:?} != ours {ours:?}",
                e.definition, e.property
            ));
        }
    }

    // Every enum the spec declares in an encoded definition must be checked above.
    for (name, def) in definition_map {
        let name = as_string(name);
        if def.get("enum").is_some()
            && !enums
                .iter()
                .any(|e| e.definition == name && e.property.is_empty())
        {
            failures.push(format!("definition-level enum {name} is not encoded"));
        }
        if let Some(serde_norway::Value::Mapping(props)) = def.get("properties") {
            for (prop, schema) in props {
                let prop = as_string(prop);
                if schema.get("enum").is_some()
                    && !enums
                        .iter()
                        .any(|e| e.definition == name && e.property == prop)
                {
                    failures.push(format!("enum {name}.{prop} is not encoded"));
                }
            }
        }
        if !encoded.contains(&name) && !NOT_ENCODED.iter().any(|(n, _)| *n == name) {
            failures.push(format!("definition {name} is not encoded"));
        }
    }

    assert!(
        failures.is_empty(),
        "spec mismatches:\n{}",
        failures.join("\n")
    );
    visible(&format!(
        "spec conformance: {} models and {} enums match {}",
        models.iter().filter(|m| m.in_spec).count(),
        enums.len(),
        path.display()
    ));
}
