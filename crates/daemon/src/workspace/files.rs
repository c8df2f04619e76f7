//! `workspace.sync_files`: copy the configured dotfiles (`[guest]
//! sync_files`) from the owner's home into the guest user's home. Every path
//! is validated first (inside home, no `..`, no symlink out of home); one
//! refused path refuses the whole sync, so nothing is copied.

use std::path::PathBuf;
use std::sync::Arc;

use banger_api::guest::FilesSynced;
use banger_workspace::homepath;
use banger_workspace::script::quote;
use banger_workspace::tarstream::write_pairs;

use crate::common::error::DaemonError;
use crate::workspace::service::{WorkspaceOpError, WorkspaceService};

impl WorkspaceService {
    /// Validate the configured list: `(relative name, resolved source)`.
    pub fn sync_plan(&self) -> Result<Vec<(PathBuf, PathBuf)>, WorkspaceOpError> {
        let mut plan = Vec::new();
        for p in &self.deps.guest.sync_files {
            let hp = homepath::resolve(&self.deps.home, p)?;
            if !hp.source.is_file() {
                return Err(WorkspaceOpError::Invalid(format!(
                    "file sync path {} is not a regular file; list files, not directories",
                    p.display()
                )));
            }
            plan.push((hp.relative, hp.source));
        }
        Ok(plan)
    }

    /// `workspace.sync_files`.
    pub async fn sync_files(self: &Arc<Self>, vm: &str) -> Result<FilesSynced, DaemonError> {
        let plan = self.sync_plan()?;
        let vm = self.snapshot(vm).await?;
        let _ws_lock = self.workspace_locks.lock(&vm.id).await;
        let names: Vec<String> = plan.iter().map(|(r, _)| r.display().to_string()).collect();
        if plan.is_empty() {
            return Ok(FilesSynced {
                vm: vm.name,
                files: names,
            });
        }
        let me = Arc::clone(self);
        let target = self.target(&vm);
        let vm_name = vm.name.clone();
        tokio::task::spawn_blocking(move || -> Result<(), WorkspaceOpError> {
            let script = format!(
                "set -eu\ncd \"$HOME\"\ntar -x --no-same-owner -f -\necho {}\n",
                quote("banger-sync-ok")
            );
            let mut out = Vec::new();
            let mut feed = |w: &mut dyn std::io::Write, _: &mut _| {
                write_pairs(plan.clone(), true, &[], w).map(|_| ())
            };
            let run = me.run_guest(&target, &script, Some(&mut feed), &mut out)?;
            if run.code != 0 {
                return Err(WorkspaceOpError::Guest {
                    vm: vm_name,
                    what: "the file sync",
                    code: run.code,
                    stderr: run.stderr.trim().to_string(),
                });
            }
            Ok(())
        })
        .await
        .map_err(|e| WorkspaceOpError::Internal(format!("sync task: {e}")))??;
        Ok(FilesSynced {
            vm: vm.name,
            files: names,
        })
    }
}
