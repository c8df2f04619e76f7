//! `banger doctor`: the config file (judged here), the host checks (run by
//! `bangerd` on its own host, user and network namespace, and returned by
//! `daemon.doctor`), the system-path checks and the daemon's reachability.
//! Without a daemon, the host checks are replaced by the few that need
//! none: whether the binaries are there.

use std::path::Path;

use banger_api::doctor::{Check, CheckStatus};
use banger_api::{DaemonStatus, Request};
use banger_config::{Config, Layout};

use crate::args::JsonArg;
use crate::client::{Client, ClientError};
use crate::context::Ctx;
use crate::error::{CliError, chain};
use crate::output::{long_duration, print_json, print_table};
use crate::render;

/// Run every check, print them, fail (exit 1) when one failed.
pub fn run(ctx: &mut Ctx, a: JsonArg) -> Result<(), CliError> {
    let mut checks = Vec::new();
    if ctx.remote()?.is_some() {
        // This machine's files say nothing about the remote daemon's host:
        // only the checks the daemon runs there.
        let (daemon, host) = ask_daemon(ctx);
        checks.extend(host.unwrap_or_default());
        checks.push(daemon);
        return report(ctx, &checks, a);
    }
    let mode = ctx.mode();
    let paths = ctx.paths();
    let config = match &paths {
        Ok(p) => {
            checks.push(config_check(&p.layout.config_file));
            p.config.clone()
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                chain(e),
                "fix the file (`banger config default` prints every key with its default)",
            ));
            Config::default()
        }
    };
    let (daemon, host) = ask_daemon(ctx);
    match host {
        Some(host) => checks.extend(host),
        None => checks.extend(local_checks(&config, &config_file(ctx, &paths))),
    }
    if let Ok(p) = &paths {
        checks.extend(crate::system::doctor::checks(mode, &p.config));
    }
    checks.push(daemon);
    report(ctx, &checks, a)
}

/// Print the checks; fail (exit 1) when one failed.
fn report(ctx: &mut Ctx, checks: &[Check], a: JsonArg) -> Result<(), CliError> {
    if a.json {
        print_json(ctx.out, &checks)?;
    } else {
        print_table(ctx.out, render::doctor(ctx.term, checks))?;
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

/// The config file doctor judged (the default one when it could not be loaded).
fn config_file(ctx: &Ctx, paths: &Result<crate::context::Paths, CliError>) -> std::path::PathBuf {
    match paths {
        Ok(p) => p.layout.config_file.clone(),
        Err(_) => ctx
            .global
            .config
            .clone()
            .unwrap_or_else(|| Layout::default_config_file(ctx.mode())),
    }
}

/// The checks that need no daemon, for when none answers: the VMM binary
/// and `bangerd` can be found (by `banger-config`'s lookup, as the daemon
/// finds them). The rest of the host checks run inside `bangerd`.
pub fn local_checks(config: &Config, config_file: &Path) -> Vec<Check> {
    let fc = &config.firecracker_bin;
    let firecracker = match banger_config::find_binary(fc) {
        Some(p) => Check::ok(
            "firecracker",
            format!(
                "{} is there (its version and KVM are checked by bangerd)",
                p.display()
            ),
        ),
        None => Check::fail(
            "firecracker",
            if fc.contains('/') {
                format!("{fc} does not exist")
            } else {
                format!("{fc} was not found on $PATH")
            },
            format!(
                "install Firecracker from https://github.com/firecracker-microvm/firecracker/releases and put `firecracker` on $PATH, or set firecracker_bin in {}",
                config_file.display()
            ),
        ),
    };
    let bangerd = match banger_config::find_own_binary("bangerd") {
        Some(p) => Check::ok("bangerd", format!("{} is there", p.display())),
        None => Check::fail(
            "bangerd",
            "bangerd is neither beside banger nor on $PATH",
            "install banger's binaries together (banger, bangerd, bangerd-root in one directory)",
        ),
    };
    vec![firecracker, bangerd]
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

/// The `daemon` check and, when the daemon answered `daemon.doctor`, its
/// host checks (`None`: the caller adds [`local_checks`]).
fn ask_daemon(ctx: &Ctx) -> (Check, Option<Vec<Check>>) {
    const NAME: &str = "daemon";
    if let Ok(Some(r)) = ctx.remote() {
        let client = Client::connect_ssh(&r.target, r.ssh_config.as_ref());
        return daemon_checks(client, &r.target.to_string(), None);
    }
    let socket = match ctx.socket() {
        Ok(s) => s,
        Err(e) => {
            return (
                Check::fail(
                    NAME,
                    format!("{}; {NOT_RUN}", chain(&e)),
                    "fix the config file or pass --socket",
                ),
                None,
            );
        }
    };
    let fallback = local_checks_for(ctx);
    daemon_checks(
        Client::connect(&socket),
        &socket.display().to_string(),
        Some(fallback),
    )
}

/// The daemon's status and host checks; when it cannot run them, a failed
/// check plus `fallback` (this machine's checks, when the daemon is local).
fn daemon_checks(
    client: Result<Client, ClientError>,
    endpoint: &str,
    fallback: Option<Vec<Check>>,
) -> (Check, Option<Vec<Check>>) {
    const NAME: &str = "daemon";
    let mut client = match client {
        Ok(c) => c,
        Err(e) => return (unreachable(e), None),
    };
    let status = match client.call::<DaemonStatus>(Request::Status) {
        Ok(s) => s,
        Err(e) => return (unreachable(e), None),
    };
    let up = Check::ok(
        NAME,
        format!(
            "bangerd {} (pid {}, up {}) at {}; {} VM(s), {} running",
            status.version,
            status.pid,
            long_duration(status.uptime_secs),
            endpoint,
            status.vms_total,
            status.vms_running
        ),
    );
    match client.call::<Vec<Check>>(Request::Doctor) {
        Ok(host) => (up, Some(host)),
        Err(e) => {
            let mut host = vec![Check::fail(
                "host checks",
                format!("bangerd did not run them: {}", chain(&e)),
                "restart bangerd so that it is the same version as this banger (`banger system restart` on the system path)",
            )];
            host.extend(fallback.unwrap_or_default());
            (up, Some(host))
        }
    }
}

/// [`local_checks`] with the context's config (the defaults when it cannot be loaded).
fn local_checks_for(ctx: &Ctx) -> Vec<Check> {
    let paths = ctx.paths();
    let config = paths.as_ref().map(|p| p.config.clone()).unwrap_or_default();
    local_checks(&config, &config_file(ctx, &paths))
}

const NOT_RUN: &str =
    "the host checks (KVM, the VMM, directories, network) run inside bangerd and were not run";

/// The failing `daemon` check when nothing usable answers.
fn unreachable(e: ClientError) -> Check {
    const NAME: &str = "daemon";
    match e {
        ClientError::Connect { socket, source } => Check::fail(
            NAME,
            format!(
                "nothing answers at {}: {source}; {NOT_RUN}",
                socket.display()
            ),
            "start it with `bangerd` (dev path) or install it with `banger system install` (system path)",
        ),
        e => Check::fail(
            NAME,
            format!("{}; {NOT_RUN}", chain(&e)),
            "restart bangerd (`banger system restart` on the system path)",
        ),
    }
}
