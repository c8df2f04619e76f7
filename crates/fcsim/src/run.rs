//! The simulator's entry point: Firecracker's startup sequence, then serve.
//!
//! 1. `--version`/`--snapshot-version` print and return.
//! 2. The `--id` is validated (a bad one is a Firecracker panic: see [`crate::exit`]).
//! 3. "Running Firecracker ..." is logged; `--log-path`/`--metrics-path` are opened.
//! 4. After the optional `--sim-socket-delay-ms`, the API socket is bound; an
//!    existing path or a missing directory ends the process with status 1.
//! 5. Requests are served until the VMM announces the end (SendCtrlAltDel,
//!    simulated crash, failed snapshot load). Signals keep their default
//!    action, so SIGTERM/SIGINT kill the process as they kill Firecracker.

use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::Path;
use std::sync::Arc;

use banger_fcapi::{LogLevel, Logger, Metrics, validate_instance_id};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use crate::args::SimArgs;
use crate::error::SimError;
use crate::http::ApiServer;
use crate::log::SimLog;
use crate::metrics::MetricsSink;
use crate::vmm::{Backend, Vmm, VmmContext};
use crate::{FIRECRACKER_VERSION, SNAPSHOT_VERSION};

/// [`run`] on a single-threaded tokio runtime of its own, for a `main` that
/// has no runtime (the simulator needs only one thread).
pub fn run_blocking(args: SimArgs) -> Result<i32, SimError> {
    run_blocking_with(args, Backend::Simulated)
}

/// [`run_blocking`] with the given guest backend.
pub fn run_blocking_with(args: SimArgs, backend: Backend) -> Result<i32, SimError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SimError::Runtime)?
        .block_on(run_with(args, backend))
}

/// Runs the simulator until it would exit. `Ok(code)` is a normal exit code;
/// pass the result to [`crate::exit`] to end the process like Firecracker.
pub async fn run(args: SimArgs) -> Result<i32, SimError> {
    run_with(args, Backend::Simulated).await
}

/// The `--version` line: Firecracker's, plus what is behind it for the QEMU
/// front (`doctor` reads this first line to tell the VMMs apart).
pub fn version_line(backend: &Backend) -> String {
    match backend {
        Backend::Simulated => format!("Firecracker v{FIRECRACKER_VERSION}"),
        Backend::Qemu(options) => {
            let qemu = match options.qemu_version() {
                Ok(version) => format!("QEMU {version}"),
                Err(e) => format!("QEMU unavailable: {e}"),
            };
            format!(
                "Firecracker v{FIRECRACKER_VERSION} (banger QEMU front; {qemu}; accel {})",
                options.accel.name()
            )
        }
    }
}

/// Runs the front with `backend` behind InstanceStart until it would exit.
pub async fn run_with(args: SimArgs, backend: Backend) -> Result<i32, SimError> {
    if args.version {
        println!("{}\n", version_line(&backend));
        return Ok(0);
    }
    if args.snapshot_version {
        println!("v{SNAPSHOT_VERSION}");
        return Ok(0);
    }
    validate_instance_id(&args.id).map_err(SimError::InvalidInstanceId)?;
    let log = Arc::new(SimLog::new(&args.id));
    log.info(
        "main",
        "firecracker",
        format!("Running Firecracker v{FIRECRACKER_VERSION}"),
    );
    let result = start_and_serve(&args, &log, backend).await;
    match &result {
        Ok(code) => log.info(
            "main",
            "firecracker",
            format!("Firecracker exiting successfully. exit_code={code}"),
        ),
        Err(e) => {
            log.error("main", "firecracker", format!("RunWithApiError error: {e}"));
            log.error(
                "main",
                "firecracker",
                format!(
                    "Firecracker exiting with error. exit_code={}",
                    e.exit_code()
                ),
            );
        }
    }
    result
}

async fn start_and_serve(
    args: &SimArgs,
    log: &Arc<SimLog>,
    backend: Backend,
) -> Result<i32, SimError> {
    if args.config_file.is_some() {
        return Err(SimError::Unsupported("--config-file"));
    }
    if args.no_api {
        return Err(SimError::Unsupported("--no-api"));
    }
    configure_startup_logger(args, log)?;
    let mut metrics = MetricsSink::default();
    if let Some(path) = &args.metrics_path {
        SimLog::open_file(path).map_err(|source| SimError::OpenFile {
            path: path.clone(),
            source,
        })?;
        metrics
            .configure(&Metrics::new(path.to_string_lossy()))
            .map_err(|fault| SimError::InvalidArgument(fault.message))?;
    }
    let misbehaviour = args.misbehaviour();
    let start_delay = misbehaviour.start_delay;
    if let Some(delay) = misbehaviour.socket_delay {
        tokio::time::sleep(delay).await;
    }
    let listener = bind_api_socket(&args.api_sock)?;
    log.info(
        "main",
        "firecracker",
        format!("Listening on API socket ({:?}).", args.api_sock),
    );

    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let context = VmmContext {
        instance_id: args.id.clone(),
        log: log.clone(),
        misbehaviour,
        enable_pci: args.enable_pci,
        exit: exit_tx,
        mmds_limit: args
            .mmds_size_limit
            .unwrap_or(args.http_api_max_payload_size),
        backend,
    };
    let server = Arc::new(
        ApiServer::new(
            Vmm::new(context, metrics),
            log.clone(),
            args.http_api_max_payload_size,
        )
        .with_start_delay(start_delay),
    );
    tokio::spawn(server.serve(listener));
    log.info("fc_api", "api_server", "API server started.");
    // The sender lives in the VMM, which lives as long as the server task.
    exit_rx.recv().await.unwrap_or(Ok(0))
}

fn configure_startup_logger(args: &SimArgs, log: &SimLog) -> Result<(), SimError> {
    let level = match &args.level {
        Some(text) => Some(text.parse::<LogLevel>().map_err(|_| {
            SimError::InvalidArgument(format!("Invalid value for --level: {text}"))
        })?),
        None => None,
    };
    let logger = Logger {
        log_path: args
            .log_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
        level,
        show_level: args.show_level.then_some(true),
        show_log_origin: args.show_log_origin.then_some(true),
        module: args.module.clone(),
    };
    log.configure(&logger).map_err(|source| SimError::OpenFile {
        path: args.log_path.clone().unwrap_or_default(),
        source,
    })
}

fn bind_api_socket(path: &Path) -> Result<UnixListener, SimError> {
    if path.symlink_metadata().is_ok() {
        return Err(SimError::SocketInUse(path.to_path_buf()));
    }
    let bind_error = |source| SimError::BindSocket {
        path: path.to_path_buf(),
        source,
    };
    let listener = StdUnixListener::bind(path).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    UnixListener::from_std(listener).map_err(bind_error)
}
