//! `banger workspace prepare|export|sync-files`.

use std::path::{Path, PathBuf};

use banger_api::Request;
use banger_api::guest::{
    FilesSynced, WorkspaceExportParams, WorkspaceExported, WorkspacePrepareParams,
    WorkspacePrepared,
};
use banger_api::rpc::VmRef;

use crate::args::VmArg;
use crate::args_guest::{WorkspaceExportArgs, WorkspacePrepareArgs};
use crate::context::{Ctx, remote_path};
use crate::error::CliError;
use crate::output::print_json;

/// A path the daemon opens: with a remote context, an absolute path on
/// that host (`what` names it in the error when missing); here, `p` made
/// absolute, the working directory when absent.
fn daemon_path(ctx: &Ctx, p: Option<&Path>, what: &str) -> Result<String, CliError> {
    match (ctx.remote()?, p) {
        (Some(r), Some(p)) => remote_path(&r, what, p),
        (Some(r), None) => Err(CliError::Usage(format!(
            "with context {} the daemon reads the checkout on {}: give its absolute path on that host (`banger workspace prepare VM /path/on/host`)",
            r.name, r.target
        ))),
        (None, p) => Ok(absolute(p)?.display().to_string()),
    }
}

fn absolute(p: Option<&Path>) -> Result<PathBuf, CliError> {
    let cwd = std::env::current_dir()
        .map_err(|e| CliError::usage(format!("cannot read the current directory: {e}")))?;
    Ok(match p {
        Some(p) if p.is_absolute() => p.to_path_buf(),
        Some(p) => cwd.join(p),
        None => cwd,
    })
}

/// `workspace prepare`.
pub fn prepare(ctx: &mut Ctx, a: WorkspacePrepareArgs) -> Result<(), CliError> {
    let path = daemon_path(ctx, a.path.as_deref(), "PATH")?;
    let mut c = ctx.connect()?;
    c.set_timeout(None);
    let done: WorkspacePrepared = c.call(Request::WorkspacePrepare(WorkspacePrepareParams {
        vm: a.vm,
        path,
        full: a.full,
        trust_guest: a.trust_guest,
    }))?;
    if a.json.json {
        return print_json(ctx.out, &done);
    }
    let what = if done.full { "copied" } else { "updated" };
    writeln!(
        ctx.out,
        "{} {what} into {}:{} ({} files, {} deleted, {} bytes){}{}",
        done.host_root,
        done.vm,
        done.guest_dir,
        done.files_sent,
        done.files_deleted,
        done.bytes_sent,
        match done.guest_changed {
            0 => String::new(),
            n => format!(", {n} changed inside the VM and restored"),
        },
        done.branch
            .as_ref()
            .map(|b| format!(", on branch {b}"))
            .unwrap_or_default()
    )?;
    Ok(())
}

/// `workspace export`.
pub fn export(ctx: &mut Ctx, a: WorkspaceExportArgs) -> Result<(), CliError> {
    let path = daemon_path(ctx, a.path.as_deref(), "PATH")?;
    let patch = match &a.patch {
        Some(p) => Some(daemon_path(ctx, Some(p), "--patch")?),
        None => None,
    };
    let mut c = ctx.connect()?;
    c.set_timeout(None);
    let done: WorkspaceExported = c.call(Request::WorkspaceExport(WorkspaceExportParams {
        vm: a.vm,
        path,
        branch: a.branch,
        patch,
    }))?;
    if a.json.json {
        return print_json(ctx.out, &done);
    }
    match (&done.changed, &done.branch, &done.commit, &done.patch) {
        (false, _, _, _) => writeln!(ctx.out, "{}: nothing new since the prepare", done.vm)?,
        (true, Some(b), Some(c), _) => writeln!(
            ctx.out,
            "{}: work exported to branch {b} ({}); your working tree is unchanged",
            done.vm,
            &c[..c.len().min(12)]
        )?,
        (true, _, _, Some(p)) => writeln!(ctx.out, "{}: patch series written to {p}", done.vm)?,
        _ => writeln!(ctx.out, "{}: exported", done.vm)?,
    }
    Ok(())
}

/// `workspace sync-files`.
pub fn sync_files(ctx: &mut Ctx, a: VmArg) -> Result<(), CliError> {
    let done: FilesSynced = ctx
        .connect()?
        .call(Request::WorkspaceSyncFiles(VmRef { vm: a.name }))?;
    if a.json.json {
        return print_json(ctx.out, &done);
    }
    if done.files.is_empty() {
        writeln!(ctx.out, "nothing to sync: `[guest] sync_files` is empty")?;
    }
    for f in &done.files {
        writeln!(ctx.out, "{}: ~/{f}", done.vm)?;
    }
    Ok(())
}
