//! `banger completions SHELL`.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::Cli;
use crate::context::Ctx;
use crate::error::CliError;

/// Print the completion script for `shell`.
pub fn run(ctx: &mut Ctx, shell: Shell) -> Result<(), CliError> {
    clap_complete::generate(shell, &mut Cli::command(), "banger", ctx.out);
    Ok(())
}
