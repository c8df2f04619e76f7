//! `banger vm start|stop|restart|kill|delete`: changes that answer with
//! the VM (`vm start` follows each boot's progress as `vm create` does). `start`, `stop`, `restart` and `delete` take several
//! names: each is tried in turn, a failure does not stop the others, and
//! the command fails (listing every failure) when any did.

use std::time::Duration;

use banger_api::rpc::{VmDeleteParams, VmRef, VmStopParams};
use banger_api::{Deleted, Request, Vm, VmCreated, VmDetail};

use super::follow::{failure, follow};
use serde::Serialize;

use crate::args::{VmArg, VmDeleteArgs, VmStopArgs};
use crate::args_verbs::VmNamesArg;
use crate::client::{Client, READ_TIMEOUT};
use crate::context::Ctx;
use crate::error::{CliError, chain};
use crate::output::print_json;

/// One boot as an operation whose stages are shown as `vm create` shows
/// them; the VM once it is running.
pub(crate) fn start_one(ctx: &mut Ctx, client: &mut Client, name: &str) -> Result<Vm, CliError> {
    let started: VmCreated = client.call(Request::VmStartOp(VmRef { vm: name.into() }))?;
    let Some(op) = started.operation else {
        return Ok(started.vm);
    };
    let done = follow(ctx, client, &op.id, &format!("starting {name}"))?;
    let hint = format!("; see `banger vm logs {name}` (and `--vmm`)");
    if let Some(e) = failure(&done, &hint) {
        return Err(e);
    }
    let detail: VmDetail = client.call(Request::VmShow(VmRef {
        vm: started.vm.name.clone(),
    }))?;
    Ok(detail.vm)
}

/// `vm start NAME...`.
pub fn start(ctx: &mut Ctx, a: VmNamesArg) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    each(ctx, &a.names, a.json.json, "start", print, |ctx, name| {
        start_one(ctx, &mut client, name)
    })
}

/// `vm stop NAME...` and (with `restart`) `vm restart NAME...`.
pub fn stop(ctx: &mut Ctx, a: VmStopArgs, restart: bool) -> Result<(), CliError> {
    let mut client: Client = ctx.connect()?;
    if let Some(secs) = a.timeout {
        // The daemon may wait `secs` before it kills the VMM: wait longer.
        client.set_timeout(Some(
            READ_TIMEOUT.max(Duration::from_secs(secs.saturating_add(60))),
        ));
    }
    let verb = if restart { "restart" } else { "stop" };
    each(ctx, &a.names, a.json.json, verb, print, |_, name| {
        let params = VmStopParams {
            vm: name.to_string(),
            timeout_secs: a.timeout,
        };
        let request = if restart {
            Request::VmRestart(params)
        } else {
            Request::VmStop(params)
        };
        Ok(client.call(request)?)
    })
}

/// `vm kill`.
pub fn kill(ctx: &mut Ctx, a: VmArg) -> Result<(), CliError> {
    let vm: Vm = ctx.connect()?.call(Request::VmKill(VmRef { vm: a.name }))?;
    if a.json.json {
        return print_json(ctx.out, &vm);
    }
    print(ctx, &vm)
}

/// `vm delete NAME...`: the VMs and their disks.
pub fn delete(ctx: &mut Ctx, a: VmDeleteArgs) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    let result = each(
        ctx,
        &a.names,
        a.json.json,
        "delete",
        |ctx, d: &Deleted| {
            if ctx.quiet() {
                writeln!(ctx.out, "{}", d.name)?;
            } else {
                writeln!(ctx.out, "deleted VM {} ({})", d.name, d.id)?;
            }
            Ok(())
        },
        |_, name| {
            Ok(client.call(Request::VmDelete(VmDeleteParams {
                vm: name.to_string(),
                force: a.force,
            }))?)
        },
    );
    super::vm_ssh::refresh_include(ctx);
    result
}

fn print(ctx: &mut Ctx, vm: &Vm) -> Result<(), CliError> {
    if ctx.quiet() {
        writeln!(ctx.out, "{}", vm.name)?;
    } else if vm.state.has_vmm() {
        writeln!(ctx.out, "{} is {} at {}", vm.name, vm.state, vm.guest_ip)?;
    } else {
        writeln!(ctx.out, "{} is {}", vm.name, vm.state)?;
    }
    Ok(())
}

/// Run `call` for each of `names` in order, printing each result as it
/// comes (or, with `--json`, one object for one name and an array of the
/// successes for several). One name: its error is the command's. Several:
/// the others still run, and the error lists every failed name with its
/// reason; its exit code is theirs when they agree, else 1.
fn each<T: Serialize>(
    ctx: &mut Ctx,
    names: &[String],
    json: bool,
    verb: &str,
    show: impl Fn(&mut Ctx, &T) -> Result<(), CliError>,
    mut call: impl FnMut(&mut Ctx, &str) -> Result<T, CliError>,
) -> Result<(), CliError> {
    if let [name] = names {
        let done = call(ctx, name)?;
        return if json {
            print_json(ctx.out, &done)
        } else {
            show(ctx, &done)
        };
    }
    let mut done = Vec::new();
    let mut failed: Vec<(String, CliError)> = Vec::new();
    for name in names {
        match call(ctx, name) {
            Ok(t) if json => done.push(t),
            Ok(t) => show(ctx, &t)?,
            Err(e) => failed.push((name.clone(), e)),
        }
    }
    if json {
        print_json(ctx.out, &done)?;
    }
    let Some((_, first)) = failed.first() else {
        return Ok(());
    };
    let code = first.exit_code();
    let code = if failed.iter().all(|(_, e)| e.exit_code() == code) {
        code
    } else {
        1
    };
    let lines: Vec<String> = failed
        .iter()
        .map(|(name, e)| format!("  {name}: {}", chain(e)))
        .collect();
    Err(CliError::Failed {
        message: format!(
            "could not {verb} {} of {} VMs (the others succeeded):\n{}",
            failed.len(),
            names.len(),
            lines.join("\n")
        ),
        code,
    })
}
