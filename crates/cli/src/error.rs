//! The CLI's errors, their exit codes and how they are printed.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (daemon internal error, config file, I/O, failed doctor check) |
//! | 2 | usage: bad arguments (clap) or values refused before reaching the daemon |
//! | 3 | not found |
//! | 4 | conflict (name taken, wrong state) |
//! | 5 | version mismatch or permission denied |
//! | 6 | the daemon is not reachable |

use std::error::Error;
use std::io::{self, Write};

use banger_api::RpcError;
use banger_config::ConfigError;

use crate::client::ClientError;

/// Exit code when the daemon cannot be reached.
pub const EXIT_UNREACHABLE: i32 = 6;
/// Exit code for usage errors.
pub const EXIT_USAGE: i32 = 2;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Talking to the daemon failed or the daemon refused the request.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// An argument was refused before anything was sent.
    #[error("{0}")]
    Usage(String),
    /// The config file could not be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An operation the daemon ran in the background failed.
    #[error("{message}")]
    Operation {
        /// Which operation, at which step, and where to look.
        message: String,
        /// The daemon's error (its kind gives the exit code).
        #[source]
        source: RpcError,
    },
    /// Writing the output failed.
    #[error("cannot write the output")]
    Output(#[source] io::Error),
    /// A context could not be used, added or removed.
    #[error(transparent)]
    Context(#[from] crate::contexts::ContextError),
    /// The command ran but found problems (e.g. a failed doctor check).
    #[error("{message}")]
    Failed {
        /// What went wrong and what to do.
        message: String,
        /// The exit code.
        code: i32,
    },
}

impl From<RpcError> for CliError {
    fn from(e: RpcError) -> Self {
        CliError::Client(ClientError::Rpc(e))
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Output(e)
    }
}

impl CliError {
    /// A local validation failure (exit 2), from `banger_api::validate`.
    pub fn usage(e: impl std::fmt::Display) -> Self {
        CliError::Usage(e.to_string())
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Client(e) => e.exit_code(),
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Failed { code, .. } => *code,
            CliError::Context(e) => e.exit_code(),
            CliError::Operation { source, .. } => source.kind.exit_code(),
            CliError::Config(_) | CliError::Output(_) => 1,
        }
    }

    /// Whether stdout went away (`banger vm list | head`): not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// An error and its causes on one line (`a: b: c`).
pub fn chain(e: &dyn Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Print `error: <message>` and the numbered chain of causes.
pub fn report(err: &dyn Error, w: &mut dyn Write) {
    let _ = writeln!(w, "error: {err}");
    let mut source = err.source();
    let mut n = 1;
    while let Some(cause) = source {
        let _ = writeln!(w, "  {n}: {cause}");
        n += 1;
        source = cause.source();
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use banger_api::ErrorKind;

    use super::*;

    #[test]
    fn report_numbers_the_causes() {
        let e = CliError::Client(ClientError::Connect {
            socket: PathBuf::from("/run/x.sock"),
            source: io::Error::new(io::ErrorKind::NotFound, "No such file or directory"),
        });
        let mut buf = Vec::new();
        report(&e, &mut buf);
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("error: bangerd is not reachable at /run/x.sock"),
            "{text}"
        );
        assert!(lines[0].contains("start it with `bangerd`"), "{text}");
        assert_eq!(lines[1], "  1: No such file or directory");
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn exit_codes() {
        let rpc = |k| CliError::from(RpcError::new(k, "x")).exit_code();
        assert_eq!(rpc(ErrorKind::NotFound), 3);
        assert_eq!(rpc(ErrorKind::Conflict), 4);
        assert_eq!(rpc(ErrorKind::InvalidArgument), 2);
        assert_eq!(rpc(ErrorKind::Internal), 1);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        let unreachable = CliError::Client(ClientError::Connect {
            socket: PathBuf::new(),
            source: io::Error::from(io::ErrorKind::ConnectionRefused),
        });
        assert_eq!(unreachable.exit_code(), EXIT_UNREACHABLE);
        assert!(CliError::Output(io::Error::from(io::ErrorKind::BrokenPipe)).is_broken_pipe());
    }
}
