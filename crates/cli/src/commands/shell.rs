//! `banger shell [VM] [-- CMD...]`: a shell in a VM, the way `multipass
//! shell` opens its primary instance.
//!
//! Without a name it uses `vm.default_name` from the config and creates
//! that VM from the default image when it does not exist. A stopped VM is
//! started first. Then it execs the same ssh command as `vm ssh`, so a
//! command's exit code is banger's.

use banger_api::rpc::{VmCreateParams, VmRef};
use banger_api::{ErrorKind, Request, VmDetail};

use crate::args_guest::VmSshArgs;
use crate::args_verbs::ShellArgs;
use crate::context::Ctx;
use crate::error::CliError;

/// `shell`.
pub fn run(ctx: &mut Ctx, a: ShellArgs) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    let (name, is_default) = match a.name {
        Some(n) => (n, false),
        None => (ctx.paths()?.config.vm.default_name, true),
    };
    match client.call::<VmDetail>(Request::VmShow(VmRef { vm: name.clone() })) {
        Ok(d) if d.vm.state.has_vmm() => {}
        Ok(d) => {
            writeln!(ctx.err, "starting {} ({})", d.vm.name, d.vm.state)?;
            super::vm_power::start_one(ctx, &mut client, &name)?;
        }
        Err(e) if is_default && e.rpc().is_some_and(|r| r.kind == ErrorKind::NotFound) => {
            writeln!(
                ctx.err,
                "creating the default VM {name} (`vm.default_name`) from the default image"
            )?;
            let params = VmCreateParams {
                name: name.clone(),
                ..VmCreateParams::default()
            };
            super::vm_create::create(ctx, &mut client, params, false)?;
            super::vm_ssh::refresh_include(ctx);
        }
        Err(e) => return Err(e.into()),
    }
    drop(client);
    super::vm_ssh::ssh(
        ctx,
        VmSshArgs {
            name,
            command: a.command,
        },
    )
}
