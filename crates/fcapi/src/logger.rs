//! `PUT /logger`: where and how much Firecracker logs.

use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{ApiEnum, ApiModel, api_enum};

/// Log level. Firecracker parses it case-insensitively and also accepts `Warn`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum LogLevel {
    /// Nothing is logged.
    Off,
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warning,
    /// Informational messages (Firecracker's default).
    #[default]
    Info,
    /// Debug messages.
    Debug,
    /// Everything.
    Trace,
}

api_enum!(LogLevel {
    Off => "Off",
    Error => "Error",
    Warning => "Warning",
    Info => "Info",
    Debug => "Debug",
    Trace => "Trace",
});

/// The level string is none of Firecracker's (its message is kept verbatim).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid LevelFilter")]
pub struct LogLevelError;

impl FromStr for LogLevel {
    type Err = LogLevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "error" => Ok(Self::Error),
            "warn" | "warning" => Ok(Self::Warning),
            "info" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            "trace" => Ok(Self::Trace),
            _ => Err(LogLevelError),
        }
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl LogLevel {
    /// The tag Firecracker prints in log lines when `show_level` is on.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Off => "OFF",
            Self::Error => "ERROR",
            Self::Warning => "WARN",
            Self::Info => "INFO",
            Self::Debug => "DEBUG",
            Self::Trace => "TRACE",
        }
    }

    /// Spec spelling, for [`ApiEnum`] users that need it as a string.
    pub fn name(self) -> &'static str {
        self.as_str()
    }
}

/// Body of `PUT /logger`. Every field is optional; a call without
/// `log_path` only changes the level/format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Logger {
    /// Log file or FIFO (created if missing, written from offset 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_path: Option<String>,
    /// Maximum level written. Default `Info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
    /// Print the level in each line. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_level: Option<bool>,
    /// Print the source file and line in each line. Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_log_origin: Option<bool>,
    /// Only log messages from this module path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

impl Logger {
    /// Logs to `log_path` at `level`, showing the level in each line.
    pub fn to_file(log_path: impl Into<String>, level: LogLevel) -> Self {
        Self {
            log_path: Some(log_path.into()),
            level: Some(level),
            show_level: Some(true),
            show_log_origin: Some(false),
            module: None,
        }
    }
}

impl ApiModel for Logger {
    const DEFINITION: &'static str = "Logger";
    const FIELDS: &'static [&'static str] = &[
        "log_path",
        "level",
        "show_level",
        "show_log_origin",
        "module",
    ];
    const REQUIRED: &'static [&'static str] = &[];

    fn sample() -> Self {
        Self {
            module: Some("api_server".into()),
            ..Self::to_file("/fc.log", LogLevel::Debug)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_parsing_matches_firecracker() {
        assert_eq!("warn".parse::<LogLevel>(), Ok(LogLevel::Warning));
        assert_eq!("DEBUG".parse::<LogLevel>(), Ok(LogLevel::Debug));
        let err = serde_json::from_str::<Logger>(r#"{"level": "Loud"}"#).unwrap_err();
        assert_eq!(err.to_string(), "Invalid LevelFilter at line 1 column 17");
        assert_eq!(
            serde_json::to_string(&LogLevel::Warning).unwrap(),
            "\"Warning\""
        );
    }
}
