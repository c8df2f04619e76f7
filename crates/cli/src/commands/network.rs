//! `banger network reset`.

use banger_api::{NetworkReset, Request};

use crate::args::JsonArg;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::print_json;

/// Remove banger's bridge, TAPs and NAT table.
pub fn reset(ctx: &mut Ctx, a: JsonArg) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    let r: NetworkReset = client.call(Request::NetworkReset)?;
    if a.json {
        return print_json(ctx.out, &r);
    }
    let links = if r.links.is_empty() {
        "none".to_string()
    } else {
        r.links.join(", ")
    };
    let forwarding = match r.ip_forward_restored {
        Some(v) => format!("restored to {}", u8::from(v)),
        None => "untouched".to_string(),
    };
    writeln!(
        ctx.out,
        "removed links: {links}\nNAT table: {}\nIPv4 forwarding: {forwarding}",
        if r.nat_table { "removed" } else { "absent" }
    )
    .map_err(CliError::from)
}
