//! `bangerd`'s command line: parse, wire, run, map errors to an exit code.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;

use crate::common::error::error_chain;
use crate::config::{Config, Layout, Mode};
use crate::root::daemon::{Daemon, OpenOptions};
use crate::root::rpc;

/// The banger owner daemon. VMs keep running when it stops; the next start
/// adopts them.
#[derive(Debug, Parser)]
#[command(name = "bangerd", version, about)]
pub struct Args {
    /// State directory (dev path); sockets go to <DIR>/run unless configured.
    #[arg(long, env = "BANGER_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Config file [default: ~/.config/banger/config.toml, or /etc/banger/config.toml with --system].
    #[arg(long, env = "BANGER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Use the system layout (/var/lib/banger, /run/banger, /etc/banger).
    #[arg(long)]
    pub system: bool,
    /// Log filter (tracing EnvFilter syntax); RUST_LOG also works.
    #[arg(long, env = "BANGER_LOG", default_value = "info")]
    pub log: String,
}

/// Run `bangerd`; returns the process exit code.
pub fn main() -> i32 {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .init();
    // Every VM costs the daemon a few descriptors (API socket, pidfd, log
    // files, connections): use all the unit (or the shell) allows.
    banger_privops::raise_and_log_nofile_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bangerd: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("bangerd: {e}");
            1
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let mode = if args.system { Mode::System } else { Mode::Dev };
    let config_file = args
        .config
        .clone()
        .unwrap_or_else(|| Layout::default_config_file(mode));
    let mut config = Config::load(&config_file).map_err(|e| error_chain(&e))?;
    let layout = Layout::resolve(mode, config_file, &config, args.state_dir.as_deref())
        .map_err(|e| error_chain(&e))?;
    config.settle_for(mode, &layout);
    let privops = crate::privops_choice::choose(mode, &config);
    let daemon = Daemon::open(OpenOptions {
        config,
        layout,
        privops,
        root_disks: None,
        procfs: None,
    })
    .map_err(|e| error_chain(&e))?;
    let daemon = Arc::new(daemon);
    daemon
        .reconcile()
        .await
        .map_err(|e| format!("reconcile failed: {}", error_chain(&e)))?;
    let socket = daemon.layout.socket();
    let listener = rpc::bind(&socket).await.map_err(|e| error_chain(&e))?;
    daemon.spawn_background();
    tracing::info!(
        socket = %socket.display(),
        state_dir = %daemon.layout.state_dir.display(),
        firecracker = %daemon.net.firecracker_bin().display(),
        "bangerd {} ready",
        banger_api::BANGER_VERSION
    );
    // The socket is bound and the server loop starts now: from here on a
    // connection is answered, so systemd's start (Type=notify) ends here.
    banger_privops::notify_ready(&format!("serving {}", socket.display()));
    rpc::serve(Arc::clone(&daemon), listener, async {
        shutdown_signal().await;
        banger_privops::notify_stopping("stopping; running VMs keep running");
    })
    .await;
    let _ = std::fs::remove_file(&socket);
    tracing::info!("bangerd stopped; running VMs keep running and are adopted at the next start");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
