//! `banger vm create`, from flags or a spec file (`-f`), with provisioning.

use std::path::Path;

use banger_api::forward::{PortForward, VmForwardParams};
use banger_api::guest::{WorkspacePrepareParams, WorkspacePrepared};
use banger_api::rpc::{VmCreateParams, VmRef};
use banger_api::{Request, VmCreated, VmDetail, validate};

use super::follow::{failure, follow};
use super::vm_provision;
use super::vm_spec::VmSpec;
use crate::args::VmCreateArgs;
use crate::client::Client;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// Create the VM, follow its boot unless told not to, add the spec's
/// forwards, prepare its workspace, run the provisioning scripts, print it.
pub fn run(ctx: &mut Ctx, a: VmCreateArgs) -> Result<(), CliError> {
    let spec = match &a.more.spec {
        Some(f) => VmSpec::load(f)?,
        None => VmSpec::default(),
    };
    let spec_forwards = spec.forward_specs().map_err(CliError::usage)?;
    let name = a.name.or(spec.name).ok_or_else(|| {
        CliError::usage("name the VM: `banger vm create NAME` or `name = \"…\"` in the spec")
    })?;
    validate::vm_name(&name).map_err(CliError::usage)?;
    let mut provision = spec.provision;
    provision.extend(a.more.provision);
    let scripts = vm_provision::read_scripts(&provision)?;
    let workspace = match spec.workspace {
        Some(p) => Some(std::path::absolute(&p).map_err(|e| {
            CliError::usage(format!("cannot resolve workspace {}: {e}", p.display()))
        })?),
        None => None,
    };
    let after_boot = !scripts.is_empty() || workspace.is_some();
    if after_boot && (a.no_start || a.detach) {
        return Err(CliError::usage(
            "provisioning and a workspace need the VM booted: drop --no-start/--detach",
        ));
    }
    let vcpus = a.vcpus.or(spec.vcpus);
    let memory = a.memory.or(spec.memory);
    let memory_mib = super::resources(vcpus, memory)?;
    let params = VmCreateParams {
        name: name.clone(),
        image: a.image.or(spec.image),
        vcpus,
        memory_mib,
        disk: a.disk.or(spec.disk),
        work_disk: a.work_disk.or(spec.work_disk),
        no_start: a.no_start,
    };
    let forwards = spec_forwards;
    let mut client = ctx.connect()?;
    let created = create(ctx, &mut client, params, a.detach)?;
    super::vm_ssh::refresh_include(ctx);
    for f in forwards {
        let added: PortForward = client.call(Request::VmForward(VmForwardParams {
            vm: created.vm.name.clone(),
            guest_port: f.guest_port,
            host_port: f.host_port,
            address: None,
        }))?;
        if !ctx.quiet() {
            writeln!(
                ctx.err,
                "forwarding {}",
                super::vm_forward::describe(&added)
            )?;
        }
    }
    if let Some(path) = workspace {
        prepare(ctx, &mut client, &name, &path)?;
    }
    if !scripts.is_empty() {
        vm_provision::run(ctx, &mut client, &name, &scripts)?;
    }
    if a.json.json {
        return print_json(ctx.out, &created);
    }
    if ctx.quiet() {
        writeln!(ctx.out, "{}", created.vm.name)?;
        return Ok(());
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

/// Send `vm.create` and follow the boot (unless `detach`); the created VM
/// as it is once booted.
pub fn create(
    ctx: &mut Ctx,
    client: &mut Client,
    params: VmCreateParams,
    detach: bool,
) -> Result<VmCreated, CliError> {
    let name = params.name.clone();
    let created: VmCreated = client.call(Request::VmCreate(params))?;
    match created.operation.clone() {
        Some(op) if detach => {
            writeln!(
                ctx.err,
                "{name} is booting in the background; follow it with `banger operation watch {}`",
                op.id
            )?;
            Ok(created)
        }
        Some(op) => {
            let done = follow(ctx, client, &op.id, &format!("creating {name}"))?;
            let hint = format!("; see `banger vm logs {name}` (and `--vmm`)");
            if let Some(e) = failure(&done, &hint) {
                return Err(e);
            }
            let detail: VmDetail = client.call(Request::VmShow(VmRef { vm: name }))?;
            Ok(VmCreated {
                vm: detail.vm,
                operation: Some(done),
            })
        }
        None => Ok(created),
    }
}

fn prepare(ctx: &mut Ctx, client: &mut Client, vm: &str, path: &Path) -> Result<(), CliError> {
    client.set_timeout(None);
    let done: WorkspacePrepared =
        client.call(Request::WorkspacePrepare(WorkspacePrepareParams {
            vm: vm.to_string(),
            path: path.display().to_string(),
            full: false,
            trust_guest: false,
        }))?;
    client.set_timeout(Some(crate::client::READ_TIMEOUT));
    writeln!(
        ctx.err,
        "workspace {} copied into {}:{} ({} files)",
        done.host_root, done.vm, done.guest_dir, done.files_sent
    )?;
    Ok(())
}
