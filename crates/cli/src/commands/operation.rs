//! `banger operation list|show|watch`.

use banger_api::rpc::OpRef;
use banger_api::{Operation, Request};

use super::follow::{failure, follow};
use crate::args::{JsonArg, OpArg};
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// `operation list`.
pub fn list(ctx: &mut Ctx, a: JsonArg) -> Result<(), CliError> {
    let ops: Vec<Operation> = ctx.connect()?.call(Request::OperationList)?;
    if a.json {
        return print_json(ctx.out, &ops);
    }
    if ops.is_empty() {
        writeln!(ctx.err, "no recent operations")?;
        return Ok(());
    }
    print_table(ctx.out, render::op_list(ctx.term, now_ms(), &ops))
}

/// `operation show`.
pub fn show(ctx: &mut Ctx, a: OpArg) -> Result<(), CliError> {
    let op: Operation = ctx
        .connect()?
        .call(Request::OperationGet(OpRef { id: a.id }))?;
    if a.json.json {
        return print_json(ctx.out, &op);
    }
    print_table(ctx.out, render::op(ctx.term, now_ms(), &op))
}

/// `operation watch`: progress on stderr, the final state on stdout; a
/// failed operation exits with its error's code.
pub fn watch(ctx: &mut Ctx, a: OpArg) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    let op = follow(ctx, &mut client, &a.id, &format!("operation {}", a.id))?;
    if a.json.json {
        print_json(ctx.out, &op)?;
    } else {
        print_table(ctx.out, render::op(ctx.term, now_ms(), &op))?;
    }
    match failure(&op, "") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
