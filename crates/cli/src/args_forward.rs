//! Arguments of `banger vm forward`.

use clap::Args;

use crate::args::JsonArg;

/// `banger vm forward`.
#[derive(Debug, Clone, Args)]
pub struct VmForwardArgs {
    /// VM name or id
    pub name: String,
    /// [HOST_PORT:]GUEST_PORT, e.g. 8080:80; no host port (or 0) picks a free one and prints it
    #[arg(value_name = "[HOST_PORT:]GUEST_PORT")]
    pub spec: String,
    /// Host address to listen on, e.g. 0.0.0.0 to let other machines in [default: 127.0.0.1]
    #[arg(long, value_name = "ADDR")]
    pub address: Option<String>,
    /// Remove the VM's forward(s) to GUEST_PORT instead (only the one on HOST_PORT or --address when given)
    #[arg(long)]
    pub remove: bool,
    #[command(flatten)]
    pub json: JsonArg,
}
