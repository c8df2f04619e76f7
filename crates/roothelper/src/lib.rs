//! `bangerd-root`: the narrow root helper of the system path.
//!
//! It serves the operations of `banger-privops` — and nothing else — on a
//! Unix socket to the installed owner (`install.toml`), validating every
//! request against a policy taken from its own configuration. It links no
//! daemon code, only `banger-privops` and `banger-config` (which holds
//! `install_meta`, the file `banger system install` writes):
//! [`policy_source`] (policy from that file and the daemon config),
//! [`server`] (socket, peer check, limits, logging), [`jailer`] (optional
//! jailer argv).
#![warn(missing_docs)]

pub mod jailer;
pub mod policy_source;
pub mod server;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use banger_config::install_meta::{INSTALL_META, InstallMeta};
use banger_privops::LocalPrivOps;

/// The banger root helper: performs banger's privileged host operations
/// for the installed owner, nothing else.
#[derive(Debug, Parser)]
#[command(name = "bangerd-root", version, about)]
pub struct Args {
    /// Install metadata (owner, paths).
    #[arg(long, env = "BANGER_INSTALL_META", default_value = INSTALL_META, value_name = "FILE")]
    pub config: PathBuf,
    /// Socket path [default: helper_socket from the install metadata].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Seconds one request may take, from its first byte to its last.
    #[arg(long, default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Seconds a connection may wait before its next request starts.
    #[arg(long, default_value_t = 10)]
    pub idle_timeout_secs: u64,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "BANGER_LOG", default_value = "info")]
    pub log: String,
}

/// Run `bangerd-root`; returns the exit code.
pub fn main() -> i32 {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    match run(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bangerd-root: {e}");
            1
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if !nix::unistd::geteuid().is_root() {
        return Err("must run as root (it is started by bangerd-root.service)".into());
    }
    // One thread and a few descriptors per connection and per VMM it
    // spawned: use all the unit allows (`LimitNOFILE=`).
    banger_privops::raise_and_log_nofile_limit();
    let meta = InstallMeta::load(&args.config).map_err(|e| chain(&e))?;
    if meta.jailer.is_some() {
        return Err(format!(
            "[jailer] in {} is not supported by this version yet (only its argument construction is); remove it",
            args.config.display()
        ));
    }
    let policy = policy_source::policy(&meta).map_err(|e| chain(&e))?;
    let socket = args.socket.unwrap_or(meta.paths.helper_socket.clone());
    let bound = server::bind(&socket, meta.owner_uid).map_err(|e| chain(&e))?;
    tracing::info!(
        socket = %socket.display(),
        owner_uid = meta.owner_uid,
        policy = %server::describe(&policy),
        "bangerd-root {} ready",
        env!("CARGO_PKG_VERSION")
    );
    // The socket is listening: connections from now on queue and are
    // served, so systemd may start bangerd (ordered after this unit).
    banger_privops::notify_ready(&format!(
        "serving {} for uid {}",
        socket.display(),
        meta.owner_uid
    ));
    server::serve(
        bound,
        LocalPrivOps::new(policy),
        server::ServeOptions {
            request_timeout: Duration::from_secs(args.request_timeout_secs.clamp(1, 3600)),
            idle_timeout: Duration::from_secs(args.idle_timeout_secs.clamp(1, 3600)),
            ..server::ServeOptions::new(meta.owner_uid)
        },
    );
    Ok(())
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    /// The helper links no daemon code: only the seam and the config.
    #[test]
    fn links_only_privops_and_config() {
        assert_eq!(
            banger_testsupport::banger_dependencies(include_str!("../Cargo.toml")),
            ["banger-config", "banger-privops"]
        );
    }
}
