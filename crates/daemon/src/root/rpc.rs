//! The RPC server: a Unix socket (mode 0600) speaking the line protocol of
//! `banger_api::rpc`, with the peer's uid checked through `SO_PEERCRED`.
//! Dispatch is one `match` that forwards each request to a service.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use banger_api::rpc::{MAX_LINE_BYTES, RequestEnvelope, ResponseBody, ResponseEnvelope};
use banger_api::{ErrorKind, Hello, PROTOCOL_VERSION, Request, RpcError};
use banger_privops::{AcceptBackoff, is_exhaustion};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::common::error::{DaemonError, to_rpc};
use crate::root::daemon::Daemon;

/// Bind the daemon socket. A live socket means another daemon serves it;
/// a dead one is removed.
pub async fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(DaemonError::Conflict(format!(
                "another bangerd is already serving {}; stop it first",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(DaemonError::io("cannot remove stale socket", path))?;
    }
    // Create the socket with no group/other bits from the start.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = listener.map_err(DaemonError::io("cannot bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(DaemonError::io("cannot chmod", path))?;
    Ok(listener)
}

/// Refusals of foreign peers answered at once; more are closed unanswered.
const MAX_PENDING_REFUSALS: usize = 8;

/// Accept connections until `shutdown` resolves. A failed `accept` pauses
/// the loop with back-off instead of retrying at once (see `accept_failed`).
pub async fn serve(
    daemon: Arc<Daemon>,
    listener: UnixListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let me = nix::unistd::geteuid().as_raw();
    let mut backoff = AcceptBackoff::new();
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_REFUSALS));
    let mut refusal_log = banger_privops::LogLimiter::new(std::time::Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => {
                        if let Some(unlogged) = backoff.success() {
                            tracing::info!(unlogged, "accept works again");
                        }
                        s
                    }
                    Err(e) => {
                        let pause = accept_failed(&mut backoff, &e);
                        tokio::select! {
                            _ = &mut shutdown => break,
                            _ = tokio::time::sleep(pause) => continue,
                        }
                    }
                };
                let peer = stream.peer_cred().map(|c| c.uid()).ok();
                if !matches!(peer, Some(uid) if uid == me || uid == 0) {
                    if let Some(unlogged) = refusal_log.allow(std::time::Instant::now()) {
                        tracing::warn!(?peer, unlogged, "refused connection from another user");
                    }
                    // Answered off the accept loop, a few at a time; beyond
                    // that the peer is just closed. A foreign peer never
                    // stalls accepting nor holds more than one short task.
                    if let Ok(permit) = Arc::clone(&refusals).try_acquire_owned() {
                        tokio::spawn(async move {
                            let _ = refuse(stream).await;
                            drop(permit);
                        });
                    }
                    continue;
                }
                let d = Arc::clone(&daemon);
                tokio::spawn(async move {
                    if let Err(e) = connection(d, stream).await {
                        tracing::debug!(error = %e, "connection ended");
                    }
                });
            }
        }
    }
}

/// Note one failed `accept` in `backoff`, log it when due, and return the
/// pause before the next try. Out of file descriptors, the pending
/// connection stays queued and the listener readable: retrying at once
/// would spin (see [`AcceptBackoff`]).
fn accept_failed(backoff: &mut AcceptBackoff, e: &std::io::Error) -> std::time::Duration {
    let f = backoff.failure(std::time::Instant::now());
    if let Some(unlogged) = f.log {
        tracing::warn!(
            error = %e,
            exhausted = is_exhaustion(e),
            unlogged,
            pause_ms = f.pause.as_millis() as u64,
            "accept failed; backing off (raise LimitNOFILE if this repeats)"
        );
    }
    f.pause
}

/// Answer the peer's first request with a refusal (read it first, so the
/// client sees the reason rather than a reset connection), then close.
async fn refuse(stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_LINE_BYTES as u64);
    let _ = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        reader.read_until(b'\n', &mut line),
    )
    .await;
    let id = serde_json::from_slice::<serde_json::Value>(&line)
        .ok()
        .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
        .unwrap_or(0);
    let body = ResponseEnvelope {
        id,
        body: ResponseBody::Error(RpcError::new(
            ErrorKind::PermissionDenied,
            "this bangerd belongs to another user; start your own bangerd and use its socket",
        )),
    };
    write_line(&mut write, &body).await
}

async fn connection(daemon: Arc<Daemon>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let mut greeted = false;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        if line.len() > MAX_LINE_BYTES {
            let e = RpcError::new(ErrorKind::InvalidArgument, "request too large");
            return write_line(
                &mut write,
                &ResponseEnvelope {
                    id: 0,
                    body: ResponseBody::Error(e),
                },
            )
            .await;
        }
        let env: RequestEnvelope = match serde_json::from_slice(&line) {
            Ok(env) => env,
            Err(e) => {
                let id = serde_json::from_slice::<serde_json::Value>(&line)
                    .ok()
                    .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                    .unwrap_or(0);
                let e = RpcError::new(
                    ErrorKind::InvalidArgument,
                    format!("malformed request: {e}"),
                );
                write_line(
                    &mut write,
                    &ResponseEnvelope {
                        id,
                        body: ResponseBody::Error(e),
                    },
                )
                .await?;
                continue;
            }
        };
        let id = env.id;
        match env.request {
            Request::Hello(h) => {
                if h.protocol != PROTOCOL_VERSION {
                    let e = RpcError::new(
                        ErrorKind::VersionMismatch,
                        format!(
                            "bangerd {} speaks protocol {PROTOCOL_VERSION} but {} speaks {}; restart bangerd after upgrading banger so both match",
                            banger_api::BANGER_VERSION,
                            h.client,
                            h.protocol
                        ),
                    );
                    return write_line(
                        &mut write,
                        &ResponseEnvelope {
                            id,
                            body: ResponseBody::Error(e),
                        },
                    )
                    .await;
                }
                greeted = true;
                let hello = Hello {
                    protocol: PROTOCOL_VERSION,
                    version: banger_api::BANGER_VERSION.into(),
                };
                write_line(&mut write, &result(id, &hello)).await?;
            }
            _ if !greeted => {
                let e = RpcError::new(ErrorKind::InvalidArgument, "send daemon.hello first");
                return write_line(
                    &mut write,
                    &ResponseEnvelope {
                        id,
                        body: ResponseBody::Error(e),
                    },
                )
                .await;
            }
            Request::OperationWatch(op) => watch(&daemon, id, &op.id, &mut write).await?,
            request => {
                let method = request.method();
                let started = std::time::Instant::now();
                let reply = match dispatch(&daemon, request).await {
                    Ok(v) => ResponseEnvelope {
                        id,
                        body: ResponseBody::Result(v),
                    },
                    Err(e) => {
                        tracing::debug!(method, error = %e, "request failed");
                        ResponseEnvelope {
                            id,
                            body: ResponseBody::Error(to_rpc(&e)),
                        }
                    }
                };
                tracing::trace!(
                    method,
                    elapsed_us = started.elapsed().as_micros() as u64,
                    "request"
                );
                write_line(&mut write, &reply).await?;
            }
        }
    }
}

/// Forward one request to the service that owns it.
pub async fn dispatch(d: &Daemon, request: Request) -> Result<serde_json::Value, DaemonError> {
    match request {
        Request::Hello(_) | Request::OperationWatch(_) => Err(DaemonError::Invalid(
            "handled by the connection loop".into(),
        )),
        Request::Status => json(d.status()?),
        Request::Doctor => {
            json(crate::doctor::run_in_daemon(Arc::clone(&d.config), d.layout.clone()).await?)
        }
        Request::VmCreate(p) => json(d.vms.create(p).await?),
        Request::VmStart(r) => json(d.vms.start(&r.vm).await?),
        Request::VmStartOp(r) => json(d.vms.start_op(&r.vm).await?),
        Request::VmStop(p) => json(d.vms.stop(&p).await?),
        Request::VmRestart(p) => json(d.vms.restart(&p).await?),
        Request::VmKill(r) => json(d.vms.kill(&r.vm).await?),
        Request::VmDelete(p) => json(d.vms.delete(&p).await?),
        Request::VmSet(p) => json(d.vms.set(&p).await?),
        Request::VmList => json(d.vms.list()?),
        Request::VmShow(r) => json(d.vms.show(&r.vm)?),
        Request::VmStats(r) => json(d.vms.stats(&r.vm).await?),
        Request::VmLogs(p) => json(d.vms.logs(&p)?),
        Request::VmPause(r) => json(d.vms.pause(&r.vm).await?),
        Request::VmResume(r) => json(d.vms.resume(&r.vm).await?),
        Request::VmSuspend(r) => json(d.vms.suspend(&r.vm).await?),
        Request::VmSnapshotCreate(p) => json(d.vms.snapshot_create(&p).await?),
        Request::VmSnapshotList(r) => json(d.vms.snapshot_list(&r.vm)?),
        Request::VmSnapshotDelete(p) => json(d.vms.snapshot_delete(&p).await?),
        Request::VmFork(p) => json(d.vms.fork(&p).await?),
        Request::ImageRegister(p) => json(d.images.register(p).await?),
        Request::ImageList => json(d.images.list()?),
        Request::ImageShow(r) => json(d.images.resolve(&r.name)?),
        Request::ImageDelete(r) => json(d.images.delete(&r.name).await?),
        Request::OperationGet(r) => match d.images.operation(&r.id) {
            Some(op) => json(op),
            None => json(d.vms.operation(&r.id)?),
        },
        Request::OperationList => json(d.vms.operations()?),
        Request::NetworkReset => json(d.network_reset().await?),
        Request::WorkspacePrepare(p) => json(d.workspaces.prepare(p).await?),
        Request::WorkspaceExport(p) => json(d.workspaces.export(p).await?),
        Request::WorkspaceSyncFiles(r) => json(d.workspaces.sync_files(&r.vm).await?),
        Request::GuestSshConfig => json(d.workspaces.ssh_config()?),
        Request::VmSshArgv(p) => json(d.workspaces.ssh_argv(&p)?),
        Request::VmPorts(r) => json(d.workspaces.ports(&r.vm).await?),
        Request::VmForward(p) => json(d.forwards.add(&p).await?),
        Request::VmForwardRemove(p) => json(d.forwards.remove(&p).await?),
        Request::VmForwards(r) => json(d.forwards.list(&r.vm)?),
        Request::VmProvisionRecord(p) => json(d.vms.record_provision(&p)?),
        Request::ImagePull(p) => json(d.images.pull(p)?),
        Request::ImageExportBundle(p) => json(d.images.export_bundle(p).await?),
        Request::KernelList => json(d.kernels.list()?),
        Request::KernelPull(r) => json(d.kernels.pull(&r.name).await?),
        Request::KernelRegister(p) => json(d.kernels.register(&p.name, &p.file, p.version).await?),
        Request::KernelDelete(r) => json(d.kernels.delete(&r.name).await?),
        Request::ImagePromote(p) => json(d.vms.promote_to_image(p).await?),
        Request::ImageRefreshSeed(p) => json(d.images.refresh_seed(p).await?),
        Request::ImageBuild(p) => json(d.images.build(p)?),
        Request::KernelBuild(p) => json(d.images.build_kernel(Arc::clone(&d.kernels), p)?),
    }
}

async fn watch(
    d: &Daemon,
    id: u64,
    op_id: &str,
    write: &mut (impl AsyncWriteExt + Unpin),
) -> std::io::Result<()> {
    let pulled = d.images.watch_op(op_id).map(Ok);
    let mut rx = match pulled.map_or_else(|| d.vms.watch(op_id), Ok) {
        Ok(Ok(rx)) => rx,
        Ok(Err(done)) => return write_line(write, &result(id, &done)).await,
        Err(e) => {
            return write_line(
                write,
                &ResponseEnvelope {
                    id,
                    body: ResponseBody::Error(to_rpc(&DaemonError::from(e))),
                },
            )
            .await;
        }
    };
    loop {
        let op = rx.borrow_and_update().0.clone();
        if op.state.is_done() {
            return write_line(write, &result(id, &op)).await;
        }
        let event = serde_json::to_value(&op).unwrap_or_default();
        write_line(
            write,
            &ResponseEnvelope {
                id,
                body: ResponseBody::Event(event),
            },
        )
        .await?;
        if rx.changed().await.is_err() {
            let op = rx.borrow().0.clone();
            return write_line(write, &result(id, &op)).await;
        }
    }
}

fn json(v: impl Serialize) -> Result<serde_json::Value, DaemonError> {
    serde_json::to_value(v).map_err(|e| DaemonError::Internal(e.to_string()))
}

fn result(id: u64, v: &impl Serialize) -> ResponseEnvelope {
    ResponseEnvelope {
        id,
        body: ResponseBody::Result(serde_json::to_value(v).unwrap_or_default()),
    }
}

async fn write_line(
    w: &mut (impl AsyncWriteExt + Unpin),
    env: &ResponseEnvelope,
) -> std::io::Result<()> {
    let mut buf = serde_json::to_vec(env).map_err(std::io::Error::other)?;
    buf.push(b'\n');
    w.write_all(&buf).await?;
    w.flush().await
}
