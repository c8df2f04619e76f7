//! Arguments of the everyday verbs: `banger shell`, `vm cp`, several names
//! for `vm start`, the creation spec and provisioning options of
//! `vm create`, and the hidden `__complete` used by the completion scripts.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::args::JsonArg;

/// `banger shell`.
#[derive(Debug, Clone, Args)]
pub struct ShellArgs {
    /// VM name or id [default: `vm.default_name` from the config, created when missing]
    pub name: Option<String>,
    /// Command to run instead of a login shell (after `--`); its exit code is banger's
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// Several VM names, plus `--json`.
#[derive(Debug, Clone, Args)]
pub struct VmNamesArg {
    /// VM names or ids
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger vm cp`.
#[derive(Debug, Clone, Args)]
pub struct VmCpArgs {
    /// Source: a host path, or NAME:PATH in a VM (relative to the guest user's home)
    pub src: String,
    /// Destination: NAME:PATH in a VM, or a host path (one side must be a VM)
    pub dst: String,
    /// Accepted for scp habits: directories are always copied recursively
    #[arg(short, long)]
    pub recursive: bool,
}

/// The options `vm create` has beyond the resources.
#[derive(Debug, Clone, Args)]
pub struct VmCreateMore {
    /// Create from a TOML spec (image, resources, provision scripts, workspace); flags override it
    #[arg(long = "file", short = 'f', value_name = "FILE.toml")]
    pub spec: Option<PathBuf>,
    /// Run this script in the guest as the guest user after the first boot (repeatable, in order)
    #[arg(long, value_name = "FILE")]
    pub provision: Vec<PathBuf>,
}

/// What `__complete` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompleteWhat {
    /// VM names.
    Vms,
    /// Image names.
    Images,
}

/// `banger __complete`.
#[derive(Debug, Clone, Args)]
pub struct CompleteArgs {
    /// What to list
    pub what: CompleteWhat,
}
