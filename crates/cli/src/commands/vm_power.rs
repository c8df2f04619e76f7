//! `banger vm start|stop|restart|kill`: synchronous state changes that
//! answer with the VM.

use std::time::Duration;

use banger_api::rpc::{VmRef, VmStopParams};
use banger_api::{Request, Vm};

use crate::args::{VmArg, VmStopArgs};
use crate::client::{Client, READ_TIMEOUT};
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::print_json;

/// `vm start`.
pub fn start(ctx: &mut Ctx, a: VmArg) -> Result<(), CliError> {
    let vm: Vm = ctx
        .connect()?
        .call(Request::VmStart(VmRef { vm: a.name }))?;
    print(ctx, &vm, a.json.json)?;
    // A suspended VM that had to boot from disk says so.
    if !a.json.json
        && let Some(note) = vm.last_error.as_deref().filter(|_| vm.state.has_vmm())
    {
        writeln!(ctx.out, "note: {note}")?;
    }
    Ok(())
}

/// `vm stop` and (with `restart`) `vm restart`.
pub fn stop(ctx: &mut Ctx, a: VmStopArgs, restart: bool) -> Result<(), CliError> {
    let mut client: Client = ctx.connect()?;
    if let Some(secs) = a.timeout {
        // The daemon may wait `secs` before it kills the VMM: wait longer.
        client.set_timeout(Some(
            READ_TIMEOUT.max(Duration::from_secs(secs.saturating_add(60))),
        ));
    }
    let params = VmStopParams {
        vm: a.name,
        timeout_secs: a.timeout,
    };
    let request = if restart {
        Request::VmRestart(params)
    } else {
        Request::VmStop(params)
    };
    let vm: Vm = client.call(request)?;
    print(ctx, &vm, a.json.json)
}

/// `vm kill`.
pub fn kill(ctx: &mut Ctx, a: VmArg) -> Result<(), CliError> {
    let vm: Vm = ctx.connect()?.call(Request::VmKill(VmRef { vm: a.name }))?;
    print(ctx, &vm, a.json.json)
}

fn print(ctx: &mut Ctx, vm: &Vm, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(ctx.out, vm);
    }
    if vm.state.has_vmm() {
        writeln!(ctx.out, "{} is {} at {}", vm.name, vm.state, vm.guest_ip)?;
    } else {
        writeln!(ctx.out, "{} is {}", vm.name, vm.state)?;
    }
    Ok(())
}
