//! `vm create --provision FILE`: scripts run in the guest, as the guest
//! user, once the VM is first ready.
//!
//! Each script goes over the same SSH path as `banger vm ssh` (the
//! daemon's `vm.ssh_argv`: banger's key, the pinned host key): its text is
//! sent on stdin into a private temporary file in the guest, which is then
//! run (by its `#!` line, else by `sh`) with stdin from `/dev/null`. Its
//! output streams to banger's stderr as it comes. The record (pending,
//! running, ok or failed with the exit code and times) is kept by the daemon
//! (`vm.provision_record`) and shown by `vm show`. The first failure stops
//! the rest; the VM keeps running for inspection.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banger_api::guest::{SshArgv, VmSshParams};
use banger_api::{ProvisionRun, ProvisionState, Request, VmProvisionParams};

use crate::client::Client;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::now_ms;

/// How long the first script waits for the guest's sshd (a VM whose
/// readiness is `none` is "running" before sshd listens).
const SSH_WAIT: Duration = Duration::from_secs(60);

/// The largest script sent (the text travels on ssh's stdin).
const MAX_SCRIPT_BYTES: u64 = 16 << 20;

/// A script read on the host.
#[derive(Debug, Clone)]
pub struct Script {
    /// As named on the command line or in the spec.
    pub label: String,
    /// Its text.
    pub body: Vec<u8>,
}

/// Read every script before anything is created, so a missing file
/// changes nothing.
pub fn read_scripts(paths: &[PathBuf]) -> Result<Vec<Script>, CliError> {
    paths.iter().map(|p| read_script(p)).collect()
}

fn read_script(p: &Path) -> Result<Script, CliError> {
    let bad = |why: String| {
        CliError::usage(format!(
            "cannot use provision script {}: {why}",
            p.display()
        ))
    };
    let meta = std::fs::metadata(p).map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() > MAX_SCRIPT_BYTES {
        return Err(bad(format!(
            "{} bytes; at most {MAX_SCRIPT_BYTES} (copy large files with `banger vm cp`)",
            meta.len()
        )));
    }
    let body = std::fs::read(p).map_err(|e| bad(e.to_string()))?;
    Ok(Script {
        label: p.display().to_string(),
        body,
    })
}

/// The guest side: store stdin in a private file and run it.
const REMOTE: &str = r#"f=$(mktemp "${TMPDIR:-/tmp}/banger-provision.XXXXXX") || exit 125
cat > "$f" || { rm -f "$f"; exit 125; }
chmod 700 "$f"
IFS= read -r first < "$f"
case $first in
'#!'*) "$f" < /dev/null ;;
*) sh "$f" < /dev/null ;;
esac
rc=$?
rm -f "$f"
exit $rc"#;

/// POSIX shell single quoting.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Run `scripts` in VM `vm` (running and ready), recording each step.
pub fn run(
    ctx: &mut Ctx,
    client: &mut Client,
    vm: &str,
    scripts: &[Script],
) -> Result<(), CliError> {
    let mut runs: Vec<ProvisionRun> = scripts
        .iter()
        .map(|s| ProvisionRun {
            script: s.label.clone(),
            state: ProvisionState::Pending,
            exit_code: None,
            started_at: None,
            finished_at: None,
        })
        .collect();
    record(client, vm, &runs)?;
    if let Err(why) = wait_for_ssh(client, vm, SSH_WAIT) {
        runs[0].state = ProvisionState::Failed;
        runs[0].started_at = Some(now_ms());
        runs[0].finished_at = runs[0].started_at;
        record(client, vm, &runs)?;
        return Err(CliError::Failed {
            message: format!(
                "provisioning {vm} failed: ssh did not answer within {}s ({why}); no script ran. \
                 The VM is running: check `banger vm logs {vm}`, then `banger vm ssh {vm}`",
                SSH_WAIT.as_secs()
            ),
            code: 1,
        });
    }
    for (i, script) in scripts.iter().enumerate() {
        runs[i].state = ProvisionState::Running;
        runs[i].started_at = Some(now_ms());
        record(client, vm, &runs)?;
        writeln!(ctx.err, "provisioning {vm}: running {}", script.label)?;
        let outcome = run_one(ctx, client, vm, script);
        runs[i].finished_at = Some(now_ms());
        let failure = match outcome {
            Ok(0) => None,
            Ok(code) => {
                runs[i].exit_code = Some(code);
                Some(if code == 255 {
                    format!("exited with 255 (ssh could not reach {vm}, or the script exited 255)")
                } else {
                    format!("exited with {code}")
                })
            }
            Err(why) => Some(why),
        };
        match failure {
            None => {
                runs[i].exit_code = Some(0);
                runs[i].state = ProvisionState::Ok;
                record(client, vm, &runs)?;
            }
            Some(why) => {
                runs[i].state = ProvisionState::Failed;
                record(client, vm, &runs)?;
                let left = scripts.len() - i - 1;
                return Err(CliError::Failed {
                    message: format!(
                        "provisioning {vm} failed: {} {why}{}; the VM is running and \
                         `banger vm show {vm}` has the record. Look around with `banger shell {vm}`, \
                         then fix the script and run it by hand: `banger vm cp SCRIPT {vm}:` and \
                         `banger vm ssh {vm} -- sh SCRIPT`",
                        script.label,
                        if left > 0 {
                            format!(" ({left} later script(s) not run)")
                        } else {
                            String::new()
                        }
                    ),
                    code: 1,
                });
            }
        }
    }
    Ok(())
}

fn record(client: &mut Client, vm: &str, runs: &[ProvisionRun]) -> Result<(), CliError> {
    let _: Vec<ProvisionRun> = client.call(Request::VmProvisionRecord(VmProvisionParams {
        vm: vm.to_string(),
        runs: runs.to_vec(),
    }))?;
    Ok(())
}

/// The ssh command that runs `remote` in VM `vm`.
fn ssh_command(client: &mut Client, vm: &str, remote: &str) -> Result<Command, String> {
    let argv: SshArgv = client
        .call(Request::VmSshArgv(VmSshParams {
            vm: vm.to_string(),
            command: vec![remote.to_string()],
        }))
        .map_err(|e| e.to_string())?;
    let (prog, rest) = argv
        .argv
        .split_first()
        .ok_or("the daemon returned an empty ssh command")?;
    let mut c = Command::new(prog);
    c.args(rest);
    Ok(c)
}

/// Run `true` over ssh until it works (exit 0) or `timeout` passes; the
/// last failure otherwise.
fn wait_for_ssh(client: &mut Client, vm: &str, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let why = match ssh_command(client, vm, "true")?
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => format!(
                "{}: {}",
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => format!("cannot run ssh: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(why);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Run one script; its exit code, or why it could not run.
fn run_one(ctx: &Ctx, client: &mut Client, vm: &str, script: &Script) -> Result<i32, String> {
    let mut command = ssh_command(client, vm, &format!("sh -c {}", sh_quote(REMOTE)))
        .map_err(|e| format!("could not be started: {e}"))?;
    let prog = command.get_program().to_string_lossy().into_owned();
    // Its output goes to banger's stderr (stdout keeps the command's
    // result); with -q nowhere.
    let (out, err) = if ctx.quiet() {
        (Stdio::null(), Stdio::null())
    } else {
        (
            Stdio::from(std::io::stderr()),
            Stdio::from(std::io::stderr()),
        )
    };
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("could not be started: cannot run {prog}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A guest that closes early shows in the exit code.
        let _ = stdin.write_all(&script.body);
    }
    let status = child
        .wait()
        .map_err(|e| format!("could not be waited for: {e}"))?;
    Ok(status.code().unwrap_or(128 + 9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_shell() {
        let nasty = "it's $HOME `x` \"q\" \\ end";
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh_quote(nasty)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
    }

    /// The guest side, run by a local `sh` as ssh's remote shell would.
    fn remote(script: &str) -> (i32, String) {
        let mut c = Command::new("sh")
            .arg("-c")
            .arg(REMOTE)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = c.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn remote_side_runs_by_shebang_or_sh_and_keeps_the_exit_code() {
        assert_eq!(remote("echo plain; exit 3\n"), (3, "plain\n".into()));
        assert_eq!(
            remote("#!/bin/sh\necho \"$0\" | grep -q banger-provision && echo shebang\n"),
            (0, "shebang\n".into())
        );
        // stdin of the script is /dev/null, not the script's text.
        assert_eq!(remote("cat; echo done\n"), (0, "done\n".into()));
    }

    #[test]
    fn missing_or_odd_scripts_are_refused_before_anything() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_scripts(&[dir.path().join("none.sh")]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("none.sh"), "{e}");
        let e = read_scripts(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
