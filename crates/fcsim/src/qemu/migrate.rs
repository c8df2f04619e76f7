//! Snapshots on the QEMU front: the guest's memory and device state as a
//! QEMU migration stream in the snapshot's memory file.
//!
//! - save (`PUT /snapshot/create`, guest paused): the front listens on a
//!   Unix socket in a private directory, QMP `migrate uri=unix:<socket>`,
//!   and copies what QEMU sends into the memory file, until
//!   `query-migrate` says `completed`. QEMU is then `postmigrate` (still
//!   paused); `PATCH /vm Resumed` (`cont`) runs the guest on.
//! - load (`PUT /snapshot/load`): QEMU is started with the snapshot's
//!   configuration and `-S -incoming defer`; QMP `migrate-incoming
//!   uri=unix:<socket>`, and the front streams the memory file into it.
//!
//! No shell and no file descriptor passing: QEMU 7.2 has no `file:`
//! migration, and `exec:` runs a shell string.

use std::fs::{File, OpenOptions};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{QemuGuest, lock};
use crate::fault::Fault;

/// How long one migration may take (a large guest under a busy host).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);

fn private_socket(
    fail: &impl Fn(String) -> Fault,
) -> Result<(tempfile::TempDir, std::path::PathBuf), Fault> {
    let dir = tempfile::Builder::new()
        .prefix("banger-fcqemu-")
        .tempdir()
        .map_err(|e| fail(format!("cannot create a private directory: {e}")))?;
    let sock = dir.path().join("migrate.sock");
    Ok((dir, sock))
}

impl QemuGuest {
    /// Writes the paused guest's migration stream into `mem`.
    pub(crate) fn save(&self, mem: &Path) -> Result<(), Fault> {
        let fail = |d: String| Fault::bad_request(format!("Create snapshot error: {d}"));
        let (_dir, sock) = private_socket(&fail)?;
        let listener =
            UnixListener::bind(&sock).map_err(|e| fail(format!("cannot listen for QEMU: {e}")))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(mem)
            .map_err(|e| fail(format!("Cannot write memory file: {e}")))?;
        let writer = std::thread::spawn(move || -> std::io::Result<u64> {
            let (mut conn, _) = listener.accept()?;
            let n = std::io::copy(&mut conn, &mut file)?;
            file.sync_all()?;
            Ok(n)
        });
        let uri = format!("unix:{}", sock.display());
        // Its own statement: the QMP lock is released before the wait takes it again.
        let started = lock(&self.qmp)
            .execute("migrate", Some(json!({ "uri": uri })))
            .map_err(|e| fail(e.to_string()));
        let migrated = started.and_then(|_| self.wait_migration(&fail));
        if migrated.is_err() {
            // Unblocks the accept if QEMU never connected.
            let _ = UnixStream::connect(&sock);
        }
        let written = writer
            .join()
            .map_err(|_| fail("the memory file writer panicked".into()))?;
        migrated?;
        written.map_err(|e| fail(format!("Cannot write memory file: {e}")))?;
        Ok(())
    }

    /// Feeds the migration stream in `mem` to a QEMU started with `incoming`.
    pub(crate) fn receive(&self, mem: &Path) -> Result<(), Fault> {
        let fail = |d: String| {
            Fault::bad_request(format!(
                "Load snapshot error: Failed to restore from snapshot: {d}"
            ))
        };
        let mut file =
            File::open(mem).map_err(|e| fail(format!("Failed to load guest memory: {e}")))?;
        let (_dir, sock) = private_socket(&fail)?;
        let uri = format!("unix:{}", sock.display());
        lock(&self.qmp)
            .execute("migrate-incoming", Some(json!({ "uri": uri })))
            .map_err(|e| fail(e.to_string()))?;
        let mut conn = UnixStream::connect(&sock)
            .map_err(|e| fail(format!("cannot connect to QEMU's incoming socket: {e}")))?;
        let reader = std::thread::spawn(move || -> std::io::Result<u64> {
            let n = std::io::copy(&mut file, &mut conn)?;
            conn.shutdown(std::net::Shutdown::Write)?;
            Ok(n)
        });
        let migrated = self.wait_migration(&fail);
        let sent = reader
            .join()
            .map_err(|_| fail("the memory file reader panicked".into()))?;
        migrated?;
        sent.map_err(|e| fail(format!("Failed to load guest memory: {e}")))?;
        Ok(())
    }

    /// Polls `query-migrate` until the migration completes or fails.
    fn wait_migration(&self, fail: &impl Fn(String) -> Fault) -> Result<(), Fault> {
        let deadline = Instant::now() + MIGRATION_TIMEOUT;
        loop {
            let info = lock(&self.qmp)
                .execute("query-migrate", None)
                .map_err(|e| fail(e.to_string()))?;
            match info.get("status").and_then(|s| s.as_str()) {
                Some("completed") => return Ok(()),
                Some(status @ ("failed" | "cancelled")) => {
                    let why = info
                        .get("error-desc")
                        .and_then(|s| s.as_str())
                        .unwrap_or("no reason given");
                    return Err(fail(format!("QEMU's migration {status}: {why}")));
                }
                _ if Instant::now() >= deadline => {
                    return Err(fail(format!(
                        "QEMU's migration did not complete within {} s",
                        MIGRATION_TIMEOUT.as_secs()
                    )));
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}
