//! The metrics sink configured by `PUT /metrics` (or `--metrics-path`).
//!
//! Like Firecracker: the file is opened (created, not truncated) at
//! configuration, configuring twice fails, and one JSON object per line is
//! written at InstanceStart and on `FlushMetrics`, with counters that are
//! deltas since the previous line. The simulator's counters are a small
//! subset of Firecracker's (API request counts).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;

use banger_fcapi::Metrics;
use serde_json::{Map, Value, json};

use crate::clock::unix_millis;
use crate::fault::Fault;
use crate::log::SimLog;

const PREFIX: &str = "Metrics error: Cannot initialize the metrics system due to bad user input";

/// Per-method request counters since the last flush.
#[derive(Debug, Default)]
struct Counters {
    by_method: BTreeMap<&'static str, u64>,
    fails: u64,
}

/// Where metrics go, once configured.
#[derive(Debug, Default)]
pub struct MetricsSink {
    file: Option<File>,
    config: Option<Metrics>,
    counters: Counters,
}

impl MetricsSink {
    /// Applies a `PUT /metrics` body. The file is opened before the
    /// "configured once" check, so a bad path is reported first (as recorded).
    pub fn configure(&mut self, config: &Metrics) -> Result<(), Fault> {
        let file = SimLog::open_file(Path::new(&config.metrics_path))
            .map_err(|e| Fault::bad_request(format!("{PREFIX}: {e}")))?;
        if self.file.is_some() {
            return Err(Fault::bad_request(format!(
                "{PREFIX}: Reinitialization of metrics not allowed."
            )));
        }
        self.file = Some(file);
        self.config = Some(config.clone());
        Ok(())
    }

    /// Counts one API request by method (`get`, `put`, `patch`, `delete`).
    pub fn count_request(&mut self, method: &'static str, failed: bool) {
        *self.counters.by_method.entry(method).or_default() += 1;
        if failed {
            self.counters.fails += 1;
        }
    }

    /// Writes one metrics line and resets the counters. A no-op when unconfigured.
    pub fn flush(&mut self, instance_id: &str) -> std::io::Result<()> {
        let (Some(file), Some(config)) = (&mut self.file, &self.config) else {
            return Ok(());
        };
        let mut line = Map::new();
        line.insert("utc_timestamp_ms".into(), json!(unix_millis()));
        if config.emit_id == Some(true) {
            line.insert("id".into(), json!(instance_id));
        }
        for (method, count) in &self.counters.by_method {
            line.insert(format!("{method}_api_requests"), json!({ "count": count }));
        }
        line.insert(
            "api_server".into(),
            json!({ "sync_response_fails": self.counters.fails }),
        );
        for (key, value) in config.properties.iter().flatten() {
            line.insert(key.clone(), Value::String(value.clone()));
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        file.write_all(text.as_bytes())?;
        file.flush()?;
        self.counters = Counters::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configure_once_and_flush_deltas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let mut sink = MetricsSink::default();
        let bad = Metrics::new(dir.path().join("nodir/m.json").to_str().unwrap());
        assert!(
            sink.configure(&bad)
                .unwrap_err()
                .message
                .ends_with("No such file or directory (os error 2)")
        );
        sink.configure(&Metrics::new(path.to_str().unwrap()))
            .unwrap();
        let again = sink
            .configure(&Metrics::new(path.to_str().unwrap()))
            .unwrap_err();
        assert!(
            again
                .message
                .ends_with("Reinitialization of metrics not allowed.")
        );
        sink.count_request("put", false);
        sink.flush("vm").unwrap();
        sink.flush("vm").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["put_api_requests"]["count"], 1);
        assert!(lines[1].get("put_api_requests").is_none());
    }
}
