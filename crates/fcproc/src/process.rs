//! Process inspection through `/proc`.
//!
//! [`ProcFs`] reads `/proc/PID/{stat,status,statm,cmdline}` below an injectable root so tests
//! can point it at a fake tree in a temporary directory; production code uses
//! [`ProcFs::host`]. It answers two questions the daemon asks about a Firecracker process:
//!
//! 1. Is it still running? ([`ProcFs::is_alive`]; a zombie counts as dead, because a VMM that
//!    has exited but was not reaped yet will never serve its API again.)
//! 2. What does it cost? ([`ProcFs::stats`]: CPU time, resident memory, start time.)
//!
//! Whether a PID is still *our* VMM (PID reuse) is decided by pid and start time, by
//! `banger_privops::is_same_process` and the root helper.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use nix::unistd::{SysconfVar, sysconf};

mod tree;
pub use tree::ProcTree;

/// Errors from reading `/proc`.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    /// The process does not exist (any more).
    #[error("process {pid} does not exist")]
    NotFound {
        /// The process that was looked up.
        pid: u32,
    },
    /// A `/proc` file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file that failed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A `/proc` file had an unexpected format.
    #[error("cannot parse {}: {reason}", path.display())]
    Parse {
        /// The file that failed.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// Resource usage of one process, as read from `/proc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStats {
    /// User plus system CPU time, in milliseconds (`utime + stime` of `/proc/PID/stat`).
    pub cpu_time_ms: u64,
    /// Resident set size in bytes (`VmRSS` of `/proc/PID/status`, else `statm`).
    pub rss_bytes: u64,
    /// When the process started, measured from system boot (`starttime` of
    /// `/proc/PID/stat`). Together with the PID it identifies a process uniquely.
    pub start_time: Duration,
}

/// The few fields of `/proc/PID/stat` this crate uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: char,
    ppid: u32,
    utime: u64,
    stime: u64,
    starttime: u64,
}

/// A view of a `/proc` file system below `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcFs {
    /// The directory holding one entry per PID (`/proc` on the host).
    pub root: PathBuf,
}

impl Default for ProcFs {
    fn default() -> Self {
        Self::host()
    }
}

impl ProcFs {
    /// A view of the host's `/proc`.
    pub fn host() -> Self {
        Self::new("/proc")
    }

    /// A view of a `/proc`-shaped tree at `root` (for tests).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Whether `pid` names a running process. Zombies (state `Z`) and dead tasks (`X`) are
    /// reported as not alive; a missing `/proc/PID` too.
    pub fn is_alive(&self, pid: u32) -> Result<bool, ProcError> {
        match self.stat(pid) {
            Ok(stat) => Ok(!matches!(stat.state, 'Z' | 'X' | 'x')),
            Err(ProcError::NotFound { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    /// The command line of `pid`, one entry per argument. A zombie has an empty one.
    pub fn cmdline(&self, pid: u32) -> Result<Vec<OsString>, ProcError> {
        let raw = self.read(pid, "cmdline")?;
        Ok(split_cmdline(&raw))
    }

    /// CPU time, resident memory and start time of `pid`.
    pub fn stats(&self, pid: u32) -> Result<ProcessStats, ProcError> {
        let stat = self.stat(pid)?;
        let ticks = clock_ticks_per_sec();
        let cpu_ticks = stat.utime.saturating_add(stat.stime);
        let cpu_time_ms = cpu_ticks.saturating_mul(1000) / ticks;
        let start_time = ticks_to_duration(stat.starttime, ticks);
        let rss_bytes = self.rss_bytes(pid)?;
        Ok(ProcessStats {
            cpu_time_ms,
            rss_bytes,
            start_time,
        })
    }

    /// [`stats`](Self::stats) of `pid` and all its descendants: CPU time and
    /// resident memory summed, the start time `pid`'s own. A VMM that runs its
    /// guest in a child process (banger's QEMU front runs `qemu-system-x86_64`)
    /// is measured whole; for Firecracker, which has no children, this equals
    /// `stats`. Descendants that exit during the scan are left out.
    /// It scans all of `/proc`: to measure many trees, take one
    /// [`snapshot`](Self::snapshot) and ask it.
    pub fn tree_stats(&self, pid: u32) -> Result<ProcessStats, ProcError> {
        self.snapshot().tree_stats(pid)
    }

    /// Every live descendant of `pid` (children, grandchildren, ...), from a
    /// scan of the parent links in `/proc/*/stat`.
    pub fn descendants(&self, pid: u32) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let links: Vec<(u32, u32)> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|p| Some((p, self.stat(p).ok()?.ppid)))
            .collect();
        let mut found = Vec::new();
        let mut frontier = vec![pid];
        while let Some(parent) = frontier.pop() {
            for &(child, ppid) in &links {
                if ppid == parent && child != pid && !found.contains(&child) {
                    found.push(child);
                    frontier.push(child);
                }
            }
        }
        found
    }

    fn rss_bytes(&self, pid: u32) -> Result<u64, ProcError> {
        let status = self.read(pid, "status")?;
        if let Some(kib) = parse_vm_rss_kib(&String::from_utf8_lossy(&status)) {
            return Ok(kib.saturating_mul(1024));
        }
        // Kernel threads and zombies have no VmRSS line; statm still answers (with 0).
        let path = self.path(pid, "statm");
        let statm = self.read(pid, "statm")?;
        let resident = String::from_utf8_lossy(&statm)
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse::<u64>().ok())
            .ok_or_else(|| ProcError::Parse {
                path,
                reason: "no resident page count".to_owned(),
            })?;
        Ok(resident.saturating_mul(page_size()))
    }

    fn stat(&self, pid: u32) -> Result<Stat, ProcError> {
        let raw = self.read(pid, "stat")?;
        parse_stat(&String::from_utf8_lossy(&raw)).map_err(|reason| ProcError::Parse {
            path: self.path(pid, "stat"),
            reason,
        })
    }

    fn path(&self, pid: u32, file: &str) -> PathBuf {
        self.root.join(pid.to_string()).join(file)
    }

    fn read(&self, pid: u32, file: &str) -> Result<Vec<u8>, ProcError> {
        let path = self.path(pid, file);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(bytes),
            // ESRCH: the process exited while the file was open.
            Err(err)
                if err.kind() == io::ErrorKind::NotFound
                    || err.raw_os_error() == Some(libc::ESRCH) =>
            {
                Err(ProcError::NotFound { pid })
            }
            Err(source) => Err(ProcError::Read { path, source }),
        }
    }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of the times in
/// `/proc/PID/stat`. Falls back to 100, the value on every mainstream Linux build.
pub fn clock_ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| sysconf_or(SysconfVar::CLK_TCK, 100))
}

/// The memory page size in bytes (`sysconf(_SC_PAGESIZE)`), the unit of `/proc/PID/statm`.
pub fn page_size() -> u64 {
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| sysconf_or(SysconfVar::PAGE_SIZE, 4096))
}

fn sysconf_or(var: SysconfVar, fallback: u64) -> u64 {
    match sysconf(var) {
        Ok(Some(value)) if value > 0 => u64::try_from(value).unwrap_or(fallback),
        _ => fallback,
    }
}

fn ticks_to_duration(ticks: u64, per_sec: u64) -> Duration {
    let secs = ticks / per_sec;
    let rest = ticks % per_sec;
    // rest < per_sec, so rest * 1e9 / per_sec < 1e9 fits a u32.
    let nanos = u32::try_from(rest * 1_000_000_000 / per_sec).unwrap_or(0);
    Duration::new(secs, nanos)
}

/// Parses `/proc/PID/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and `)`, so the fixed fields are counted from the *last* `)`.
fn parse_stat(text: &str) -> Result<Stat, String> {
    let close = text
        .rfind(')')
        .ok_or_else(|| "no closing parenthesis after the command name".to_owned())?;
    let fields: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // fields[0] is field 3 (state); field N is fields[N - 3].
    let field = |n: usize| -> Result<&str, String> {
        fields
            .get(n - 3)
            .copied()
            .ok_or_else(|| format!("missing field {n}"))
    };
    let number = |n: usize| -> Result<u64, String> {
        let raw = field(n)?;
        raw.parse::<u64>()
            .map_err(|_| format!("field {n} is not a number: {raw:?}"))
    };
    let state = field(3)?
        .chars()
        .next()
        .ok_or_else(|| "empty state field".to_owned())?;
    let ppid = field(4)?;
    Ok(Stat {
        state,
        ppid: ppid
            .parse()
            .map_err(|_| format!("field 4 is not a number: {ppid:?}"))?,
        utime: number(14)?,
        stime: number(15)?,
        starttime: number(22)?,
    })
}

/// Finds `VmRSS:   1234 kB` in `/proc/PID/status`.
fn parse_vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

fn split_cmdline(raw: &[u8]) -> Vec<OsString> {
    let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|byte| *byte == 0)
        .map(|arg| OsString::from_vec(arg.to_vec()))
        .collect()
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
