//! `banger vm stats`.

use banger_api::rpc::VmRef;
use banger_api::{Request, VmStats};

use crate::args::VmArg;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{print_json, print_table};
use crate::render;

/// Show a VM's resource use.
pub fn run(ctx: &mut Ctx, a: VmArg) -> Result<(), CliError> {
    let stats: VmStats = ctx
        .connect()?
        .call(Request::VmStats(VmRef { vm: a.name }))?;
    if a.json.json {
        return print_json(ctx.out, &stats);
    }
    print_table(ctx.out, render::vm_stats(ctx.term, &stats))
}
