//! `banger vm create`.

use banger_api::rpc::{VmCreateParams, VmRef};
use banger_api::{Request, VmCreated, VmDetail, validate};

use super::follow::{failure, follow};
use crate::args::VmCreateArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// Create the VM, follow its boot unless told not to, print it.
pub fn run(ctx: &mut Ctx, a: VmCreateArgs) -> Result<(), CliError> {
    validate::vm_name(&a.name).map_err(CliError::usage)?;
    let memory_mib = super::resources(a.vcpus, a.memory)?;
    let params = VmCreateParams {
        name: a.name.clone(),
        image: a.image,
        vcpus: a.vcpus,
        memory_mib,
        disk: a.disk,
        work_disk: a.work_disk,
        no_start: a.no_start,
    };
    let mut client = ctx.connect()?;
    let mut created: VmCreated = client.call(Request::VmCreate(params))?;
    match created.operation.clone() {
        Some(op) if a.detach => {
            writeln!(
                ctx.err,
                "{} is booting in the background; follow it with `banger operation watch {}`",
                a.name, op.id
            )?;
        }
        Some(op) => {
            let done = follow(ctx, &mut client, &op.id, &format!("creating {}", a.name))?;
            let hint = format!("; see `banger vm logs {}` (and `--vmm`)", a.name);
            if let Some(e) = failure(&done, &hint) {
                return Err(e);
            }
            let detail: VmDetail = client.call(Request::VmShow(VmRef { vm: a.name.clone() }))?;
            created = VmCreated {
                vm: detail.vm,
                operation: Some(done),
            };
        }
        None => {}
    }
    super::vm_ssh::refresh_include(ctx);
    if a.json.json {
        return print_json(ctx.out, &created);
    }
    print_table(ctx.out, render::vm(ctx.term, now_ms(), &created.vm))?;
    if a.no_start {
        writeln!(
            ctx.err,
            "start it with: banger vm start {}",
            created.vm.name
        )?;
    }
    Ok(())
}
