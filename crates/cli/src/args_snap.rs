//! Arguments of `vm snapshot` and `vm fork` (issue 15).

use clap::{Args, Subcommand};

use crate::args::JsonArg;

/// `banger vm snapshot NAME SNAP`, or `vm snapshot list|delete …`.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct VmSnapshotArgs {
    #[command(subcommand)]
    pub command: Option<VmSnapshotCommand>,
    /// VM name or id (to take a snapshot)
    pub vm: Option<String>,
    /// Snapshot name: a DNS label
    pub snapshot: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger vm snapshot list|delete`.
#[derive(Debug, Clone, Subcommand)]
pub enum VmSnapshotCommand {
    /// List a VM's snapshots
    #[command(visible_alias = "ls")]
    List(crate::args::VmArg),
    /// Delete a snapshot
    #[command(visible_alias = "rm")]
    Delete(VmSnapshotRef),
}

/// A VM and one of its snapshots.
#[derive(Debug, Clone, Args)]
pub struct VmSnapshotRef {
    /// VM name or id
    pub vm: String,
    /// Snapshot name
    pub snapshot: String,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger vm fork SRC NEW [--from SNAP]`.
#[derive(Debug, Clone, Args)]
pub struct VmForkArgs {
    /// The VM to fork (running or paused, unless --from names its snapshot)
    pub source: String,
    /// The new VM's name: a DNS label
    pub name: String,
    /// Restore this snapshot of SOURCE instead of taking a new one
    #[arg(long, value_name = "SNAP")]
    pub from: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}
