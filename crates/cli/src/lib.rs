//! The `banger` command-line interface and the synchronous RPC client for
//! `bangerd`.
//!
//! The thin binary calls [`main`]; tests and other tools may call [`run`]
//! with their own arguments and output buffers. [`client::Client`] is the
//! daemon client the CLI, the integration tests and the benchmark share.
//!
//! Flow of one invocation: clap parses the arguments ([`args`]), the
//! command's module in `commands/` checks them with `banger_api::validate`,
//! connects through [`client`], and prints a table (`render`) or the API
//! model as JSON. Errors become exit codes and a numbered cause chain
//! (`error`).
#![warn(missing_docs)]

use std::ffi::OsString;
use std::io::Write;

use clap::Parser;

mod args;
mod args_context;
mod args_forward;
mod args_guest;
mod args_kernel;
mod args_verbs;
pub mod client;
mod commands;
mod context;
mod contexts;
mod error;
#[cfg(test)]
mod forward_tests;
#[cfg(test)]
mod kernel_check_tests;
mod output;
mod progress;
pub mod remote;
mod render;
pub mod system;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod tunnel;
#[cfg(test)]
mod verbs_tests;

pub use error::{EXIT_UNREACHABLE, EXIT_USAGE};
pub use output::Term;

/// Run `banger` with the process's arguments and streams; returns the exit code.
pub fn main() -> i32 {
    run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
        Term::detect(),
    )
}

/// Run `banger` with `args` (the first is the program name), writing results
/// to `out` and messages to `err`; returns the exit code.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write, term: Term) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match args::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let text = if term.color {
                e.render().ansi().to_string()
            } else {
                e.render().to_string()
            };
            let stream: &mut dyn Write = if e.use_stderr() { err } else { out };
            let _ = stream.write_all(text.as_bytes());
            return e.exit_code();
        }
    };
    // `-q`: progress, notes and hints go nowhere; errors still reach `err`.
    let mut sink = std::io::sink();
    let quiet = cli.global.quiet;
    let (notes, errors): (&mut dyn Write, Option<&mut dyn Write>) = if quiet {
        (&mut sink, Some(err))
    } else {
        (err, None)
    };
    let mut ctx = context::Ctx {
        global: cli.global,
        out,
        err: notes,
        term,
    };
    let result = commands::run(cli.command, &mut ctx).and_then(|()| Ok(ctx.out.flush()?));
    match result {
        Ok(()) => 0,
        Err(e) if e.is_broken_pipe() => 0,
        Err(e) => {
            error::report(&e, errors.unwrap_or(ctx.err));
            e.exit_code()
        }
    }
}
