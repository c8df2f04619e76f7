//! `banger vm logs`.

use banger_api::rpc::{LogSource, VmLogsParams};
use banger_api::{Request, VmLogs};

use crate::args::VmLogsArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::print_json;

/// Print the last lines of the console or VMM log.
pub fn run(ctx: &mut Ctx, a: VmLogsArgs) -> Result<(), CliError> {
    let params = VmLogsParams {
        vm: a.name,
        source: if a.vmm {
            LogSource::Vmm
        } else {
            LogSource::Console
        },
        tail: a.tail,
    };
    let logs: VmLogs = ctx.connect()?.call(Request::VmLogs(params))?;
    if a.json.json {
        return print_json(ctx.out, &logs);
    }
    if logs.lines.is_empty() {
        writeln!(ctx.err, "{} is empty", logs.path)?;
    }
    for line in &logs.lines {
        writeln!(ctx.out, "{line}")?;
    }
    Ok(())
}
