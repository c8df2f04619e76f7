//! `banger config default|show`.

use banger_config::{Config, EXAMPLE, Mode};
use serde::Serialize;

use crate::args::JsonArg;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::print_json;

/// `config show --json`.
#[derive(Debug, Serialize)]
struct Effective {
    mode: &'static str,
    config_file: String,
    config_file_exists: bool,
    state_dir: String,
    runtime_dir: String,
    socket: String,
    config: Config,
}

/// Print the annotated defaults.
pub fn default(ctx: &mut Ctx) -> Result<(), CliError> {
    ctx.out.write_all(EXAMPLE.as_bytes())?;
    Ok(())
}

/// Print the effective configuration (TOML, or JSON) and the resolved paths.
pub fn show(ctx: &mut Ctx, a: JsonArg) -> Result<(), CliError> {
    ctx.local_only(
        "config show",
        "it shows this machine's config file; run `banger config show` on that host over ssh",
    )?;
    let paths = ctx.paths()?;
    let socket = ctx.socket()?;
    let l = &paths.layout;
    let effective = Effective {
        mode: match paths.mode {
            Mode::Dev => "dev",
            Mode::System => "system",
        },
        config_file: l.config_file.display().to_string(),
        config_file_exists: l.config_file.exists(),
        state_dir: l.state_dir.display().to_string(),
        runtime_dir: l.runtime_dir.display().to_string(),
        socket: socket.display().to_string(),
        config: paths.config,
    };
    if a.json {
        return print_json(ctx.out, &effective);
    }
    let e = &effective;
    let source = if e.config_file_exists {
        ""
    } else {
        " (absent: defaults)"
    };
    writeln!(
        ctx.out,
        "# {} path; config file {}{source}",
        e.mode, e.config_file
    )?;
    writeln!(ctx.out, "# resolved state_dir   = {}", e.state_dir)?;
    writeln!(ctx.out, "# resolved runtime_dir = {}", e.runtime_dir)?;
    writeln!(ctx.out, "# daemon socket        = {}", e.socket)?;
    writeln!(ctx.out)?;
    ctx.out.write_all(e.config.to_toml().as_bytes())?;
    Ok(())
}
