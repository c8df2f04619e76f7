//! `banger vm ssh`, `banger vm ports` and `banger ssh-config`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use banger_api::Request;
use banger_api::forward::PortForward;
use banger_api::guest::{GuestPort, SshArgv, SshConfigText, VmSshParams};
use banger_api::rpc::VmRef;

use crate::args::VmArg;
use crate::args_guest::{SshConfigArgs, VmSshArgs};
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{or_dash, print_json, print_table, table};
use crate::render;

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

/// `vm ports`: the guest's listening ports, then the VM's forwards (also
/// when the guest cannot be asked, e.g. a stopped VM). `--json` prints the
/// listening ports only, as before forwards existed; the forwards are in
/// `vm show --json`.
pub fn ports(ctx: &mut Ctx, a: VmArg) -> Result<(), CliError> {
    let mut client = ctx.connect()?;
    let listening = client.call::<Vec<GuestPort>>(Request::VmPorts(VmRef { vm: a.name.clone() }));
    if a.json.json {
        return print_json(ctx.out, &listening?);
    }
    let forwards = client.call::<Vec<PortForward>>(Request::VmForwards(VmRef { vm: a.name }));
    let (ports, forwards) = match (listening, forwards) {
        (Ok(ports), Ok(forwards)) => (ports, forwards),
        (Err(e), Ok(forwards)) if !forwards.is_empty() => {
            writeln!(
                ctx.err,
                "note: cannot list the guest's listening ports: {e}"
            )?;
            return print_table(ctx.out, render::forwards(ctx.term, &forwards));
        }
        (Ok(ports), Err(e)) => {
            // A daemon from before forwards (unknown method): the ports alone.
            writeln!(ctx.err, "note: cannot list the VM's forwards: {e}")?;
            (ports, Vec::new())
        }
        (Err(e), _) => return Err(e.into()),
    };
    let mut t = table(ctx.term, &["ENDPOINT", "PROTO", "ADDRESS", "PROCESS"]);
    for p in &ports {
        t.add_row(vec![
            p.endpoint.clone(),
            p.proto.clone(),
            p.address.clone(),
            or_dash(p.process.clone()),
        ]);
    }
    print_table(ctx.out, t)?;
    if !forwards.is_empty() {
        writeln!(ctx.out)?;
        print_table(ctx.out, render::forwards(ctx.term, &forwards))?;
    }
    Ok(())
}

/// `ssh-config`: write `~/.ssh/config.d/banger` and make `~/.ssh/config`
/// include it (unless `--no-include`), so plain `ssh NAME.vm` works.
/// `vm create` and `vm delete` keep the file current once it exists.
pub fn ssh_config(ctx: &mut Ctx, a: SshConfigArgs) -> Result<(), CliError> {
    let text: SshConfigText = ctx.connect()?.call(Request::GuestSshConfig)?;
    if a.print {
        write!(ctx.out, "{}", text.text)?;
        return Ok(());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
        CliError::usage("$HOME is not set; use --print and place the text yourself")
    })?;
    let file = write_include(&home, &text.text)?;
    writeln!(ctx.out, "wrote {}", file.display())?;
    let config = home.join(".ssh/config");
    let main = std::fs::read_to_string(&config).unwrap_or_default();
    if main.lines().any(|l| l.trim() == INCLUDE) {
        writeln!(
            ctx.out,
            "{} already includes it; `ssh NAME.vm` works",
            config.display()
        )?;
    } else if a.no_include {
        writeln!(
            ctx.out,
            "add this line at the top of ~/.ssh/config, then `ssh NAME.vm` works:\n  {INCLUDE}"
        )?;
    } else {
        // `Include` must come before any `Host` block to apply everywhere.
        let updated = format!("{INCLUDE}\n\n{main}");
        write_private(&config, updated.as_bytes()).map_err(|e| CliError::Failed {
            message: format!(
                "cannot update {}: {e}; add `{INCLUDE}` at its top yourself",
                config.display()
            ),
            code: 1,
        })?;
        writeln!(
            ctx.out,
            "added `{INCLUDE}` at the top of {}; `ssh NAME.vm` works",
            config.display()
        )?;
    }
    Ok(())
}

const INCLUDE: &str = "Include ~/.ssh/config.d/banger";

fn include_file(home: &std::path::Path) -> PathBuf {
    home.join(".ssh/config.d/banger")
}

/// Replace `path` atomically with `bytes`, 0600, through a temporary file of
/// a unique name beside it: concurrent writers (a `vm create` and a
/// `vm delete` refreshing at once) never share or remove each other's
/// temporary file; the last rename wins with a complete file.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    // NamedTempFile creates its file 0600.
    let mut tmp = tempfile::Builder::new()
        .prefix(".banger-tmp")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn write_include(home: &std::path::Path, text: &str) -> Result<PathBuf, CliError> {
    let file = include_file(home);
    let fail = |e: std::io::Error| CliError::Failed {
        message: format!("cannot write {}: {e}", file.display()),
        code: 1,
    };
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    write_private(&file, text.as_bytes()).map_err(fail)?;
    Ok(file)
}

/// After a VM was created or deleted: rewrite `~/.ssh/config.d/banger`
/// when the user installed it, so `ssh NAME.vm` follows the VM set. A
/// failure here is reported as a hint, never as the command's failure.
pub fn refresh_include(ctx: &mut Ctx) {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return;
    };
    if !include_file(&home).is_file() {
        return;
    }
    let result = ctx
        .connect()
        .and_then(|mut c| {
            c.call::<SshConfigText>(Request::GuestSshConfig)
                .map_err(Into::into)
        })
        .and_then(|t| write_include(&home, &t.text));
    if let Err(e) = result {
        let _ = writeln!(
            ctx.err,
            "note: could not refresh ~/.ssh/config.d/banger ({e}); run `banger ssh-config`"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn concurrent_include_writes_all_succeed_and_leave_one_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let texts: Vec<String> = (0..8)
            .map(|i| format!("Host vm{i}.vm\n  HostName 172.30.0.{i}\n").repeat(50))
            .collect();
        std::thread::scope(|s| {
            for t in &texts {
                s.spawn(move || {
                    for _ in 0..25 {
                        super::write_include(home, t).expect("concurrent refresh");
                    }
                });
            }
        });
        let file = super::include_file(home);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(texts.contains(&text), "the file is one writer's whole text");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        let left: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("banger")],
            "no temporary files left"
        );
    }
}
