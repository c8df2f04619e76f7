//! `banger vm logs [-f]`.

use std::time::Duration;

use banger_api::rpc::{LogSource, VmLogsParams};
use banger_api::{Request, VmLogs};

use crate::args::VmLogsArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::print_json;

/// How often `-f` asks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

/// Print the last lines of the console or VMM log; with `-f`, keep
/// printing what is appended (from the byte offset the daemon returns,
/// starting over when the log is rotated) until interrupted.
pub fn run(ctx: &mut Ctx, a: VmLogsArgs) -> Result<(), CliError> {
    let source = if a.vmm {
        LogSource::Vmm
    } else {
        LogSource::Console
    };
    let mut client = ctx.connect()?;
    let logs: VmLogs = client.call(Request::VmLogs(VmLogsParams {
        vm: a.name.clone(),
        source,
        tail: a.tail,
        since: None,
    }))?;
    if a.json.json {
        return print_json(ctx.out, &logs);
    }
    if logs.lines.is_empty() && !a.follow {
        writeln!(ctx.err, "{} is empty", logs.path)?;
    }
    for line in &logs.lines {
        writeln!(ctx.out, "{line}")?;
    }
    if !a.follow {
        return Ok(());
    }
    let mut end = logs.end;
    loop {
        ctx.out.flush()?;
        std::thread::sleep(FOLLOW_EVERY);
        let more: VmLogs = client.call(Request::VmLogs(VmLogsParams {
            vm: a.name.clone(),
            source,
            tail: None,
            since: Some(end),
        }))?;
        for line in &more.lines {
            writeln!(ctx.out, "{line}")?;
        }
        end = more.end;
    }
}
