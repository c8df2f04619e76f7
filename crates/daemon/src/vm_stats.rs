//! `vm.stats`, the stats polling loop and idle stop.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::time::Instant;

use banger_api::rpc::VmStopParams;
use banger_api::{VmState, VmStats};

use crate::error::DaemonError;
use crate::vm_service::{VMService, root_disk};

/// One sample of a VMM's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct StatSample {
    /// When it was taken.
    pub at: Instant,
    /// VMM CPU time then.
    pub cpu_time_ms: u64,
    /// CPU use since the previous sample, percent of one core.
    pub cpu_percent: Option<f64>,
    /// Since when the VM has used less than the idle threshold.
    pub idle_since: Option<Instant>,
}

impl VMService {
    /// `vm.stats`: a fresh reading of the VMM process and its children (a
    /// VMM such as banger's QEMU front runs the guest in a child process).
    pub fn stats(&self, name: &str) -> Result<VmStats, DaemonError> {
        let vm = self.resolve(name)?;
        let disk = root_disk(&self.layout.vm_dir(&vm.id));
        let disk_allocated_bytes = std::fs::metadata(&disk)
            .map(|m| m.blocks() * 512)
            .unwrap_or(0);
        let mut out = VmStats {
            name: vm.name.clone(),
            state: vm.state,
            pid: None,
            cpu_time_ms: 0,
            cpu_percent: None,
            rss_bytes: 0,
            disk_allocated_bytes,
            uptime_secs: 0,
        };
        if let Some(h) = self.handles.get(&vm.id)
            && let Ok(s) = self.procfs.tree_stats(h.pid)
        {
            out.pid = Some(h.pid);
            out.cpu_time_ms = s.cpu_time_ms;
            out.rss_bytes = s.rss_bytes;
            out.uptime_secs = (banger_store::now_millis() - h.started_at).max(0) as u64 / 1000;
            out.cpu_percent = self
                .samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&vm.id)
                .and_then(|s| s.cpu_percent);
        }
        Ok(out)
    }

    /// Sample every running VM; stop those idle for longer than
    /// `daemon.idle_stop_secs` (when set).
    pub async fn poll_stats(self: &Arc<Self>) {
        let interval_ms = self.config.daemon.stats_interval_secs.max(1) * 1000;
        let idle_ms = self.config.daemon.idle_cpu_ms;
        let idle_stop = self.config.daemon.idle_stop_secs;
        let now = Instant::now();
        let mut to_stop = Vec::new();
        for id in self.handles.ids() {
            let Some(h) = self.handles.get(&id) else {
                continue;
            };
            let Ok(s) = self.procfs.tree_stats(h.pid) else {
                continue;
            };
            let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
            let prev = samples.get(&id).copied();
            let (cpu_percent, idle_since) = match prev {
                Some(p) => {
                    let dt = now.duration_since(p.at).as_millis().max(1) as f64;
                    let used = s.cpu_time_ms.saturating_sub(p.cpu_time_ms);
                    // Scale the threshold to the interval actually elapsed.
                    let idle_now = (used as f64) < idle_ms as f64 * dt / interval_ms as f64;
                    let since = if idle_now {
                        p.idle_since.or(Some(p.at))
                    } else {
                        None
                    };
                    (Some(used as f64 * 100.0 / dt), since)
                }
                None => (None, None),
            };
            samples.insert(
                id.clone(),
                StatSample {
                    at: now,
                    cpu_time_ms: s.cpu_time_ms,
                    cpu_percent,
                    idle_since,
                },
            );
            if idle_stop > 0
                && idle_since.is_some_and(|t| now.duration_since(t).as_secs() >= idle_stop)
            {
                to_stop.push(id);
            }
        }
        for id in to_stop {
            match self.store.get_vm(&id) {
                Ok(Some(vm)) if vm.state == VmState::Running => {
                    tracing::info!(vm = %vm.name, "stopping idle VM");
                    let p = VmStopParams {
                        vm: vm.id.clone(),
                        timeout_secs: None,
                    };
                    if let Err(e) = self.stop(&p).await {
                        tracing::warn!(vm = %vm.name, error = %e, "idle stop failed");
                    }
                }
                _ => {}
            }
        }
    }
}
