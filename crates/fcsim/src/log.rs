//! Firecracker-like log lines, to stdout until `PUT /logger` names a file.
//!
//! Line format (Firecracker's): `TIMESTAMP [ID:THREAD(:LEVEL)(:ORIGIN)] message`.
//! The level tag appears when `show_level` is set, the origin with
//! `show_log_origin`. Like Firecracker, the file is opened read-write,
//! created when missing and written from offset 0 without truncation.

use std::fmt::Display;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Mutex;

use banger_fcapi::{LogLevel, Logger};

use crate::clock::timestamp;

/// Where log lines go.
enum Target {
    Stdout,
    File(File),
}

struct LogState {
    id: String,
    level: LogLevel,
    show_level: bool,
    show_origin: bool,
    module: Option<String>,
    target: Target,
}

/// The simulator's logger, shared by the API server and the fake VMM.
pub struct SimLog {
    state: Mutex<LogState>,
}

impl SimLog {
    /// A logger for instance `id` writing `Info` and above to stdout.
    pub fn new(id: &str) -> Self {
        Self {
            state: Mutex::new(LogState {
                id: id.to_string(),
                level: LogLevel::Info,
                show_level: false,
                show_origin: false,
                module: None,
                target: Target::Stdout,
            }),
        }
    }

    /// Opens a log file the way Firecracker does (read-write, create, no truncate).
    pub fn open_file(path: &Path) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
    }

    /// Applies a `PUT /logger` body (or the equivalent command-line flags).
    pub fn configure(&self, cfg: &Logger) -> io::Result<()> {
        let file = match &cfg.log_path {
            Some(path) => Some(Self::open_file(Path::new(path))?),
            None => None,
        };
        let mut state = self.lock();
        if let Some(file) = file {
            state.target = Target::File(file);
        }
        if let Some(level) = cfg.level {
            state.level = level;
        }
        if let Some(show_level) = cfg.show_level {
            state.show_level = show_level;
        }
        if let Some(show_origin) = cfg.show_log_origin {
            state.show_origin = show_origin;
        }
        if cfg.module.is_some() {
            state.module = cfg.module.clone();
        }
        Ok(())
    }

    /// Writes one line from `thread` at `level`; `origin` is the module shown
    /// with `show_log_origin` and matched by the `module` filter.
    pub fn log(&self, thread: &str, level: LogLevel, origin: &str, message: impl Display) {
        let mut state = self.lock();
        if level == LogLevel::Off || level > state.level {
            return;
        }
        if let Some(module) = &state.module
            && !origin.starts_with(module.as_str())
        {
            return;
        }
        let mut tag = format!("{}:{thread}", state.id);
        if state.show_level {
            tag.push(':');
            tag.push_str(level.tag());
        }
        if state.show_origin {
            tag.push(':');
            tag.push_str(origin);
        }
        let line = format!("{} [{tag}] {message}\n", timestamp());
        // A failed log write is dropped, as Firecracker only counts it in a metric.
        let _ = match &mut state.target {
            Target::Stdout => write_stdout(line.as_bytes()),
            Target::File(file) => file.write_all(line.as_bytes()).and_then(|()| file.flush()),
        };
    }

    /// `log` at `Info`.
    pub fn info(&self, thread: &str, origin: &str, message: impl Display) {
        self.log(thread, LogLevel::Info, origin, message);
    }

    /// `log` at `Warning`.
    pub fn warn(&self, thread: &str, origin: &str, message: impl Display) {
        self.log(thread, LogLevel::Warning, origin, message);
    }

    /// `log` at `Error`.
    pub fn error(&self, thread: &str, origin: &str, message: impl Display) {
        self.log(thread, LogLevel::Error, origin, message);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Writes raw bytes to stdout and flushes (shared with the fake serial console).
pub fn write_stdout(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_lines_carry_id_thread_and_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fc.log");
        let log = SimLog::new("vm-1");
        log.configure(&Logger::to_file(path.to_str().unwrap(), LogLevel::Info))
            .unwrap();
        log.info("main", "vmm", "hello");
        log.log("main", LogLevel::Debug, "vmm", "hidden");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(" [vm-1:main:INFO] hello\n"), "{text}");
        assert!(!text.contains("hidden"));
    }
}
