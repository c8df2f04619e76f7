//! [`ProcTree`]: one pass over `/proc` that answers for many processes.
//!
//! Measuring a process tree needs every process's parent, which only a scan
//! of all of `/proc/*/stat` gives. A caller that measures many trees (the
//! daemon's stats loop, one tree per VMM) takes one snapshot per round
//! instead of one scan per tree.

use std::collections::HashMap;

use super::{ProcError, ProcFs, ProcessStats, Stat, clock_ticks_per_sec, ticks_to_duration};

/// The processes of one `/proc` scan: each one's `stat` fields and its
/// children. Resident memory is read when a tree is measured.
#[derive(Debug, Clone)]
pub struct ProcTree {
    procfs: ProcFs,
    stats: HashMap<u32, Stat>,
    children: HashMap<u32, Vec<u32>>,
}

impl ProcFs {
    /// Read `stat` of every process once. Processes that exit during the
    /// scan are left out.
    pub fn snapshot(&self) -> ProcTree {
        let mut stats = HashMap::new();
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for pid in entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            {
                if let Ok(stat) = self.stat(pid) {
                    children.entry(stat.ppid).or_default().push(pid);
                    stats.insert(pid, stat);
                }
            }
        }
        ProcTree {
            procfs: self.clone(),
            stats,
            children,
        }
    }
}

impl ProcTree {
    /// How many processes the scan saw.
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// Whether the scan saw no process at all.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    /// Every descendant of `pid` (children, grandchildren, ...) at the time
    /// of the scan.
    pub fn descendants(&self, pid: u32) -> Vec<u32> {
        let mut found = Vec::new();
        let mut frontier = vec![pid];
        while let Some(parent) = frontier.pop() {
            for &child in self.children.get(&parent).into_iter().flatten() {
                if child != pid && !found.contains(&child) {
                    found.push(child);
                    frontier.push(child);
                }
            }
        }
        found
    }

    /// [`ProcFs::tree_stats`] from this scan: CPU time (as of the scan) and
    /// resident memory (read now) of `pid` and its descendants summed, the
    /// start time `pid`'s own. Descendants gone since the scan are left
    /// out; `pid` itself missing or gone is [`ProcError::NotFound`].
    pub fn tree_stats(&self, pid: u32) -> Result<ProcessStats, ProcError> {
        let mut total = self.one(pid)?;
        for child in self.descendants(pid) {
            if let Ok(s) = self.one(child) {
                total.cpu_time_ms = total.cpu_time_ms.saturating_add(s.cpu_time_ms);
                total.rss_bytes = total.rss_bytes.saturating_add(s.rss_bytes);
            }
        }
        Ok(total)
    }

    fn one(&self, pid: u32) -> Result<ProcessStats, ProcError> {
        let stat = self.stats.get(&pid).ok_or(ProcError::NotFound { pid })?;
        let ticks = clock_ticks_per_sec();
        let cpu_ticks = stat.utime.saturating_add(stat.stime);
        Ok(ProcessStats {
            cpu_time_ms: cpu_ticks.saturating_mul(1000) / ticks,
            rss_bytes: self.procfs.rss_bytes(pid)?,
            start_time: ticks_to_duration(stat.starttime, ticks),
        })
    }
}
