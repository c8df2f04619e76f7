//! `banger vm ssh`, `banger vm ports` and `banger ssh-config`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use banger_api::Request;
use banger_api::guest::{GuestPort, SshArgv, SshConfigText, VmSshParams};
use banger_api::rpc::VmRef;

use crate::args::VmArg;
use crate::args_guest::{SshConfigArgs, VmSshArgs};
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{or_dash, print_json, print_table, table};

/// `vm ssh`: exec ssh with the daemon's options (pinned host key, banger's key).
pub fn ssh(ctx: &mut Ctx, a: VmSshArgs) -> Result<(), CliError> {
    let argv: SshArgv = ctx.connect()?.call(Request::VmSshArgv(VmSshParams {
        vm: a.name,
        command: a.command,
    }))?;
    let Some((prog, rest)) = argv.argv.split_first() else {
        return Err(CliError::usage("the daemon returned an empty ssh command"));
    };
    let err = std::process::Command::new(prog).args(rest).exec();
    Err(CliError::Failed {
        message: format!("cannot run {prog}: {err}; install the OpenSSH client"),
        code: 1,
    })
}

/// `vm ports`.
pub fn ports(ctx: &mut Ctx, a: VmArg) -> Result<(), CliError> {
    let ports: Vec<GuestPort> = ctx
        .connect()?
        .call(Request::VmPorts(VmRef { vm: a.name }))?;
    if a.json.json {
        return print_json(ctx.out, &ports);
    }
    let mut t = table(ctx.term, &["ENDPOINT", "PROTO", "ADDRESS", "PROCESS"]);
    for p in &ports {
        t.add_row(vec![
            p.endpoint.clone(),
            p.proto.clone(),
            p.address.clone(),
            or_dash(p.process.clone()),
        ]);
    }
    print_table(ctx.out, t)
}

/// `ssh-config`: write `~/.ssh/config.d/banger` and say which Include line to add.
pub fn ssh_config(ctx: &mut Ctx, a: SshConfigArgs) -> Result<(), CliError> {
    let text: SshConfigText = ctx.connect()?.call(Request::GuestSshConfig)?;
    if a.print {
        write!(ctx.out, "{}", text.text)?;
        return Ok(());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
        CliError::usage("$HOME is not set; use --print and place the text yourself")
    })?;
    let dir = home.join(".ssh/config.d");
    let file = dir.join("banger");
    let fail = |e: std::io::Error| CliError::Failed {
        message: format!("cannot write {}: {e}", file.display()),
        code: 1,
    };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    std::fs::write(&file, &text.text).map_err(fail)?;
    writeln!(ctx.out, "wrote {}", file.display())?;
    let include = "Include ~/.ssh/config.d/banger";
    let main = std::fs::read_to_string(home.join(".ssh/config")).unwrap_or_default();
    if main.lines().any(|l| l.trim() == include) {
        writeln!(
            ctx.out,
            "~/.ssh/config already includes it; `ssh NAME.vm` works"
        )?;
    } else {
        writeln!(
            ctx.out,
            "add this line at the top of ~/.ssh/config, then `ssh NAME.vm` works:\n  {include}"
        )?;
    }
    Ok(())
}
