//! `banger doctor`: the host checks of `banger_daemon::doctor`, plus the
//! config file and the daemon's reachability, which only the CLI can judge.

use std::path::Path;

use banger_api::{DaemonStatus, Request};
use banger_daemon::config::{Config, Layout};
use banger_daemon::doctor::{self, Check, CheckStatus};

use crate::args::JsonArg;
use crate::client::{Client, ClientError};
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{long_duration, print_json, print_table};
use crate::render;

/// Run every check, print them, fail (exit 1) when one failed.
pub fn run(ctx: &mut Ctx, a: JsonArg) -> Result<(), CliError> {
    let mut checks = Vec::new();
    let mode = ctx.mode();
    match ctx.paths() {
        Ok(p) => {
            checks.push(config_check(&p.layout.config_file));
            checks.extend(doctor::run(&p.config, &p.layout));
            checks.extend(crate::system::doctor::checks(mode, &p.config));
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                chain(&e),
                "fix the file (`banger config default` prints every key with its default)",
            ));
            // Check the host with the defaults all the same.
            let file = ctx
                .global
                .config
                .clone()
                .unwrap_or_else(|| Layout::default_config_file(mode));
            let config = Config::default();
            if let Ok(layout) =
                Layout::resolve(mode, file, &config, ctx.global.state_dir.as_deref())
            {
                checks.extend(doctor::run(&config, &layout));
            }
        }
    }
    checks.push(daemon_check(ctx));
    if a.json {
        print_json(ctx.out, &checks)?;
    } else {
        print_table(ctx.out, render::doctor(ctx.term, &checks))?;
    }
    let count = |s| checks.iter().filter(|c| c.status == s).count();
    let (warn, fail) = (count(CheckStatus::Warn), count(CheckStatus::Fail));
    if fail > 0 {
        return Err(CliError::Failed {
            message: format!(
                "{fail} check(s) failed, {warn} warning(s); fix them with the hints above"
            ),
            code: 1,
        });
    }
    if !a.json {
        writeln!(ctx.err, "all checks passed ({warn} warning(s))")?;
    }
    Ok(())
}

fn config_check(file: &Path) -> Check {
    if file.exists() {
        Check::ok("config", format!("{} is valid", file.display()))
    } else {
        Check::ok(
            "config",
            format!("{} does not exist; using the defaults", file.display()),
        )
    }
}

fn daemon_check(ctx: &Ctx) -> Check {
    const NAME: &str = "daemon";
    let socket = match ctx.socket() {
        Ok(s) => s,
        Err(e) => return Check::fail(NAME, chain(&e), "fix the config file or pass --socket"),
    };
    let status = Client::connect(&socket).and_then(|mut c| c.call::<DaemonStatus>(Request::Status));
    match status {
        Ok(s) => Check::ok(
            NAME,
            format!(
                "bangerd {} (pid {}, up {}) at {}; {} VM(s), {} running",
                s.version,
                s.pid,
                long_duration(s.uptime_secs),
                socket.display(),
                s.vms_total,
                s.vms_running
            ),
        ),
        Err(ClientError::Connect { socket, source }) => Check::fail(
            NAME,
            format!("nothing answers at {}: {source}", socket.display()),
            "start it with `bangerd` (dev path) or install it with `banger system install` (system path)",
        ),
        Err(e) => Check::fail(
            NAME,
            chain(&e),
            "restart bangerd (`banger system restart` on the system path)",
        ),
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}
