//! `banger vm ssh`, `banger vm ports` and `banger ssh-config`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use banger_api::Request;
use banger_api::guest::{GuestPort, SshArgv, SshConfigText, VmSshParams};
use banger_api::rpc::VmRef;
use banger_config::{Config, Layout, Mode};

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

/// `ssh-config`: write this daemon's file in `~/.ssh/config.d/` and make
/// `~/.ssh/config` include `config.d/banger*` (unless `--no-include`), so
/// plain `ssh NAME.vm` works. `vm create` and `vm delete` keep the file
/// current once it exists.
pub fn ssh_config(ctx: &mut Ctx, a: SshConfigArgs) -> Result<(), CliError> {
    let text: SshConfigText = ctx.connect()?.call(Request::GuestSshConfig)?;
    if a.print {
        write!(ctx.out, "{}", text.text)?;
        return Ok(());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
        CliError::usage("$HOME is not set; use --print and place the text yourself")
    })?;
    let name = include_name(ctx);
    let file = write_include(&home, &name, &text.text)?;
    writeln!(ctx.out, "wrote {}", file.display())?;
    let config = home.join(".ssh/config");
    let main = std::fs::read_to_string(&config).unwrap_or_default();
    match include_edit(&main, &name) {
        None => writeln!(
            ctx.out,
            "{} already includes it; `ssh NAME.vm` works",
            config.display()
        )?,
        Some(_) if a.no_include => writeln!(
            ctx.out,
            "add this line at the top of ~/.ssh/config, then `ssh NAME.vm` works:\n  {INCLUDE}"
        )?,
        Some(updated) => {
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
    }
    Ok(())
}

/// The include line: every daemon's file (`banger`, `banger-<hash>`).
const INCLUDE: &str = "Include ~/.ssh/config.d/banger*";
/// The line older versions wrote; it covers the default daemon's file only.
const OLD_INCLUDE: &str = "Include ~/.ssh/config.d/banger";

/// The new text of `~/.ssh/config` so that it includes the file `name`, or
/// `None` when it already does. An older single-file line is widened in
/// place when another daemon's file must be covered; otherwise the line
/// goes first (`Include` must come before any `Host` block to apply
/// everywhere).
fn include_edit(main: &str, name: &str) -> Option<String> {
    let has = |line: &str| main.lines().any(|l| l.trim() == line);
    if has(INCLUDE) || (name == DEFAULT_INCLUDE && has(OLD_INCLUDE)) {
        return None;
    }
    if has(OLD_INCLUDE) {
        let mut out: String = main
            .lines()
            .map(|l| if l.trim() == OLD_INCLUDE { INCLUDE } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        if main.ends_with('\n') {
            out.push('\n');
        }
        return Some(out);
    }
    Some(format!("{INCLUDE}\n\n{main}"))
}

/// The default daemon's file name (the dev daemon without flags, or the
/// system daemon).
const DEFAULT_INCLUDE: &str = "banger";

/// The name of this daemon's file in `~/.ssh/config.d/`: `banger` for the
/// default dev daemon and the system daemon, `banger-<hash of the socket
/// path>` for any other (`--state-dir`, `--socket`, `--config`), so that
/// two daemons never overwrite each other's VMs.
fn include_name(ctx: &Ctx) -> String {
    let Ok(socket) = ctx.socket() else {
        return DEFAULT_INCLUDE.to_string();
    };
    let default_socket = |mode: Mode| {
        let file = Layout::default_config_file(mode);
        let config = Config::load(&file).unwrap_or_default();
        Layout::resolve(mode, file, &config, None)
            .ok()
            .map(|l| l.socket())
    };
    if [Mode::Dev, Mode::System]
        .into_iter()
        .any(|m| default_socket(m).as_deref() == Some(socket.as_path()))
    {
        DEFAULT_INCLUDE.to_string()
    } else {
        socket_include_name(&socket)
    }
}

/// `banger-<16 hex digits>`: FNV-1a of the socket path, stable across
/// versions and platforms.
fn socket_include_name(socket: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let hash = socket
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("{DEFAULT_INCLUDE}-{hash:016x}")
}

fn include_file(home: &std::path::Path, name: &str) -> PathBuf {
    home.join(".ssh/config.d").join(name)
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

fn write_include(home: &std::path::Path, name: &str, text: &str) -> Result<PathBuf, CliError> {
    let file = include_file(home, name);
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

/// After a VM was created or deleted: rewrite this daemon's file in
/// `~/.ssh/config.d/` when the user installed it, so `ssh NAME.vm` follows
/// the VM set. A failure here is reported as a hint, never as the
/// command's failure.
pub fn refresh_include(ctx: &mut Ctx) {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        return;
    };
    let name = include_name(ctx);
    if !include_file(&home, &name).is_file() {
        return;
    }
    let result = ctx
        .connect()
        .and_then(|mut c| {
            c.call::<SshConfigText>(Request::GuestSshConfig)
                .map_err(Into::into)
        })
        .and_then(|t| write_include(&home, &name, &t.text));
    if let Err(e) = result {
        let _ = writeln!(
            ctx.err,
            "note: could not refresh ~/.ssh/config.d/{name} ({e}); run `banger ssh-config`"
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
                        super::write_include(home, "banger", t).expect("concurrent refresh");
                    }
                });
            }
        });
        let file = super::include_file(home, "banger");
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

    #[test]
    fn each_daemon_gets_its_own_file_and_one_include_covers_all() {
        use super::{INCLUDE, OLD_INCLUDE, include_edit, socket_include_name};
        let a = socket_include_name(std::path::Path::new("/tmp/a/run/bangerd.sock"));
        let b = socket_include_name(std::path::Path::new("/tmp/b/run/bangerd.sock"));
        assert_ne!(a, b);
        assert_eq!(
            a,
            socket_include_name(std::path::Path::new("/tmp/a/run/bangerd.sock"))
        );
        assert!(
            a.starts_with("banger-") && a.len() == "banger-".len() + 16,
            "{a}"
        );

        // Nothing yet: the glob line goes first.
        let fresh = include_edit("Host x\n  User y\n", &a).unwrap();
        assert!(fresh.starts_with(&format!("{INCLUDE}\n\n")), "{fresh}");
        assert!(include_edit(&fresh, &a).is_none(), "idempotent");
        // The old single-file line covers the default daemon only; for
        // another daemon it is widened in place, nothing else changes.
        let old = format!("# mine\n{OLD_INCLUDE}\nHost x\n");
        assert!(include_edit(&old, "banger").is_none());
        let widened = include_edit(&old, &a).unwrap();
        assert_eq!(widened, format!("# mine\n{INCLUDE}\nHost x\n"));
    }
}
