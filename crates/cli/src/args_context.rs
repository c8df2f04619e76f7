//! Arguments of `banger context …`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::args::JsonArg;

/// `banger context …`.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Name a host whose bangerd banger reaches over SSH
    Add(ContextAddArgs),
    /// Make a context the default for later commands (`local`: this machine)
    Use(ContextNameArg),
    /// List the contexts; `*` marks the one in effect
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Forget a context (the remote host is not touched)
    #[command(visible_alias = "remove")]
    Rm(ContextNameArg),
}

/// `banger context add`.
#[derive(Debug, Clone, Args)]
pub struct ContextAddArgs {
    /// Context name (letters, digits, '.', '_', '-')
    pub name: String,
    /// The host: ssh://[user@]host[:port]
    pub url: String,
    /// An ssh config file for this host (passed to ssh as -F FILE)
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

/// A context name.
#[derive(Debug, Clone, Args)]
pub struct ContextNameArg {
    /// Context name
    pub name: String,
}
