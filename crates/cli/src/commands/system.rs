//! `banger system install|status|restart|uninstall|ping`: argument
//! handling and output; the logic is in `crate::system`.

use std::path::Path;

use banger_config::install_meta::{INSTALL_META, InstallMeta};
use banger_privops::RootHelperClient;

use crate::context::Ctx;
use crate::error::CliError;
use crate::system::install::{self, InstallOptions, under};
use crate::system::systemd::Systemd;
use crate::system::{SystemCommand, SystemError, status};

/// Before the units go, ask the system daemon to remove banger's network
/// (TAPs, bridge, NAT table, forwarding). It refuses while VMs run, which
/// aborts the uninstall with nothing changed. Without a reachable daemon
/// the user is told how to finish by hand.
fn teardown_network(ctx: &mut Ctx) -> Result<(), CliError> {
    let socket = Path::new(install::RUNTIME_DIR).join("bangerd.sock");
    let mut client = match crate::client::Client::connect(&socket) {
        Ok(c) => c,
        Err(_) => {
            writeln!(
                ctx.err,
                "note: bangerd is not running, so banger's network devices (if any) were not removed; start it and run `banger network reset`, or delete the bg* links and the `inet banger` nftables table"
            )?;
            return Ok(());
        }
    };
    match client.call::<banger_api::NetworkReset>(banger_api::Request::NetworkReset) {
        Ok(r) => {
            writeln!(
                ctx.out,
                "removed network: {} link(s){}",
                r.links.len(),
                if r.nat_table { ", NAT table" } else { "" }
            )?;
            Ok(())
        }
        Err(e) if e.to_string().contains("network.enabled = false") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn failed(e: SystemError) -> CliError {
    CliError::Failed {
        message: e.to_string(),
        code: 1,
    }
}

/// Run one `system` verb.
pub fn run(ctx: &mut Ctx, c: SystemCommand) -> Result<(), CliError> {
    // Always this machine's daemon: it is what a remote client reached.
    let dial = |ctx: &mut Ctx| crate::system::dial_stdio::run(ctx);
    if matches!(c, SystemCommand::DialStdio) {
        return dial(ctx);
    }
    ctx.local_only(
        "system",
        "it manages this machine's install; run it on that host over ssh",
    )?;
    let sd = Systemd::probe();
    match c {
        SystemCommand::DialStdio => dial(ctx),
        SystemCommand::Install(a) => {
            let owner = a
                .owner
                .or_else(|| std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty()))
                .ok_or_else(|| failed(SystemError::NoOwner))?;
            let bin_src = match a.from {
                Some(d) => d,
                None => std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or_default(),
            };
            let opts = InstallOptions {
                root: a.root,
                owner,
                bin_src,
            };
            let (_, done) = install::install(&opts, &sd).map_err(failed)?;
            for line in done {
                writeln!(ctx.out, "{line}")?;
            }
            Ok(())
        }
        SystemCommand::Uninstall(a) => {
            if a.root == Path::new("/") {
                teardown_network(ctx)?;
            }
            for line in install::uninstall(&a.root, a.purge, &sd).map_err(failed)? {
                writeln!(ctx.out, "{line}")?;
            }
            Ok(())
        }
        SystemCommand::Restart => {
            let msg = sd
                .restart(&[
                    crate::system::units::HELPER_UNIT,
                    crate::system::units::DAEMON_UNIT,
                ])
                .map_err(|why| CliError::Failed {
                    message: format!(
                        "cannot restart the units: {why}; restart bangerd-root and bangerd by hand"
                    ),
                    code: 1,
                })?;
            writeln!(ctx.out, "{msg}")?;
            Ok(())
        }
        SystemCommand::Status(a) => {
            let path = under(&a.root, Path::new(INSTALL_META));
            let meta = InstallMeta::load(&path).map_err(|e| CliError::Failed {
                message: format!("{e}"),
                code: 1,
            })?;
            let lines = status::lines(&meta, &sd);
            for l in &lines {
                let mark = if l.ok { "ok  " } else { "FAIL" };
                writeln!(ctx.out, "{mark} {:<22} {}", l.item, l.detail)?;
            }
            if lines.iter().any(|l| !l.ok) {
                return Err(CliError::Failed {
                    message: "the system path is not healthy; see the lines above".into(),
                    code: 1,
                });
            }
            Ok(())
        }
        SystemCommand::Ping(a) => {
            let (version, uid) = RootHelperClient::new(&a.helper_socket)
                .ping()
                .map_err(|e| CliError::Failed {
                    message: format!("{e}"),
                    code: 1,
                })?;
            writeln!(
                ctx.out,
                "bangerd-root {version} at {} answers; it sees uid {uid}",
                a.helper_socket.display()
            )?;
            Ok(())
        }
    }
}
