//! `workspace.export`: bring the guest's commits and uncommitted changes
//! back into the host checkout as a branch (default `banger/<vm>`) or a
//! patch file. The guest snapshots its work tree through a temporary index
//! into `refs/banger/export` and sends a bundle relative to the commit the
//! workspace was prepared from; the host only runs `git fetch` into the
//! branch ref, so the checked-out branch, index and work tree are untouched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_api::Vm;
use banger_api::guest::{WorkspaceExportParams, WorkspaceExported};
use banger_workspace::export::{check_base, check_branch, fetch_bundle};
use banger_workspace::git;
use banger_workspace::script::{EXPORT_NOTHING, ExportFormat, export_script};

use crate::common::error::DaemonError;
use crate::workspace::service::{WorkspaceOpError, WorkspaceService, absolute_path};

impl WorkspaceService {
    /// `workspace.export`.
    pub async fn export(
        self: &Arc<Self>,
        p: WorkspaceExportParams,
    ) -> Result<WorkspaceExported, DaemonError> {
        let path = absolute_path(&p.path)?;
        if let Some(patch) = &p.patch
            && !Path::new(patch).is_absolute()
        {
            return Err(WorkspaceOpError::Invalid(format!(
                "patch file {patch:?} must be an absolute path"
            ))
            .into());
        }
        let vm = self.snapshot(&p.vm).await?;
        let _ws_lock = self.workspace_locks.lock(&vm.id).await;
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || me.export_blocking(&vm, &path, &p))
            .await
            .map_err(|e| WorkspaceOpError::Internal(format!("export task: {e}")))?
            .map_err(DaemonError::from)
    }

    fn export_blocking(
        &self,
        vm: &Vm,
        path: &Path,
        p: &WorkspaceExportParams,
    ) -> Result<WorkspaceExported, WorkspaceOpError> {
        let info = git::inspect(path)?;
        let record = self.record(&vm.id, &info.root);
        let base = std::fs::read_to_string(&record.base).unwrap_or_default();
        let base = base.trim();
        if base.is_empty() {
            return Err(WorkspaceOpError::Conflict(format!(
                "no prepare of {} into VM {} with a commit is recorded; run `banger workspace prepare {} {}` first",
                info.root.display(),
                vm.name,
                vm.name,
                info.root.display()
            )));
        }
        check_base(&info.root, base).map_err(WorkspaceOpError::from)?;
        let guest_dir = self.guest_dir(&info.name);
        let target = self.target(vm);
        let mut unchanged = WorkspaceExported {
            vm: vm.name.clone(),
            branch: None,
            commit: None,
            patch: None,
            changed: false,
        };
        if let Some(patch) = &p.patch {
            let patch = PathBuf::from(patch);
            let tmp = patch.with_extension("banger-tmp");
            let io = |source| WorkspaceOpError::Io {
                what: "cannot write",
                path: tmp.clone(),
                source,
            };
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            let script = export_script(&guest_dir, base, &vm.name, ExportFormat::Patch);
            let run = self.run_guest(&target, &script, None, &mut f);
            let run = match run {
                Ok(r) => r,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            if run.code != 0 {
                let _ = std::fs::remove_file(&tmp);
                if run.code == EXPORT_NOTHING {
                    return Ok(unchanged);
                }
                return Err(guest_failed(vm, run.code, &run.stderr));
            }
            std::fs::rename(&tmp, &patch).map_err(io)?;
            unchanged.patch = Some(patch.display().to_string());
            unchanged.changed = true;
            return Ok(unchanged);
        }
        let branch = p
            .branch
            .clone()
            .unwrap_or_else(|| format!("banger/{}", vm.name));
        check_branch(&info.root, &branch).map_err(WorkspaceOpError::from)?;
        unchanged.branch = Some(branch.clone());
        let bundle = record.base.with_extension("bundle");
        let io = |source| WorkspaceOpError::Io {
            what: "cannot write",
            path: bundle.clone(),
            source,
        };
        let mut f = std::fs::File::create(&bundle).map_err(io)?;
        let script = export_script(&guest_dir, base, &vm.name, ExportFormat::Bundle);
        let result = (|| {
            let run = self.run_guest(&target, &script, None, &mut f)?;
            if run.code == EXPORT_NOTHING {
                return Ok(None);
            }
            if run.code != 0 {
                return Err(guest_failed(vm, run.code, &run.stderr));
            }
            Ok(Some(fetch_bundle(&info.root, &bundle, &branch)?))
        })();
        let _ = std::fs::remove_file(&bundle);
        if let Some(commit) = result? {
            unchanged.commit = Some(commit);
            unchanged.changed = true;
        }
        Ok(unchanged)
    }
}

fn guest_failed(vm: &Vm, code: i32, stderr: &str) -> WorkspaceOpError {
    WorkspaceOpError::Guest {
        vm: vm.name.clone(),
        what: "the workspace export",
        code,
        stderr: stderr.trim().to_string(),
    }
}
