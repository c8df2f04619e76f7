//! Renders `GET /vm/config` the way Firecracker prints it.
//!
//! Firecracker serializes drives, network interfaces and the boot source
//! with every field present (`null` when unset) while the other members keep
//! their usual shape; `logger` and `metrics` are always `null`, and a missing
//! boot source shows as `{"kernel_image_path": "", ...}`. The shared
//! [`FullVmConfiguration`] omits unset fields, so the missing keys are put
//! back here from the models' field lists, which also give the key order
//! (Firecracker's struct order).

use banger_fcapi::{
    ApiModel, Balloon, BootSource, CpuConfig, Drive, EntropyDevice, FullVmConfiguration,
    MachineConfiguration, MemoryHotplugConfig, MmdsConfig, NetworkInterface, Pmem, Vsock,
};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

/// A JSON tree whose objects keep a chosen key order.
enum Node {
    Plain(Value),
    Object(Vec<(&'static str, Node)>),
    List(Vec<Node>),
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Plain(value) => value.serialize(serializer),
            Self::Object(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
            Self::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

/// Orders an object by `T::FIELDS`; with `fill`, absent fields become `null`.
fn object<T: ApiModel>(value: Value, fill: bool) -> Node {
    let Value::Object(mut map) = value else {
        return Node::Plain(value);
    };
    let entries = T::FIELDS
        .iter()
        .filter_map(|field| match map.remove(*field) {
            Some(v) => Some((*field, Node::Plain(v))),
            None if fill => Some((*field, Node::Plain(Value::Null))),
            None => None,
        })
        .collect();
    Node::Object(entries)
}

fn list<T: ApiModel>(value: Value, fill: bool) -> Node {
    match value {
        Value::Array(items) => {
            Node::List(items.into_iter().map(|v| object::<T>(v, fill)).collect())
        }
        other => Node::Plain(other),
    }
}

/// The JSON body of `GET /vm/config` for `config`.
pub fn render(mut config: FullVmConfiguration) -> String {
    config.logger = None;
    config.metrics = None;
    if config.boot_source.is_none() {
        config.boot_source = Some(BootSource::new(""));
    }
    let Ok(Value::Object(mut root)) = serde_json::to_value(&config) else {
        return "{}".into();
    };
    let mut take = |key: &str| root.remove(key).unwrap_or(Value::Null);
    let entries = vec![
        ("balloon", object::<Balloon>(take("balloon"), false)),
        ("drives", list::<Drive>(take("drives"), true)),
        (
            "boot-source",
            object::<BootSource>(take("boot-source"), true),
        ),
        ("cpu-config", object::<CpuConfig>(take("cpu-config"), false)),
        ("logger", Node::Plain(take("logger"))),
        (
            "machine-config",
            object::<MachineConfiguration>(take("machine-config"), false),
        ),
        ("metrics", Node::Plain(take("metrics"))),
        (
            "mmds-config",
            object::<MmdsConfig>(take("mmds-config"), false),
        ),
        (
            "network-interfaces",
            list::<NetworkInterface>(take("network-interfaces"), true),
        ),
        ("vsock", object::<Vsock>(take("vsock"), false)),
        ("entropy", object::<EntropyDevice>(take("entropy"), false)),
        ("pmem", list::<Pmem>(take("pmem"), false)),
        (
            "memory-hotplug",
            object::<MemoryHotplugConfig>(take("memory-hotplug"), false),
        ),
    ];
    serde_json::to_string(&Node::Object(entries)).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn empty_config_matches_firecracker() {
        let config = FullVmConfiguration {
            machine_config: Some(MachineConfiguration::default().with_defaults()),
            ..Default::default()
        };
        let text = render(config);
        assert!(
            text.starts_with(
                r#"{"balloon":null,"drives":[],"boot-source":{"kernel_image_path":"""#
            )
        );
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({
                "balloon": null, "drives": [],
                "boot-source": {"kernel_image_path": "", "initrd_path": null, "boot_args": null},
                "cpu-config": null, "logger": null,
                "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "smt": false,
                                   "track_dirty_pages": false, "huge_pages": "None"},
                "metrics": null, "mmds-config": null, "network-interfaces": [], "vsock": null,
                "entropy": null, "pmem": [], "memory-hotplug": null
            })
        );
    }

    #[test]
    fn drives_show_every_field() {
        let config = FullVmConfiguration {
            drives: vec![Drive::new("rootfs", "/r", true).with_defaults()],
            ..Default::default()
        };
        let value: Value = serde_json::from_str(&render(config)).unwrap();
        assert_eq!(
            value["drives"][0],
            json!({"drive_id": "rootfs", "partuuid": null, "is_root_device": true, "cache_type": "Unsafe",
                   "is_read_only": false, "path_on_host": "/r", "rate_limiter": null, "io_engine": "Sync",
                   "socket": null})
        );
    }
}
