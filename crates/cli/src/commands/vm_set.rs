//! `banger vm set`.

use banger_api::rpc::VmSetParams;
use banger_api::{Request, Vm};

use crate::args::VmSetArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// Change the resources of a stopped VM (clap requires at least one change).
pub fn run(ctx: &mut Ctx, a: VmSetArgs) -> Result<(), CliError> {
    let memory_mib = super::resources(a.vcpus, a.memory)?;
    let params = VmSetParams {
        vm: a.name,
        vcpus: a.vcpus,
        memory_mib,
        disk: a.disk,
        work_disk: a.work_disk,
    };
    let vm: Vm = ctx.connect()?.call(Request::VmSet(params))?;
    if a.json.json {
        return print_json(ctx.out, &vm);
    }
    print_table(ctx.out, render::vm(ctx.term, now_ms(), &vm))
}
