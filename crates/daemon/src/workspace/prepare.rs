//! `workspace.prepare`: copy a host checkout into a running VM.
//!
//! Phase one takes `vm_locks[id]` only to validate and snapshot the VM
//! ([`WorkspaceService::snapshot`]); phase two holds
//! `workspace_locks[id]` for the guest I/O: inspect the checkout, compare
//! with the manifest of the previous prepare of the same checkout into the
//! same VM, stream the changed files (plus `.git`) as tar over SSH into
//! `<work_dir>/<repo>` and apply deletions there. The manifest is saved only
//! after the guest confirmed the import, so a failed prepare is simply
//! repeated in full next time it matters.

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use banger_api::Vm;
use banger_api::guest::{WorkspacePrepareParams, WorkspacePrepared};
use banger_workspace::guest_state::{self, GuestState};
use banger_workspace::manifest::{Delta, Manifest};
use banger_workspace::script::{
    DELETE_LIST, FORMAT_TAR, FORMAT_ZSTD, HELLO_ZSTD, IMPORT_OK, REFRESH_MARKER, STAT_LIST,
    import_script,
};
use banger_workspace::{git, tarstream};

use crate::common::error::DaemonError;
use crate::workspace::service::{GuestHello, WorkspaceOpError, WorkspaceService, absolute_path};

/// Exit code of the import script when a delta was sent to a guest that
/// has no checkout there (the disk was reset): prepare then resends all.
const NO_CHECKOUT: i32 = 5;

/// How long the guest may take, once ssh is up, to say which stream it
/// takes (its shell starting `command -v zstd`).
const HELLO_TIMEOUT: Duration = Duration::from_secs(60);

/// zstd level of the stream: level 1 compresses source trees 3-4x at
/// several hundred MB/s, far cheaper than encrypting the bytes it saves
/// through ssh (the bound of a copy on a local link).
const ZSTD_LEVEL: i32 = 1;

/// Where the state of one checkout prepared into one VM is kept.
pub(crate) struct WorkspaceRecord {
    pub manifest: PathBuf,
    pub base: PathBuf,
    /// The guest's own stat of each carried file ([`GuestState`]).
    pub guest: PathBuf,
}

impl WorkspaceService {
    /// The record files of checkout `root` in VM `vm_id`.
    pub(crate) fn record(&self, vm_id: &str, root: &Path) -> WorkspaceRecord {
        let key = blake3::hash(root.as_os_str().as_bytes()).to_hex();
        let dir = self.deps.vms_dir.join(vm_id).join("workspaces");
        WorkspaceRecord {
            manifest: dir.join(format!("{}.manifest", &key[..16])),
            base: dir.join(format!("{}.base", &key[..16])),
            guest: dir.join(format!("{}.guest", &key[..16])),
        }
    }

    /// The guest directory of a checkout named `name`.
    pub(crate) fn guest_dir(&self, name: &str) -> String {
        let base = self.deps.guest.work_dir.trim_end_matches('/');
        format!("{base}/{name}")
    }

    /// `workspace.prepare`.
    pub async fn prepare(
        self: &Arc<Self>,
        p: WorkspacePrepareParams,
    ) -> Result<WorkspacePrepared, DaemonError> {
        let path = absolute_path(&p.path)?;
        let vm = self.snapshot(&p.vm).await?;
        let _ws_lock = self.workspace_locks.lock(&vm.id).await;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.prepare_blocking(&vm, &path, p.full, p.trust_guest))
            .await
            .map_err(|e| WorkspaceOpError::Internal(format!("prepare task: {e}")))?
            .map_err(DaemonError::from)
    }

    fn prepare_blocking(
        &self,
        vm: &Vm,
        path: &Path,
        full: bool,
        trust_guest: bool,
    ) -> Result<WorkspacePrepared, WorkspaceOpError> {
        let t_start = Instant::now();
        // Only where the checkout lives is needed to start the SSH session;
        // the rest of the host-side work (git listing, manifest, stat pass)
        // runs while ssh connects and authenticates.
        let (root, name) = git::toplevel(path)?;
        let record = self.record(&vm.id, &root);
        let guest_dir = self.guest_dir(&name);
        let target = self.target(vm);
        let mut attempt_full = full || !record.manifest.exists();
        loop {
            // A delta is checked against the guest's own listing unless the
            // caller trusts the guest's copy.
            let check = !attempt_full && !trust_guest;
            let mut script = String::new();
            if !attempt_full {
                // A delta needs the checkout it applies to.
                script.push_str(&format!(
                    "[ -d {d}/.git ] || [ -d \"$HOME\"/{d}/.git ] || exit {NO_CHECKOUT}\n",
                    d = banger_workspace::script::quote(&guest_dir)
                ));
            }
            // The index settings are re-applied when the stream carries the
            // refresh marker: decided by the scan, after the script is sent.
            script.push_str(&import_script(&guest_dir, false, check));
            let mut scanned: Option<Result<Scanned, WorkspaceOpError>> = None;
            let mut stats = tarstream::TarStats::default();
            let mut streamed = Duration::ZERO;
            let mut stdout = Vec::new();
            let mut feed = |w: &mut dyn std::io::Write, hello: &mut GuestHello| {
                // A guest that stopped talking (no checkout, a cut
                // connection) is judged by its exit code and stderr.
                let planned = match plan(&root, &name, &record, attempt_full, check, w, hello) {
                    Err(PlanError::GuestIo(e)) => return Err(e),
                    Err(PlanError::Host(e)) => Err(e),
                    Ok(s) => Ok(s),
                };
                let s = scanned.insert(planned);
                let Ok(s) = s.as_mut() else {
                    return Err(std::io::Error::other(
                        "the host checkout or the guest's listing could not be read",
                    ));
                };
                // The scan ran while ssh connected; now the guest says
                // whether it takes a compressed stream (the check may have
                // heard it already).
                let first = match s.first_line.take() {
                    Some(line) => line,
                    None => hello.first_line(HELLO_TIMEOUT)?,
                };
                let zstd = self.deps.guest.compress_stream && first.trim() == HELLO_ZSTD;
                let t_stream = Instant::now();
                // Loose objects go as the files they are: packing them
                // (with `git pack-objects`, then with a pack writer of our
                // own) was measured slower; see docs/perf/workspace.md.
                let files = s
                    .delta
                    .send
                    .iter()
                    .map(|p| (p.as_path(), &s.next.entries[p]));
                if zstd {
                    w.write_all(format!("{FORMAT_ZSTD}\n").as_bytes())?;
                    let mut enc = zstd::Encoder::new(&mut *w, ZSTD_LEVEL)?;
                    // One worker: compression runs beside the thread that
                    // reads the files.
                    enc.multithread(1)?;
                    stats = tarstream::write_stated(&root, files, &s.extra, &mut enc)?;
                    enc.finish()?;
                } else {
                    w.write_all(format!("{FORMAT_TAR}\n").as_bytes())?;
                    stats = tarstream::write_stated(&root, files, &s.extra, &mut *w)?;
                }
                streamed = t_stream.elapsed();
                // Hand the guest the end of the stream, then serialize the
                // manifest while it unpacks.
                w.flush()?;
                s.next_text = s.next.to_text();
                Ok(())
            };
            let t_io = Instant::now();
            let run = self.run_guest(&target, &script, Some(&mut feed), &mut stdout);
            let guest_io = t_io.elapsed();
            // A failure to read the checkout is the cause of whatever the
            // guest then said about a cut stream.
            let s = match scanned {
                Some(Err(e)) => return Err(e),
                Some(Ok(s)) => Some(s),
                None => None,
            };
            let run = run?;
            if run.code == NO_CHECKOUT && !attempt_full {
                tracing::info!(vm = %vm.name, "no checkout on the guest; sending everything");
                attempt_full = true;
                continue;
            }
            let Some(s) =
                s.filter(|_| run.code == 0 && String::from_utf8_lossy(&stdout).contains(IMPORT_OK))
            else {
                return Err(WorkspaceOpError::Guest {
                    vm: vm.name.clone(),
                    what: "the workspace import",
                    code: run.code,
                    stderr: run.stderr.trim().to_string(),
                });
            };
            let t_save = Instant::now();
            let guest_state = s.guest_state_after(&stdout)?;
            save(&record, &s.next_text, s.info.head.as_deref(), &guest_state)?;
            tracing::info!(
                vm = %vm.name,
                inspect_ms = s.inspect.as_millis() as u64,
                load_ms = s.load.as_millis() as u64,
                scan_ms = s.scan.as_millis() as u64,
                guest_check_ms = s.check.as_millis() as u64,
                stream_ms = streamed.as_millis() as u64,
                guest_io_ms = guest_io.as_millis() as u64,
                save_ms = t_save.elapsed().as_millis() as u64,
                total_ms = t_start.elapsed().as_millis() as u64,
                files = s.delta.send.len(),
                guest_changed = s.guest_changed,
                "workspace prepare phases"
            );
            return Ok(WorkspacePrepared {
                vm: vm.name.clone(),
                guest_dir,
                host_root: s.info.root.display().to_string(),
                head: s.info.head.clone(),
                branch: s.info.branch.clone(),
                full: attempt_full,
                files_sent: s.delta.send.len() as u64,
                files_deleted: s.delta.delete.len() as u64,
                guest_changed: s.guest_changed as u64,
                bytes_sent: stats.bytes,
            });
        }
    }
}

/// How long the guest may take to list a checkout it was asked to check
/// (one `stat` per carried file).
const CHECK_TIMEOUT: Duration = Duration::from_secs(600);

/// The host side of one prepare attempt, done while ssh connects.
struct Scanned {
    info: git::RepoInfo,
    next: Manifest,
    /// `next` in its text form, made once the stream is written.
    next_text: String,
    delta: Delta,
    /// What the guest held before this import: its answer to the check,
    /// or (unchecked) the recorded state.
    guest_before: GuestState,
    /// The length of the check listing in the guest's stdout (after its
    /// first line); 0 without a check.
    check_len: usize,
    /// Files resent because the guest's copy differed.
    guest_changed: usize,
    /// The guest's first line, when the check already read it.
    first_line: Option<String>,
    /// The control files at the end of the stream.
    extra: Vec<(PathBuf, Vec<u8>)>,
    inspect: Duration,
    load: Duration,
    scan: Duration,
    check: Duration,
}

impl Scanned {
    /// The guest's state after a successful import: what it held before,
    /// minus the files it received or deleted, plus its listing of the
    /// files it received (after the first line and the check listing of
    /// its stdout), for the files the manifest carries.
    fn guest_state_after(&self, stdout: &[u8]) -> Result<GuestState, WorkspaceOpError> {
        let after_hello = stdout
            .iter()
            .position(|b| *b == b'\n')
            .map_or(stdout.len(), |i| i + 1);
        let rest = stdout
            .get(after_hello + self.check_len..)
            .unwrap_or_default();
        let (received, _) = GuestState::parse_listing(rest)?;
        let mut state = self.guest_before.clone();
        for p in self.delta.send.iter().chain(&self.delta.delete) {
            state.entries.remove(p);
        }
        state.entries.extend(received.entries);
        state
            .entries
            .retain(|p, _| self.next.entries.contains_key(p));
        Ok(state)
    }
}

/// Why [`plan`] failed.
enum PlanError {
    /// The host checkout or the guest's listing could not be read.
    Host(WorkspaceOpError),
    /// Talking to the guest failed (it may have exited on purpose).
    GuestIo(std::io::Error),
}

impl<E: Into<WorkspaceOpError>> From<E> for PlanError {
    fn from(e: E) -> Self {
        PlanError::Host(e.into())
    }
}

/// Plan one prepare attempt: inspect the checkout at `root` and compare it
/// with the recorded manifest (none when `full`), one `lstat` per carried
/// file; with `check`, meanwhile send the guest the list of what it should
/// hold and add to the delta every file the guest changed or lost.
fn plan(
    root: &Path,
    name: &str,
    record: &WorkspaceRecord,
    full: bool,
    check: bool,
    w: &mut dyn std::io::Write,
    hello: &mut GuestHello,
) -> Result<Scanned, PlanError> {
    let t = Instant::now();
    let (previous, recorded) = if full {
        Default::default()
    } else {
        (
            Manifest::load(&record.manifest)?,
            GuestState::load(&record.guest)?,
        )
    };
    let load = t.elapsed();
    let t_check = Instant::now();
    let (scanned, answer) = std::thread::scope(|threads| {
        let scan = threads.spawn(|| scan(root, name, &previous, full));
        let answer = check.then(|| -> std::io::Result<_> {
            let list = guest_state::check_list(previous.entries.keys().map(PathBuf::as_path));
            w.write_all(format!("{}\n", list.len()).as_bytes())?;
            w.write_all(&list)?;
            w.flush()?;
            let first = hello.first_line(HELLO_TIMEOUT)?;
            Ok((first, hello.listing(CHECK_TIMEOUT)?))
        });
        let scanned = scan.join().unwrap_or_else(|_| {
            Err(WorkspaceOpError::Internal(
                "the scan thread panicked".into(),
            ))
        });
        (scanned, answer)
    });
    let (info, next, mut delta, inspect, scan_t) = scanned?;
    let check_t = t_check.elapsed();
    let (guest_before, check_len, guest_changed, first_line) =
        match answer.transpose().map_err(PlanError::GuestIo)? {
            Some((first, listing)) => {
                let (now, len) = GuestState::parse_listing(&listing)?;
                let changed = recorded.changed(&now, previous.entries.keys());
                let sending: HashSet<&PathBuf> = delta.send.iter().collect();
                let add: Vec<PathBuf> = changed
                    .into_iter()
                    .filter(|p| next.entries.contains_key(p) && !sending.contains(p))
                    .collect();
                let n = add.len();
                delta.send.extend(add);
                (now, len, n, Some(first))
            }
            None => (recorded, 0, 0, None),
        };
    let extra = control_files(&delta, full);
    Ok(Scanned {
        info,
        next,
        next_text: String::new(),
        delta,
        guest_before,
        check_len,
        guest_changed,
        first_line,
        extra,
        inspect,
        load,
        scan: scan_t,
        check: if check { check_t } else { Duration::ZERO },
    })
}

/// The host's listing and stat pass against `previous`.
#[allow(clippy::type_complexity)]
fn scan(
    root: &Path,
    name: &str,
    previous: &Manifest,
    full: bool,
) -> Result<(git::RepoInfo, Manifest, Delta, Duration, Duration), WorkspaceOpError> {
    let t = Instant::now();
    let info = git::inspect_root(root.to_path_buf(), name.to_string(), false)?;
    let mut files = info.files.clone();
    files.extend(git::git_dir_files(root)?);
    let inspect = t.elapsed();
    let t = Instant::now();
    // Loose objects and packs are named by their content.
    let empty = Manifest::default();
    let previous = if full { &empty } else { previous };
    let (next, delta) = Manifest::scan_with(root, &files, previous, immutable)?;
    Ok((info, next, delta, inspect, t.elapsed()))
}

/// The control files at the end of the stream: the deletions, the list of
/// files the guest stats after the import, and the refresh marker.
fn control_files(delta: &Delta, full: bool) -> Vec<(PathBuf, Vec<u8>)> {
    let mut delete_list = Vec::new();
    for d in &delta.delete {
        delete_list.extend_from_slice(d.as_os_str().as_bytes());
        delete_list.push(0);
    }
    // The stat settings live in `.git/config`: re-apply them whenever it (or
    // the index they validate) came from the host.
    let git_state_sent = delta
        .send
        .iter()
        .any(|p| p == Path::new(".git/index") || p == Path::new(".git/config"));
    let refresh = full || git_state_sent;
    // Re-applying the settings rewrites `.git/config`: stat it too.
    let config = PathBuf::from(".git/config");
    let restat = refresh && !delta.send.contains(&config);
    let stat_list = guest_state::check_list(
        delta
            .send
            .iter()
            .chain(restat.then_some(&config))
            .map(PathBuf::as_path),
    );
    let mut extra = vec![
        (PathBuf::from(DELETE_LIST), delete_list),
        (PathBuf::from(STAT_LIST), stat_list),
    ];
    if refresh {
        extra.push((PathBuf::from(REFRESH_MARKER), Vec::new()));
    }
    extra
}

/// Content-addressed git files: loose objects (`.git/objects/xx/…`) and
/// pack files (`pack-<hash>.*`). Anything else under `objects` (info,
/// multi-pack-index) can change in place.
fn immutable(p: &Path) -> bool {
    let Ok(rest) = p.strip_prefix(".git/objects") else {
        return false;
    };
    let mut c = rest.components();
    match (c.next(), c.next(), c.next()) {
        (Some(dir), Some(_), None) => {
            let d = dir.as_os_str().as_bytes();
            (d.len() == 2 && d.iter().all(u8::is_ascii_hexdigit))
                || (d == b"pack"
                    && rest
                        .file_name()
                        .is_some_and(|n| n.as_bytes().starts_with(b"pack-")))
        }
        _ => false,
    }
}

fn save(
    record: &WorkspaceRecord,
    manifest_text: &str,
    head: Option<&str>,
    guest: &GuestState,
) -> Result<(), WorkspaceOpError> {
    let write = |path: &Path, data: &[u8]| {
        let io = |source| WorkspaceOpError::Io {
            what: "cannot write",
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, data).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    };
    write(&record.guest, guest.to_text().as_bytes())?;
    write(&record.manifest, manifest_text.as_bytes())?;
    write(&record.base, head.unwrap_or("").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::immutable;
    use std::path::Path;

    #[test]
    fn only_content_addressed_git_files_are_immutable() {
        assert!(immutable(Path::new(".git/objects/ab/cdef0123")));
        assert!(immutable(Path::new(".git/objects/pack/pack-12ab.pack")));
        assert!(immutable(Path::new(".git/objects/pack/pack-12ab.idx")));
        assert!(!immutable(Path::new(".git/objects/pack/multi-pack-index")));
        assert!(!immutable(Path::new(".git/objects/info/commit-graph")));
        assert!(!immutable(Path::new(".git/index")));
        assert!(!immutable(Path::new("src/objects/ab/cd")));
    }
}
