//! The MMDS data store (`/mmds`) and its configuration (`/mmds/config`).
//!
//! `PUT /mmds` replaces the contents, `PATCH /mmds` applies an RFC 7396 merge
//! patch, `GET /mmds` answers `{}` before anything was stored. The store is
//! limited to `--mmds-size-limit` bytes (413 beyond). The only recorded error
//! is the config one, including Firecracker's "MMMDS" typo; the others are
//! approximate.

use std::net::Ipv4Addr;

use banger_fcapi::MmdsConfig;
use serde_json::Value;

use crate::fault::Fault;
use crate::net::NetDevices;

/// Contents and configuration of the metadata service.
#[derive(Debug)]
pub struct Mmds {
    data: Option<Value>,
    config: Option<MmdsConfig>,
    limit: usize,
}

impl Mmds {
    /// An empty, unconfigured store limited to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            data: None,
            config: None,
            limit,
        }
    }

    fn check_size(&self, value: &Value) -> Result<(), Fault> {
        if value.to_string().len() > self.limit {
            return Err(Fault {
                status: 413,
                message: "MMDS limit exceeded error: The MMDS patch request doesn't fit.".into(),
            });
        }
        Ok(())
    }

    /// `PUT /mmds`.
    pub fn put(&mut self, value: Value) -> Result<(), Fault> {
        self.check_size(&value)?;
        self.data = Some(value);
        Ok(())
    }

    /// `PATCH /mmds`.
    pub fn patch(&mut self, patch: Value) -> Result<(), Fault> {
        let Some(current) = &self.data else {
            return Err(Fault::bad_request(
                "MMDS error: The MMDS data store is not initialized.",
            ));
        };
        let mut merged = current.clone();
        merge_patch(&mut merged, patch);
        self.check_size(&merged)?;
        self.data = Some(merged);
        Ok(())
    }

    /// `GET /mmds`.
    pub fn get(&self) -> Value {
        match &self.data {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(value) => value.clone(),
        }
    }

    /// `PUT /mmds/config`: every listed interface must already exist.
    pub fn configure(&mut self, config: MmdsConfig, nets: &NetDevices) -> Result<(), Fault> {
        if config
            .network_interfaces
            .iter()
            .any(|id| !nets.contains(id))
        {
            return Err(Fault::bad_request(
                "MMMDS config error: The list of network interface IDs provided contains at least one ID that does not correspond to any existing network interface.",
            ));
        }
        if let Some(address) = &config.ipv4_address {
            let link_local = address
                .parse::<Ipv4Addr>()
                .is_ok_and(|ip| ip.is_link_local());
            if !link_local {
                return Err(Fault::bad_request(
                    "MMMDS config error: The MMDS IPv4 address is not link local.",
                ));
            }
        }
        self.config = Some(config.with_defaults());
        Ok(())
    }

    /// The configuration, if set.
    pub fn config(&self) -> Option<MmdsConfig> {
        self.config.clone()
    }
}

/// RFC 7396: objects merge recursively, `null` deletes, anything else replaces.
fn merge_patch(target: &mut Value, patch: Value) {
    let Value::Object(patch) = patch else {
        *target = patch;
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(&key);
            } else {
                merge_patch(map.entry(key).or_insert(Value::Null), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn put_patch_get() {
        let mut mmds = Mmds::new(51200);
        assert_eq!(mmds.get(), json!({}));
        assert!(mmds.patch(json!({"a": 1})).is_err());
        mmds.put(json!({"a": 1, "b": {"c": 2}})).unwrap();
        mmds.patch(json!({"a": null, "b": {"d": 3}})).unwrap();
        assert_eq!(mmds.get(), json!({"b": {"c": 2, "d": 3}}));
        let big = json!({"k": "x".repeat(60000)});
        assert_eq!(mmds.put(big).unwrap_err().status, 413);
    }
}
