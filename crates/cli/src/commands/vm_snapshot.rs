//! `banger vm pause|resume|suspend|snapshot|fork` (issue 15).

use banger_api::rpc::{VmForkParams, VmRef, VmSnapshotParams};
use banger_api::{Deleted, Request, Vm, VmSnapshot};
use comfy_table::Cell;

use crate::args::VmArg;
use crate::args_snap::{VmForkArgs, VmSnapshotArgs, VmSnapshotCommand};
use crate::client::READ_TIMEOUT;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{age, now_ms, print_json, print_table, table};

/// `vm pause`, `vm resume` and `vm suspend`: one call answered with the VM.
pub fn power(ctx: &mut Ctx, a: VmArg, request: fn(VmRef) -> Request) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    // A suspend writes all of the guest's memory to disk.
    client.set_timeout(Some(READ_TIMEOUT.max(std::time::Duration::from_secs(600))));
    let vm: Vm = client.call(request(VmRef { vm: a.name }))?;
    if a.json.json {
        return print_json(ctx.out, &vm);
    }
    writeln!(ctx.out, "{} is {}", vm.name, vm.state)?;
    Ok(())
}

/// `vm snapshot NAME SNAP`, `vm snapshot list NAME`, `vm snapshot delete NAME SNAP`.
pub fn snapshot(ctx: &mut Ctx, a: VmSnapshotArgs) -> Result<(), CliError> {
    match a.command {
        Some(VmSnapshotCommand::List(l)) => {
            let list: Vec<VmSnapshot> = ctx
                .connect()?
                .call(Request::VmSnapshotList(VmRef { vm: l.name }))?;
            if l.json.json {
                return print_json(ctx.out, &list);
            }
            let now = now_ms();
            let mut t = table(ctx.term, &["NAME", "VM", "MEMORY", "SIZE", "CREATED"]);
            for s in &list {
                t.add_row(vec![
                    Cell::new(&s.name),
                    Cell::new(&s.vm),
                    Cell::new(format!("{} MiB", s.memory_mib)),
                    Cell::new(banger_api::ByteSize(s.size_bytes)),
                    Cell::new(age(now, s.created_at)),
                ]);
            }
            print_table(ctx.out, t)
        }
        Some(VmSnapshotCommand::Delete(d)) => {
            let gone: Deleted =
                ctx.connect()?
                    .call(Request::VmSnapshotDelete(VmSnapshotParams {
                        vm: d.vm,
                        snapshot: d.snapshot,
                    }))?;
            if d.json.json {
                return print_json(ctx.out, &gone);
            }
            writeln!(ctx.out, "deleted snapshot {}", gone.name)?;
            Ok(())
        }
        None => {
            let (Some(vm), Some(snapshot)) = (a.vm, a.snapshot) else {
                return Err(CliError::Usage(
                    "give a VM and a snapshot name (`banger vm snapshot NAME SNAP`), or `list NAME` / `delete NAME SNAP`".into(),
                ));
            };
            let mut client = ctx.connect()?;
            client.set_timeout(Some(READ_TIMEOUT.max(std::time::Duration::from_secs(600))));
            let s: VmSnapshot =
                client.call(Request::VmSnapshotCreate(VmSnapshotParams { vm, snapshot }))?;
            if a.json.json {
                return print_json(ctx.out, &s);
            }
            writeln!(
                ctx.out,
                "snapshot {} of {} taken ({})",
                s.name,
                s.vm,
                banger_api::ByteSize(s.size_bytes)
            )?;
            Ok(())
        }
    }
}

/// `vm fork SRC NEW [--from SNAP]`.
pub fn fork(ctx: &mut Ctx, a: VmForkArgs) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    client.set_timeout(Some(READ_TIMEOUT.max(std::time::Duration::from_secs(900))));
    let vm: Vm = client.call(Request::VmFork(VmForkParams {
        source: a.source,
        name: a.name,
        from: a.from,
    }))?;
    if a.json.json {
        return print_json(ctx.out, &vm);
    }
    writeln!(ctx.out, "{} is {} at {}", vm.name, vm.state, vm.guest_ip)?;
    Ok(())
}
