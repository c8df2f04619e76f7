//! The command line, as clap parses it. `--timeout` (0-3600) and `--tail`
//! (1-10000) carry their ranges here, the same as `banger_api::validate`;
//! `--vcpus` and the sizes are checked by the commands with
//! `banger_api::validate` (for its messages) before anything reaches the
//! daemon, and the daemon checks everything again (the RPC is the trust
//! boundary).

use std::path::PathBuf;

use banger_api::ByteSize;
use clap::{ArgGroup, Args, Parser, Subcommand};
use clap_complete::Shell;

/// Disposable Firecracker microVMs for development.
///
/// banger talks to the bangerd daemon over its RPC socket. Start a dev
/// daemon with `bangerd`; `banger doctor` checks the host.
#[derive(Debug, Parser)]
#[command(
    name = "banger",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options that locate the daemon.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

// Everyday verbs (issue 17): `shell`, `vm cp`, `__complete` live in args_verbs.rs.

/// Where the daemon and its files are.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// bangerd's RPC socket [default: derived from the config file and the layout]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BANGER_SOCKET",
        value_name = "PATH"
    )]
    pub socket: Option<PathBuf>,
    /// State directory of the daemon to talk to (as given to `bangerd --state-dir`)
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BANGER_STATE_DIR",
        value_name = "DIR"
    )]
    pub state_dir: Option<PathBuf>,
    /// Config file [default: ~/.config/banger/config.toml, /etc/banger/config.toml with --system]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "BANGER_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// Use the system paths (/etc/banger, /var/lib/banger, /run/banger)
    #[arg(long, global = true, help_heading = "Global options")]
    pub system: bool,
    /// Talk to the bangerd of context NAME over SSH (`banger context list`; `local`: this machine) [env: BANGER_CONTEXT]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        value_name = "NAME"
    )]
    pub context: Option<String>,
    /// Print only what scripts need (names or ids), no progress or hints
    #[arg(long, short, global = true, help_heading = "Global options")]
    pub quiet: bool,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, run and inspect VMs
    #[command(subcommand)]
    Vm(VmCommand),
    /// Open a shell (or run a command after `--`) in a VM, creating the default VM if needed
    Shell(crate::args_verbs::ShellArgs),
    /// Names for the completion scripts (`vms` or `images`), one per line
    #[command(name = "__complete", hide = true)]
    Complete(crate::args_verbs::CompleteArgs),
    /// Register and manage images (root filesystem + kernel)
    #[command(subcommand)]
    Image(ImageCommand),
    /// Inspect and follow asynchronous daemon operations
    #[command(subcommand, visible_alias = "op")]
    Operation(OperationCommand),
    /// Show the daemon's version, uptime and VM counts
    Status(JsonArg),
    /// Check that this host can run banger VMs, with a hint for each problem
    Doctor(JsonArg),
    /// Print the default or the effective configuration
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the host network banger created (bridge, TAPs, NAT)
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Copy a git checkout into a VM and bring work back
    #[command(subcommand, visible_alias = "ws")]
    Workspace(crate::args_guest::WorkspaceCommand),
    /// Write an ssh_config include so `ssh NAME.vm` works from your shell
    SshConfig(crate::args_guest::SshConfigArgs),
    /// Download, register and delete kernels (the kernel catalog)
    #[command(subcommand)]
    Kernel(crate::args_kernel::KernelCommand),
    /// Print a shell completion script (e.g. `banger completions bash > /etc/bash_completion.d/banger`)
    Completions {
        /// Shell to generate completions for
        shell: Shell,
    },
    /// Install, inspect, restart or remove the system path (bangerd + bangerd-root under systemd)
    #[command(subcommand)]
    System(crate::system::SystemCommand),
    /// Re-seed images with the current SSH keys and guest agent
    #[command(subcommand)]
    ManagedSeed(ManagedSeedCommand),
    /// Name remote hosts whose bangerd banger reaches over SSH (`--context`)
    #[command(subcommand)]
    Context(crate::args_context::ContextCommand),
}

/// `banger managed-seed …`.
#[derive(Debug, Subcommand)]
pub enum ManagedSeedCommand {
    /// Re-seed images whose keys, guest agent or guest user changed since they were seeded
    Refresh(ManagedSeedRefreshArgs),
}

/// `banger managed-seed refresh`.
#[derive(Debug, Clone, Args)]
pub struct ManagedSeedRefreshArgs {
    /// Only this image (name or id) [default: all images]
    #[arg(long)]
    pub image: Option<String>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger network ...`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Remove banger's bridge, TAP devices and NAT table and restore IPv4 forwarding (no VM may run)
    Reset(JsonArg),
}

/// `--json`.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonArg {
    /// Print JSON (the API model) instead of a table
    #[arg(long)]
    pub json: bool,
}

/// A VM name or id, plus `--json`.
#[derive(Debug, Clone, Args)]
pub struct VmArg {
    /// VM name or id
    pub name: String,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger vm …`.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create a VM and boot it, following its progress
    Create(VmCreateArgs),
    /// Boot stopped VMs
    Start(crate::args_verbs::VmNamesArg),
    /// Stop VMs (Ctrl-Alt-Del, then kill after the timeout)
    Stop(VmStopArgs),
    /// Stop a VM if it runs, then start it
    Restart(VmStopArgs),
    /// Kill a VM's VMM immediately
    Kill(VmArg),
    /// Delete VMs and their disks
    #[command(visible_alias = "rm")]
    Delete(VmDeleteArgs),
    /// Change the resources of a stopped VM
    Set(VmSetArgs),
    /// List VMs
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Show a VM in detail
    Show(VmArg),
    /// Show a VM's CPU, memory and disk use
    Stats(VmArg),
    /// Print the last lines of a VM's serial console (or VMM) log
    Logs(VmLogsArgs),
    /// Open a shell (or run a command after `--`) in a VM over SSH
    Ssh(crate::args_guest::VmSshArgs),
    /// List the VM's listening TCP/UDP ports as NAME.vm:PORT, and its port forwards
    Ports(VmArg),
    /// Forward a host TCP port to a guest port (on 127.0.0.1 unless --address; kept across restarts), or --remove it
    Forward(crate::args_forward::VmForwardArgs),
    /// Copy files between the host and a VM (`NAME:/path` on one side)
    Cp(crate::args_verbs::VmCpArgs),
    // Snapshots (issue 15): arguments in args_snap.rs.
    /// Stop a running VM's vCPUs (state `paused`)
    Pause(VmArg),
    /// Continue a paused VM
    Resume(VmArg),
    /// Save a VM's memory and devices to disk and end its VMM; `vm start` resumes it
    Suspend(VmArg),
    /// Take a snapshot (`vm snapshot NAME SNAP`), or list or delete snapshots
    Snapshot(crate::args_snap::VmSnapshotArgs),
    /// A new running VM from a snapshot of SOURCE, with its own disks, name and address
    Fork(crate::args_snap::VmForkArgs),
}

/// `banger vm create`.
#[derive(Debug, Clone, Args)]
pub struct VmCreateArgs {
    /// Name of the new VM: a DNS label (the guest becomes NAME.vm) [default: `name` from the spec]
    #[arg(required_unless_present = "spec")]
    pub name: Option<String>,
    #[command(flatten)]
    pub more: crate::args_verbs::VmCreateMore,
    /// Image name or id [default: `vm.image` from the config]
    #[arg(long)]
    pub image: Option<String>,
    /// Virtual CPUs, 1 to 32 [default: `vm.vcpus` from the config]
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u32>,
    /// Guest memory, e.g. 512M or 2G [default: `vm.memory` from the config]
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<ByteSize>,
    /// Root disk size, e.g. 20G [default: `vm.disk` from the config]
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<ByteSize>,
    /// Persistent work disk size (the guest user's home), e.g. 20G [default: `vm.work_disk` from the config]
    #[arg(long, value_name = "SIZE")]
    pub work_disk: Option<ByteSize>,
    /// Create the VM without booting it
    #[arg(long, conflicts_with = "provision")]
    pub no_start: bool,
    /// Boot in the background and return at once (follow with `banger operation watch ID`)
    #[arg(long, conflicts_with_all = ["no_start", "provision"])]
    pub detach: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger vm stop|restart`.
#[derive(Debug, Clone, Args)]
pub struct VmStopArgs {
    /// VM names or ids
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Seconds to wait after Ctrl-Alt-Del before killing, 0 to 3600 [default: `daemon.stop_timeout_secs`]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub timeout: Option<u64>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger vm delete`.
#[derive(Debug, Clone, Args)]
pub struct VmDeleteArgs {
    /// VM names or ids
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
    /// Kill the VM first if it is running
    #[arg(long, short)]
    pub force: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger vm set`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args(["vcpus", "memory", "disk", "work_disk"])))]
pub struct VmSetArgs {
    /// VM name or id
    pub name: String,
    /// New number of virtual CPUs, 1 to 32
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u32>,
    /// New guest memory, e.g. 2G
    #[arg(long, value_name = "SIZE")]
    pub memory: Option<ByteSize>,
    /// New root disk size (disks only grow), e.g. 40G
    #[arg(long, value_name = "SIZE")]
    pub disk: Option<ByteSize>,
    /// New work disk size (disks only grow), e.g. 40G
    #[arg(long, value_name = "SIZE")]
    pub work_disk: Option<ByteSize>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger vm logs`.
#[derive(Debug, Clone, Args)]
pub struct VmLogsArgs {
    /// VM name or id
    pub name: String,
    /// Read the VMM's (Firecracker's) log instead of the serial console
    #[arg(long)]
    pub vmm: bool,
    /// Number of last lines (at most 10000) [default: 100]
    #[arg(long, short = 'n', value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub tail: Option<u32>,
    /// Keep printing new lines as they are written (Ctrl-C stops)
    #[arg(long, short, conflicts_with = "json")]
    pub follow: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Register local rootfs and kernel files as an image (the daemon copies them)
    Register(ImageRegisterArgs),
    /// List images
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Show an image
    Show(NameArg),
    /// Delete an image that no VM uses
    #[command(visible_alias = "rm")]
    Delete(NameArg),
    /// Pull an image from an OCI registry (Docker Hub, GHCR, a local registry…) or a bundle file/URL
    Pull(ImagePullArgs),
    /// Write an image (root filesystem, kernel, work seed) to one bundle file
    ExportBundle(ImageExportBundleArgs),
    /// Turn a stopped VM's root disk into a new image (same kernel and initrd)
    Promote(crate::args_kernel::ImagePromoteArgs),
    /// Build a VM-ready Debian image locally with mmdebstrap (kernel and initrd included)
    Build(ImageBuildArgs),
}

/// An image name or id, plus `--json`.
#[derive(Debug, Clone, Args)]
pub struct NameArg {
    /// Image name or id
    pub name: String,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger image register`.
#[derive(Debug, Clone, Args)]
pub struct ImageRegisterArgs {
    /// Image name (letters, digits, '-', '.', '_')
    pub name: String,
    /// Root filesystem image (ext4)
    #[arg(long, value_name = "FILE")]
    pub rootfs: PathBuf,
    /// Kernel: an ELF vmlinux, or a bzImage (its vmlinux is extracted)
    #[arg(long, value_name = "FILE", required_unless_present = "kernel_name")]
    pub kernel: Option<PathBuf>,
    /// A registered kernel (`banger kernel list`) instead of --kernel
    #[arg(long, value_name = "NAME", conflicts_with = "kernel")]
    pub kernel_name: Option<String>,
    /// Initial ramdisk
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger image pull`.
#[derive(Debug, Clone, Args)]
pub struct ImagePullArgs {
    /// Image reference (docker.io/library/debian:12, 127.0.0.1:5000/dev/app:1),
    /// a bundle file (./debian.bundle.tar) or a bundle URL (https://…)
    pub reference: String,
    /// Image name [default: the repository's last component, plus the tag unless `latest`]
    #[arg(long)]
    pub name: Option<String>,
    /// Kernel to boot the image with: an ELF vmlinux, or a bzImage (its vmlinux is extracted)
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// A registered kernel (`banger kernel list`) to boot the image with, instead of --kernel
    #[arg(long, value_name = "NAME", conflicts_with = "kernel")]
    pub kernel_name: Option<String>,
    /// Platform picked from a multi-platform image
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", default_value = "linux/amd64")]
    pub platform: String,
    /// Pull in the background and return at once (follow with `banger operation watch ID`)
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger image export-bundle`.
#[derive(Debug, Clone, Args)]
pub struct ImageExportBundleArgs {
    /// Image name or id
    pub name: String,
    /// Bundle file to write (must not exist)
    pub file: PathBuf,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger operation …`.
#[derive(Debug, Subcommand)]
pub enum OperationCommand {
    /// List recent operations
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Show one operation
    Show(OpArg),
    /// Follow an operation until it finishes
    Watch(OpArg),
}

/// An operation id, plus `--json`.
#[derive(Debug, Clone, Args)]
pub struct OpArg {
    /// Operation id
    pub id: String,
    #[command(flatten)]
    pub json: JsonArg,
}

/// `banger config …`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print an annotated config file with every key at its default
    Default,
    /// Print the effective configuration and the resolved paths
    Show(JsonArg),
}

/// `banger image build`.
#[derive(Debug, Clone, Args)]
pub struct ImageBuildArgs {
    /// Image name [default: debian-SUITE]
    #[arg(long)]
    pub name: Option<String>,
    /// Debian suite or codename
    #[arg(long, default_value = "bookworm")]
    pub suite: String,
    /// Debian mirror URL [default: the host's apt mirror if the host is Debian, else http://deb.debian.org/debian]
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Extra packages to install (comma-separated; may be repeated)
    #[arg(long, value_name = "PKG,...")]
    pub include: Vec<String>,
    /// Bootstrap again even if a cached bootstrap of the same recipe exists
    #[arg(long)]
    pub no_cache: bool,
    /// A registered kernel to boot the image with [default: `microvm` (`banger kernel build`) when registered]
    #[arg(long, value_name = "NAME", conflicts_with = "debian_kernel")]
    pub kernel_name: Option<String>,
    /// Install Debian's cloud kernel and an initrd in the image (the default when no `microvm` kernel is registered)
    #[arg(long)]
    pub debian_kernel: bool,
    /// Build in the background and return at once (follow with `banger operation watch ID`)
    #[arg(long)]
    pub detach: bool,
    #[command(flatten)]
    pub json: JsonArg,
}
