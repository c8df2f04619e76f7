//! `banger system …`: install, inspect, restart and remove the system path
//! (owner `bangerd` + root `bangerd-root` under systemd). Facade over
//! [`install`] (files, with `--root DIR`), [`units`] (unit text),
//! [`systemd`] (`systemctl` when it runs) and [`status`].

pub mod dial_stdio;
pub mod doctor;
pub mod install;
pub mod status;
pub mod systemd;
pub mod units;

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `banger system …`.
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Install the system path: binaries, bangerd-root.service (root) and
    /// bangerd.service (the owner), /etc/banger/install.toml; then start both
    Install(InstallArgs),
    /// Show both units, the helper socket's health and the install metadata
    Status(RootArg),
    /// Restart bangerd-root and bangerd (running VMs keep running)
    Restart,
    /// Stop and remove the units and files the install created
    Uninstall(UninstallArgs),
    /// Ask bangerd-root whether it answers (and which uid it sees)
    Ping(PingArgs),
    /// Bridge stdin/stdout to this machine's bangerd (what `banger --context` runs over SSH)
    DialStdio,
}

/// `system install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// User who owns VMs and runs bangerd [default: $SUDO_USER]
    #[arg(long)]
    pub owner: Option<String>,
    /// Install into this prefix instead of / (packaging, tests); nothing is enabled
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Directory holding banger, bangerd and bangerd-root [default: this binary's directory]
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
}

/// `--root DIR`.
#[derive(Debug, Args)]
pub struct RootArg {
    /// The prefix the system path was installed into
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// `system uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The prefix the system path was installed into
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Also delete the state directory (every VM and image)
    #[arg(long)]
    pub purge: bool,
}

/// `system ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// The helper socket
    #[arg(long, value_name = "PATH", default_value = banger_config::DEFAULT_HELPER_SOCKET)]
    pub helper_socket: PathBuf,
}

/// Why a `system` command failed.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// Needs root on the real root.
    #[error(
        "`banger system {0}` changes /etc and /usr/local: run it with sudo (or pass --root DIR)"
    )]
    NeedRoot(&'static str),
    /// Unknown owner.
    #[error("no user {0:?} on this host; pass --owner with an existing user")]
    NoSuchUser(String),
    /// No owner given.
    #[error("no owner: pass --owner USER (or run through sudo, which sets $SUDO_USER)")]
    NoOwner,
    /// Root cannot be the owner.
    #[error(
        "the owner must not be root: the point of the system path is a daemon without privileges; pass --owner USER"
    )]
    RootOwner,
    /// A binary to install is missing.
    #[error("{0} does not exist; build the release binaries (`make build`) or pass --from DIR")]
    MissingBinary(PathBuf),
    /// Nothing installed.
    #[error("nothing to uninstall: {0}")]
    NotInstalled(String),
    /// A filesystem step failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}
