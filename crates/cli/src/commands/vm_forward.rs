//! `banger vm forward`: add or remove a port forward.

use banger_api::Request;
use banger_api::forward::{ForwardSpec, PortForward, VmForwardParams, parse_address};

use crate::args_forward::VmForwardArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::print_json;

/// Add a forward (and print the host port it got), or remove the VM's
/// forwards to a guest port with `--remove`.
pub fn run(ctx: &mut Ctx, a: VmForwardArgs) -> Result<(), CliError> {
    let spec = ForwardSpec::parse(&a.spec).map_err(CliError::usage)?;
    let address = a
        .address
        .as_deref()
        .map(parse_address)
        .transpose()
        .map_err(CliError::usage)?;
    let params = VmForwardParams {
        vm: a.name,
        guest_port: spec.guest_port,
        host_port: spec.host_port,
        address,
    };
    if a.remove {
        let removed: Vec<PortForward> = ctx.connect()?.call(Request::VmForwardRemove(params))?;
        if a.json.json {
            return print_json(ctx.out, &removed);
        }
        for f in &removed {
            writeln!(ctx.out, "removed {}", describe(f))?;
        }
        return Ok(());
    }
    let added: PortForward = ctx.connect()?.call(Request::VmForward(params))?;
    if a.json.json {
        return print_json(ctx.out, &added);
    }
    writeln!(ctx.out, "forwarding {}", describe(&added))?;
    Ok(())
}

/// `127.0.0.1:8080 -> dev port 80`.
pub fn describe(f: &PortForward) -> String {
    format!("{} -> {} port {}", f.host_endpoint(), f.vm, f.guest_port)
}
