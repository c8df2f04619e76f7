//! `vm.stats`, the stats polling loop and idle stop.
//!
//! Measuring a VMM means its whole process tree (banger's QEMU front runs
//! the guest in a child), and only a scan of all of `/proc` finds the
//! children. The loop therefore takes one snapshot of `/proc` per tick for
//! every VMM, on a blocking thread, never one scan per VM on the async
//! runtime; idle stops run as their own tasks.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banger_api::rpc::VmStopParams;
use banger_api::{VmState, VmStats};

use crate::common::root_disk;
use crate::vms::VmError;
use crate::vms::service::VMService;

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
    /// VMM such as banger's QEMU front runs the guest in a child process),
    /// taken on a blocking thread (it scans `/proc`).
    pub async fn stats(&self, name: &str) -> Result<VmStats, VmError> {
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
        let Some(h) = self.handles.get(&vm.id) else {
            return Ok(out);
        };
        let procfs = self.procfs.clone();
        let measured = tokio::task::spawn_blocking(move || procfs.tree_stats(h.pid)).await;
        if let Ok(Ok(s)) = measured {
            out.pid = Some(h.pid);
            out.cpu_time_ms = s.cpu_time_ms;
            out.rss_bytes = s.rss_bytes;
            out.uptime_secs = (banger_store::now_millis() - h.started_at).max(0) as u64 / 1000;
            out.cpu_percent = lock(&self.samples).get(&vm.id).and_then(|s| s.cpu_percent);
        }
        Ok(out)
    }

    /// The stats loop: every `every`, [`poll_stats`](Self::poll_stats),
    /// then an idle stop for each VM it names, each as its own task so
    /// that a slow stop never delays the next sample (a VM already being
    /// stopped is not stopped twice).
    pub async fn stats_loop(self: Arc<Self>, every: Duration) {
        let stopping: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Console and VMM logs stay bounded (common/vm_files.rs).
            let dirs: Vec<_> = self
                .handles
                .all()
                .into_iter()
                .map(|(id, _)| self.layout.vm_dir(&id))
                .collect();
            let _ = tokio::task::spawn_blocking(move || {
                dirs.iter().for_each(|d| crate::common::rotate_vm_logs(d))
            })
            .await;
            for id in self.poll_stats().await {
                if !lock(&stopping).insert(id.clone()) {
                    continue;
                }
                let (vms, stopping) = (Arc::clone(&self), Arc::clone(&stopping));
                tokio::spawn(async move {
                    vms.idle_stop(&id).await;
                    lock(&stopping).remove(&id);
                });
            }
        }
    }

    /// Sample every VM with a VMM: one pass over `/proc` on a blocking
    /// thread (the process tree of all VMMs at once), then each VM's CPU
    /// use since its previous sample. Returns the VMs idle for longer than
    /// `daemon.idle_stop_secs` (when set); stopping them is the caller's.
    pub async fn poll_stats(&self) -> Vec<String> {
        let started = Instant::now();
        let interval_ms = self.config.daemon.stats_interval_secs.max(1) * 1000;
        let idle_ms = self.config.daemon.idle_cpu_ms;
        let idle_stop = self.config.daemon.idle_stop_secs;
        let vmms: Vec<(String, u32)> = self
            .handles
            .all()
            .into_iter()
            .map(|(id, h)| (id, h.pid))
            .collect();
        let vms = vmms.len();
        let procfs = self.procfs.clone();
        let measured = tokio::task::spawn_blocking(move || {
            let tree = procfs.snapshot();
            vmms.into_iter()
                .filter_map(|(id, pid)| Some((id, tree.tree_stats(pid).ok()?)))
                .collect::<Vec<_>>()
        })
        .await;
        let measured = match measured {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "stats sampling failed");
                return Vec::new();
            }
        };
        let now = Instant::now();
        let mut to_stop = Vec::new();
        let mut samples = lock(&self.samples);
        for (id, s) in measured {
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
        drop(samples);
        tracing::debug!(
            vms,
            elapsed_us = started.elapsed().as_micros() as u64,
            "stats tick"
        );
        to_stop
    }

    /// Stop VM `id` for being idle, if it is still running.
    pub async fn idle_stop(self: &Arc<Self>, id: &str) {
        match self.store.get_vm(id) {
            Ok(Some(vm)) if vm.state == VmState::Running => {
                tracing::info!(vm = %vm.name, "stopping idle VM");
                let p = VmStopParams {
                    vm: vm.id.clone(),
                    timeout_secs: None,
                };
                match self.stop(&p).await {
                    Ok(_) => tracing::info!(vm = %vm.name, "idle VM stopped"),
                    Err(e) => tracing::warn!(vm = %vm.name, error = %e, "idle stop failed"),
                }
            }
            _ => {}
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
