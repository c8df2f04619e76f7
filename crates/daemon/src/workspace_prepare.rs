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

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_api::Vm;
use banger_api::guest::{WorkspacePrepareParams, WorkspacePrepared};
use banger_workspace::manifest::Manifest;
use banger_workspace::script::{DELETE_LIST, IMPORT_OK, import_script};
use banger_workspace::{git, tarstream};

use crate::error::DaemonError;
use crate::workspace_service::{WorkspaceOpError, WorkspaceService};

/// Exit code of the import script when a delta was sent to a guest that
/// has no checkout there (the disk was reset): prepare then resends all.
const NO_CHECKOUT: i32 = 5;

/// Where the state of one checkout prepared into one VM is kept.
pub(crate) struct WorkspaceRecord {
    pub manifest: PathBuf,
    pub base: PathBuf,
}

impl WorkspaceService {
    /// The record files of checkout `root` in VM `vm_id`.
    pub(crate) fn record(&self, vm_id: &str, root: &Path) -> WorkspaceRecord {
        let key = blake3::hash(root.as_os_str().as_bytes()).to_hex();
        let dir = self.deps.vms_dir.join(vm_id).join("workspaces");
        WorkspaceRecord {
            manifest: dir.join(format!("{}.manifest", &key[..16])),
            base: dir.join(format!("{}.base", &key[..16])),
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
        let path = PathBuf::from(&p.path);
        if !path.is_absolute() {
            return Err(DaemonError::Invalid(format!(
                "workspace path {:?} must be absolute",
                p.path
            )));
        }
        let vm = self.snapshot(&p.vm).await?;
        let _ws_lock = self.workspace_locks.lock(&vm.id).await;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.prepare_blocking(&vm, &path, p.full))
            .await
            .map_err(|e| DaemonError::Internal(format!("prepare task: {e}")))?
            .map_err(Into::into)
    }

    fn prepare_blocking(
        &self,
        vm: &Vm,
        path: &Path,
        full: bool,
    ) -> Result<WorkspacePrepared, WorkspaceOpError> {
        let t_inspect = std::time::Instant::now();
        let info = git::inspect(path)?;
        let mut files = info.files.clone();
        files.extend(git::git_dir_files(&info.root)?);
        let inspected = t_inspect.elapsed();
        let record = self.record(&vm.id, &info.root);
        let previous = if full {
            Manifest::default()
        } else {
            Manifest::load(&record.manifest)?
        };
        let guest_dir = self.guest_dir(&info.name);
        let target = self.target(vm);
        let mut attempt_full = previous.entries.is_empty();
        loop {
            let empty = Manifest::default();
            let prev = if attempt_full { &empty } else { &previous };
            let t_scan = std::time::Instant::now();
            // Loose objects and packs are named by their content.
            let (next, delta) = Manifest::scan_with(&info.root, &files, prev, immutable)?;
            let scanned = t_scan.elapsed();
            let mut delete_list = Vec::new();
            for d in &delta.delete {
                delete_list.extend_from_slice(d.as_os_str().as_bytes());
                delete_list.push(0);
            }
            let mut script = String::new();
            if !attempt_full {
                // A delta needs the checkout it applies to.
                script.push_str(&format!(
                    "[ -d {d}/.git ] || [ -d \"$HOME\"/{d}/.git ] || exit {NO_CHECKOUT}\n",
                    d = banger_workspace::script::quote(&guest_dir)
                ));
            }
            // The stat settings live in `.git/config`: re-apply them whenever
            // it (or the index they validate) came from the host.
            let git_state_sent = delta
                .send
                .iter()
                .any(|p| p == Path::new(".git/index") || p == Path::new(".git/config"));
            script.push_str(&import_script(&guest_dir, attempt_full || git_state_sent));
            let extra = vec![(PathBuf::from(DELETE_LIST), delete_list)];
            let mut stats = tarstream::TarStats::default();
            let mut stdout = Vec::new();
            let root = info.root.clone();
            let send = delta.send.clone();
            let mut feed = |w: &mut dyn std::io::Write| {
                stats = tarstream::write_tar(&root, &send, &extra, w)?;
                Ok(())
            };
            let t_io = std::time::Instant::now();
            let run = self.run_guest(&target, &script, Some(&mut feed), &mut stdout)?;
            tracing::info!(
                vm = %vm.name,
                inspect_ms = inspected.as_millis() as u64,
                scan_ms = scanned.as_millis() as u64,
                guest_io_ms = t_io.elapsed().as_millis() as u64,
                files = delta.send.len(),
                "workspace prepare phases"
            );
            if run.code == NO_CHECKOUT && !attempt_full {
                tracing::info!(vm = %vm.name, "no checkout on the guest; sending everything");
                attempt_full = true;
                continue;
            }
            if run.code != 0 || !String::from_utf8_lossy(&stdout).contains(IMPORT_OK) {
                return Err(WorkspaceOpError::Guest {
                    vm: vm.name.clone(),
                    what: "the workspace import",
                    code: run.code,
                    stderr: run.stderr.trim().to_string(),
                });
            }
            save(&record, &next, info.head.as_deref())?;
            return Ok(WorkspacePrepared {
                vm: vm.name.clone(),
                guest_dir,
                host_root: info.root.display().to_string(),
                head: info.head.clone(),
                branch: info.branch.clone(),
                full: attempt_full,
                files_sent: delta.send.len() as u64,
                files_deleted: delta.delete.len() as u64,
                bytes_sent: stats.bytes,
            });
        }
    }
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
    manifest: &Manifest,
    head: Option<&str>,
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
    write(&record.manifest, manifest.to_text().as_bytes())?;
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
