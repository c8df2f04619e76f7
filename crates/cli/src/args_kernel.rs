//! Arguments of `banger kernel …` and `banger image promote`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::args::{JsonArg, NameArg};

/// `banger kernel …`.
#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// List registered kernels
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Download a kernel from the catalog (`kernel_catalog` config key), verify its sha256, register it
    Pull(NameArg),
    /// Register a local kernel: an ELF vmlinux, or a bzImage (its vmlinux is extracted)
    Register(KernelRegisterArgs),
    /// Delete a kernel that no image uses
    #[command(visible_alias = "rm")]
    Delete(NameArg),
    /// Check a kernel's embedded config (CONFIG_IKCONFIG) against Firecracker's guest-kernel requirements
    Check(KernelCheckArgs),
    /// Build banger's microVM kernel from Debian's linux-source (cached) and register it
    Build(KernelBuildArgs),
}

/// `banger kernel build`.
#[derive(Debug, Clone, Args)]
pub struct KernelBuildArgs {
    /// Name to register the kernel under (`banger image build` uses `microvm` by default)
    #[arg(long, default_value = "microvm")]
    pub name: String,
    /// Build even if the build cache has this source and config
    #[arg(long)]
    pub no_cache: bool,
    /// Build in the background and return at once (follow with `banger operation watch ID`)
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger kernel check`.
#[derive(Debug, Clone, Args)]
pub struct KernelCheckArgs {
    /// A registered kernel, or a kernel file (ELF vmlinux or bzImage; anything with a '/' or an existing file)
    pub kernel: String,
    /// KERNEL is a plain `.config` file (e.g. /boot/config-*), not a kernel image
    #[arg(long)]
    pub dot_config: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger kernel register`.
#[derive(Debug, Clone, Args)]
pub struct KernelRegisterArgs {
    /// Kernel name (letters, digits, '-', '.', '_')
    pub name: String,
    /// ELF vmlinux or bzImage
    pub file: PathBuf,
    /// Version string to record
    #[arg(long, value_name = "VERSION")]
    pub kernel_version: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger image promote`.
#[derive(Debug, Clone, Args)]
pub struct ImagePromoteArgs {
    /// The stopped VM (name or id)
    pub vm: String,
    /// Name of the new image
    pub name: String,
    #[command(flatten)]
    pub json: JsonArg,
}
