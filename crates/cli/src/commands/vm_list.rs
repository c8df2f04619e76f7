//! `banger vm list`.

use banger_api::{Request, Vm};

use crate::args::JsonArg;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// List VMs.
pub fn run(ctx: &mut Ctx, a: JsonArg) -> Result<(), CliError> {
    let vms: Vec<Vm> = ctx.connect()?.call(Request::VmList)?;
    if a.json {
        return print_json(ctx.out, &vms);
    }
    if ctx.quiet() {
        for vm in &vms {
            writeln!(ctx.out, "{}", vm.name)?;
        }
        return Ok(());
    }
    if vms.is_empty() {
        writeln!(
            ctx.err,
            "no VMs yet; create one with `banger vm create NAME`"
        )?;
        return Ok(());
    }
    print_table(ctx.out, render::vm_list(ctx.term, now_ms(), &vms))
}
