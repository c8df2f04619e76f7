//! `banger vm show`.

use banger_api::rpc::VmRef;
use banger_api::{Request, VmDetail};

use crate::args::VmArg;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// Show one VM in detail.
pub fn run(ctx: &mut Ctx, a: VmArg) -> Result<(), CliError> {
    let detail: VmDetail = ctx.connect()?.call(Request::VmShow(VmRef { vm: a.name }))?;
    if a.json.json {
        return print_json(ctx.out, &detail);
    }
    print_table(ctx.out, render::vm_detail(ctx.term, now_ms(), &detail))
}
