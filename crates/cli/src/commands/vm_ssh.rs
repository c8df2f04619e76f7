//! `banger vm ssh`, `banger vm ports` and `banger ssh-config`.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use banger_api::Request;
use banger_api::forward::PortForward;
use banger_api::guest::{GuestPort, SshArgv, SshConfigText, VmSshParams};
use banger_api::rpc::VmRef;
use banger_config::{Config, Layout, Mode};

use crate::args::VmArg;
use crate::args_guest::{SshConfigArgs, VmSshArgs};
use crate::context::Ctx;
use crate::contexts::Remote;
use crate::error::CliError;
use crate::output::{or_dash, print_json, print_table, table};
use crate::remote::{SSH, sh_quote};
use crate::render;

/// `vm ssh`: exec ssh with the daemon's options (pinned host key, banger's
/// key). With a remote context the daemon's options name files on that
/// host, so `banger vm ssh` runs there instead, over ssh to that host.
pub fn ssh(ctx: &mut Ctx, a: VmSshArgs) -> Result<(), CliError> {
    let argv: Vec<OsString> = match ctx.remote()? {
        Some(r) => remote_vm_ssh(&r, &a, std::io::stdin().is_terminal()),
        None => {
            let argv: SshArgv = ctx.connect()?.call(Request::VmSshArgv(VmSshParams {
                vm: a.name,
                command: a.command,
            }))?;
            argv.argv.into_iter().map(OsString::from).collect()
        }
    };
    let Some((prog, rest)) = argv.split_first() else {
        return Err(CliError::usage("the daemon returned an empty ssh command"));
    };
    let err = std::process::Command::new(prog).args(rest).exec();
    Err(CliError::Failed {
        message: format!(
            "cannot run {}: {err}; install the OpenSSH client",
            prog.to_string_lossy()
        ),
        code: 1,
    })
}

/// `ssh [-t] … -- HOST banger vm ssh NAME [-- CMD…]`: the remote banger
/// execs its own `vm ssh`. The remote shell gets one string, so every word
/// is quoted for it.
fn remote_vm_ssh(r: &Remote, a: &VmSshArgs, tty: bool) -> Vec<OsString> {
    let mut words: Vec<&str> = vec!["banger", "vm", "ssh", &a.name];
    if !a.command.is_empty() {
        words.push("--");
        words.extend(a.command.iter().map(String::as_str));
    }
    let line = words
        .into_iter()
        .map(sh_quote)
        .collect::<Vec<_>>()
        .join(" ");
    let mut argv = vec![OsString::from(SSH)];
    argv.extend(r.target.ssh_args(r.ssh_config.as_ref(), tty));
    argv.push(line.into());
    argv
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

/// `ssh-config`: write this daemon's file in `~/.ssh/config.d/` and make
/// `~/.ssh/config` include `config.d/banger*` (unless `--no-include`), so
/// plain `ssh NAME.vm` works. `vm create` and `vm delete` keep the file
/// current once it exists. With a remote context the file is
/// `banger-CONTEXT` and every VM is reached through `ProxyJump` to the
/// daemon's host.
pub fn ssh_config(ctx: &mut Ctx, a: SshConfigArgs) -> Result<(), CliError> {
    let remote = ctx.remote()?;
    let text = include_text(ctx, remote.as_ref())?;
    if a.print {
        write!(ctx.out, "{text}")?;
        return Ok(());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).ok_or_else(|| {
        CliError::usage("$HOME is not set; use --print and place the text yourself")
    })?;
    let name = include_name(ctx, remote.as_ref());
    let file = write_include(&home, &name, &text)?;
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

/// The include text: the daemon's, or for a remote context the daemon's
/// rewritten to jump through its host.
fn include_text(ctx: &Ctx, remote: Option<&Remote>) -> Result<String, CliError> {
    let text: SshConfigText = ctx.connect()?.call(Request::GuestSshConfig)?;
    Ok(match remote {
        None => text.text,
        Some(r) => through_jump(&text.text, r),
    })
}

/// The daemon's `Host NAME.vm` blocks for a machine that reaches the guests
/// through the daemon's host: a `ProxyJump` to that host in each block, and
/// without the keys that name files on that host (banger's key and its
/// known_hosts), so your own keys log in and your known_hosts pins each
/// guest under its `HostKeyAlias banger-<id>`.
fn through_jump(text: &str, r: &Remote) -> String {
    let mut out = format!(
        "# Written by `banger --context {} ssh-config`: the VMs of {}, reached through ProxyJump.\n\
         # Host keys are pinned per VM (HostKeyAlias banger-<id>) in your known_hosts.\n",
        r.name, r.target
    );
    for line in text.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        if key.starts_with('#')
            || ["IdentityFile", "IdentitiesOnly", "UserKnownHostsFile"]
                .iter()
                .any(|k| key.eq_ignore_ascii_case(k))
        {
            continue;
        }
        out.push_str(line);
        out.push('\n');
        if key.eq_ignore_ascii_case("Host") {
            out.push_str(&format!("  ProxyJump {}\n", r.target.jump()));
        }
    }
    out
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

/// The name of this daemon's file in `~/.ssh/config.d/`: `banger-CONTEXT`
/// for a remote context, `banger` for the default dev daemon and the system
/// daemon, `banger-<hash of the socket path>` for any other (`--state-dir`,
/// `--socket`, `--config`), so that two daemons never overwrite each
/// other's VMs.
fn include_name(ctx: &Ctx, remote: Option<&Remote>) -> String {
    if let Some(r) = remote {
        return format!("{DEFAULT_INCLUDE}-{}", r.name);
    }
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
    let Ok(remote) = ctx.remote() else {
        return;
    };
    let name = include_name(ctx, remote.as_ref());
    let file = include_file(&home, &name);
    if !file.is_file() {
        return;
    }
    let result = include_text(ctx, remote.as_ref()).and_then(|t| write_include(&home, &name, &t));
    if let Err(e) = result {
        let _ = writeln!(
            ctx.err,
            "note: could not refresh {} ({e}); run `banger ssh-config`",
            file.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use crate::contexts::Remote;
    use crate::remote::SshTarget;

    fn lab() -> Remote {
        Remote {
            name: "lab".into(),
            target: SshTarget::parse("ssh://me@lab.example:2222").unwrap(),
            ssh_config: None,
        }
    }

    #[test]
    fn remote_vm_ssh_runs_the_remote_banger_with_quoted_words() {
        let a = crate::args_guest::VmSshArgs {
            name: "web".into(),
            command: vec!["echo".into(), "it's here".into()],
        };
        let argv = super::remote_vm_ssh(&lab(), &a, false);
        assert_eq!(
            argv,
            [
                "ssh",
                "-T",
                "-p",
                "2222",
                "-l",
                "me",
                "--",
                "lab.example",
                r"banger vm ssh web -- echo 'it'\''s here'"
            ]
            .map(std::ffi::OsString::from)
        );
        let a = crate::args_guest::VmSshArgs {
            name: "web".into(),
            command: vec![],
        };
        let argv = super::remote_vm_ssh(&lab(), &a, true);
        assert_eq!(argv[1], "-t", "a terminal gets a remote terminal");
        assert_eq!(argv.last().unwrap(), "banger vm ssh web");
    }

    #[test]
    fn remote_include_jumps_and_drops_the_daemon_hosts_files() {
        let daemon = "# Written by `banger ssh-config`.\n\
            \nHost web.vm\n  HostName 172.30.0.2\n  Port 22\n  User dev\n  \
            IdentityFile /home/o/.config/banger/ssh/id_ed25519\n  IdentitiesOnly yes\n  \
            UserKnownHostsFile /var/lib/banger/ssh/known_hosts\n  HostKeyAlias banger-abc\n  \
            StrictHostKeyChecking accept-new\n  CheckHostIP no\n";
        let text = super::through_jump(daemon, &lab());
        assert!(text.starts_with("# Written by `banger --context lab ssh-config`"));
        assert!(
            text.contains("Host web.vm\n  ProxyJump me@lab.example:2222\n  HostName 172.30.0.2\n")
        );
        for gone in [
            "IdentityFile",
            "IdentitiesOnly",
            "UserKnownHostsFile",
            "/home/o",
            "/var/lib",
        ] {
            assert!(!text.contains(gone), "{gone} left in:\n{text}");
        }
        assert!(text.contains("  HostKeyAlias banger-abc\n  StrictHostKeyChecking accept-new\n"));
        assert_eq!(
            super::include_file(std::path::Path::new("/h"), "banger-lab"),
            std::path::Path::new("/h/.ssh/config.d/banger-lab")
        );
    }

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
