//! `banger status`.

use banger_api::{DaemonStatus, Request};

use crate::args::JsonArg;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{print_json, print_table};
use crate::render;

/// Show the daemon's status.
pub fn run(ctx: &mut Ctx, a: JsonArg) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    let status: DaemonStatus = client.call(Request::Status)?;
    if a.json {
        return print_json(ctx.out, &status);
    }
    let socket = client.endpoint().to_string();
    print_table(ctx.out, render::status(ctx.term, &status, &socket))
}
