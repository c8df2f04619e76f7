//! `banger context add|use|list|rm`: the remote daemons in `contexts.toml`
//! (see `crate::contexts`). Nothing here talks to a daemon.

use serde::Serialize;

use crate::args::JsonArg;
use crate::args_context::{ContextAddArgs, ContextCommand, ContextNameArg};
use crate::context::Ctx;
use crate::contexts::{ContextFile, LOCAL};
use crate::error::CliError;
use crate::output::{or_dash, print_json, print_table, table};

/// One row of `context list --json`.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    /// `ssh://…`; absent for `local`.
    url: Option<String>,
    ssh_config: Option<String>,
    /// The context later commands use (flag, environment, then `current`).
    in_effect: bool,
    /// The one `banger context use` chose.
    current: bool,
}

/// Dispatch `banger context …`.
pub fn run(ctx: &mut Ctx, c: ContextCommand) -> Result<(), CliError> {
    let path = ContextFile::default_path()?;
    let mut file = ContextFile::load(&path)?;
    match c {
        ContextCommand::Add(a) => add(ctx, &path, file, a),
        ContextCommand::Use(ContextNameArg { name }) => {
            file.use_context(&name)?;
            file.save(&path)?;
            writeln!(ctx.out, "now using context {name}")?;
            Ok(())
        }
        ContextCommand::Rm(ContextNameArg { name }) => {
            file.remove(&name)?;
            file.save(&path)?;
            writeln!(ctx.out, "removed context {name}")?;
            Ok(())
        }
        ContextCommand::List(a) => list(ctx, &file, a),
    }
}

fn add(
    ctx: &mut Ctx,
    path: &std::path::Path,
    mut file: ContextFile,
    a: ContextAddArgs,
) -> Result<(), CliError> {
    let ssh_config = match a.ssh_config {
        None => None,
        Some(f) => {
            let abs = std::path::absolute(&f)
                .map_err(|e| CliError::Usage(format!("--ssh-config {}: {e}", f.display())))?;
            if !abs.is_file() {
                return Err(CliError::Usage(format!(
                    "--ssh-config {}: no such file",
                    abs.display()
                )));
            }
            Some(abs)
        }
    };
    let target = file.add(&a.name, &a.url, ssh_config)?;
    file.save(path)?;
    writeln!(
        ctx.out,
        "added context {} ({target}); use it with `banger --context {}` or `banger context use {}`",
        a.name, a.name, a.name
    )?;
    Ok(())
}

fn list(ctx: &mut Ctx, file: &ContextFile, a: JsonArg) -> Result<(), CliError> {
    let in_effect = match ctx.remote() {
        Ok(r) => Some(r.map_or_else(|| LOCAL.to_string(), |r| r.name)),
        Err(e) => {
            writeln!(ctx.err, "note: {e}")?;
            None
        }
    };
    let mut rows = vec![Row {
        name: LOCAL.into(),
        url: None,
        ssh_config: None,
        in_effect: in_effect.as_deref() == Some(LOCAL),
        current: file.current.is_none(),
    }];
    rows.extend(file.contexts.iter().map(|(name, c)| Row {
        name: name.clone(),
        url: Some(c.url.clone()),
        ssh_config: c.ssh_config.as_ref().map(|p| p.display().to_string()),
        in_effect: in_effect.as_deref() == Some(name),
        current: file.current.as_deref() == Some(name),
    }));
    if a.json {
        return print_json(ctx.out, &rows);
    }
    let mut t = table(ctx.term, &["", "NAME", "DAEMON", "SSH CONFIG"]);
    for r in rows {
        t.add_row(vec![
            if r.in_effect { "*" } else { "" }.to_string(),
            r.name,
            r.url.unwrap_or_else(|| "this machine".into()),
            or_dash(r.ssh_config),
        ]);
    }
    print_table(ctx.out, t)
}
