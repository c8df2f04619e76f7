//! `banger vm delete`.

use banger_api::rpc::VmDeleteParams;
use banger_api::{Deleted, Request};

use crate::args::VmDeleteArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::print_json;

/// Delete the VM and its disks.
pub fn run(ctx: &mut Ctx, a: VmDeleteArgs) -> Result<(), CliError> {
    let params = VmDeleteParams {
        vm: a.name,
        force: a.force,
    };
    let deleted: Deleted = ctx.connect()?.call(Request::VmDelete(params))?;
    super::vm_ssh::refresh_include(ctx);
    if a.json.json {
        return print_json(ctx.out, &deleted);
    }
    writeln!(ctx.out, "deleted VM {} ({})", deleted.name, deleted.id)?;
    Ok(())
}
