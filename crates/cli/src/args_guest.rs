//! Arguments of the guest-access and workspace commands.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};

use crate::args::JsonArg;

/// `banger workspace …`.
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Copy a git checkout (tracked + untracked-not-ignored files, HEAD,
    /// branch) into a running VM; later runs send only what changed
    Prepare(WorkspacePrepareArgs),
    /// Bring the VM's commits and uncommitted changes back as a branch
    /// (default banger/VM) or a patch file, never touching your working tree
    Export(WorkspaceExportArgs),
    /// Copy the dotfiles listed in `[guest] sync_files` into the VM
    SyncFiles(crate::args::VmArg),
}

/// `banger workspace prepare`.
#[derive(Debug, Clone, Args)]
pub struct WorkspacePrepareArgs {
    /// VM name or id
    pub vm: String,
    /// A path inside the checkout [default: the current directory]
    pub path: Option<PathBuf>,
    /// Send everything, ignoring what the last prepare sent
    #[arg(long)]
    pub full: bool,
    /// Skip asking the VM which files changed inside it since the last
    /// prepare (faster; files changed or deleted in the VM stay as they are)
    #[arg(long, conflicts_with = "full")]
    pub trust_guest: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger workspace export`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("target").args(["branch", "patch"])))]
pub struct WorkspaceExportArgs {
    /// VM name or id
    pub vm: String,
    /// A path inside the host checkout that was prepared [default: the current directory]
    #[arg(long, value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Branch to write [default: banger/VM]
    #[arg(long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// Write a patch series (git format-patch) to FILE instead of a branch
    #[arg(long, value_name = "FILE")]
    pub patch: Option<PathBuf>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger vm ssh`.
#[derive(Debug, Clone, Args)]
pub struct VmSshArgs {
    /// VM name or id
    pub name: String,
    /// Command to run instead of a login shell (after `--`)
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `banger ssh-config`.
#[derive(Debug, Clone, Args)]
pub struct SshConfigArgs {
    /// Print the include to stdout instead of writing this daemon's file in ~/.ssh/config.d/ (banger, banger-<hash>, or banger-CONTEXT with a remote context)
    #[arg(long)]
    pub print: bool,
    /// Do not add `Include ~/.ssh/config.d/banger*` to ~/.ssh/config
    #[arg(long, conflicts_with = "print")]
    pub no_include: bool,
}
