//! `banger vm cp SRC DST`: files between the host and a guest.
//!
//! One side is `NAME:PATH` (a relative guest path is relative to the guest
//! user's home; `NAME:` alone is the home). Like `scp -r` and `docker cp`:
//! a directory is copied with everything in it; when the destination is an
//! existing directory the source lands inside it under its own name,
//! otherwise it becomes the destination. The data is a tar stream through
//! the same ssh command as `banger vm ssh` (the daemon's `vm.ssh_argv`),
//! `tar` on both ends, all by argv; it is unpacked into a temporary
//! directory beside the target and moved into place.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use banger_api::Request;
use banger_api::guest::{SshArgv, VmSshParams};

use super::vm_provision::sh_quote;
use crate::args_verbs::VmCpArgs;
use crate::context::Ctx;
use crate::error::CliError;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A host path.
    Host(PathBuf),
    /// A path in VM `vm`.
    Guest {
        /// VM name or id.
        vm: String,
        /// Guest path (`.` for the home).
        path: String,
    },
}

/// `NAME:PATH` when the part before the first `:` is a VM name (no `/`),
/// else a host path (write `./a:b` for a host file named `a:b`).
pub fn endpoint(s: &str) -> Endpoint {
    match s.split_once(':') {
        Some((vm, path)) if !vm.is_empty() && !vm.contains('/') => Endpoint::Guest {
            vm: vm.to_string(),
            path: if path.is_empty() {
                ".".into()
            } else {
                path.to_string()
            },
        },
        _ => Endpoint::Host(PathBuf::from(s)),
    }
}

/// Where a copy lands: an existing directory `dst` receives `name`, else
/// `dst` itself is the target. Returns the parent and the final name.
fn host_target(dst: &Path, src_name: &str) -> Result<(PathBuf, String), CliError> {
    if dst.is_dir() {
        return Ok((dst.to_path_buf(), src_name.to_string()));
    }
    let name = dst
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CliError::usage(format!("{} names no file", dst.display())))?;
    let parent = match dst.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(CliError::usage(format!(
            "{} does not exist; create it first",
            parent.display()
        )));
    }
    Ok((parent, name))
}

/// The last component of a guest path (`/a/b/` → `b`).
fn guest_name(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
}

/// Guest side of host → guest: unpack stdin beside the target, move it in.
fn guest_receive(dst: &str, name: &str) -> String {
    format!(
        r#"set -e
dst={dst}; name={name}
if [ -d "$dst" ]; then parent=$dst; final=$name; else parent=$(dirname -- "$dst"); final=$(basename -- "$dst"); fi
tmp=$(mktemp -d "$parent/.banger-cp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
tar --no-same-owner -C "$tmp" -xf -
if [ -d "$parent/$final" ] && [ -d "$tmp/$name" ]; then cp -a "$tmp/$name/." "$parent/$final/"; else rm -f "$parent/$final" 2>/dev/null || true; mv -f "$tmp/$name" "$parent/$final"; fi"#,
        dst = sh_quote(dst),
        name = sh_quote(name),
    )
}

/// Guest side of guest → host: the tar stream of `src` on stdout.
fn guest_send(src: &str, name: &str) -> String {
    let trimmed = src.trim_end_matches('/');
    let parent = match trimmed.rsplit_once('/') {
        Some(("", _)) => "/".to_string(),
        Some((p, _)) => p.to_string(),
        None => ".".to_string(),
    };
    format!("tar -C {} -cf - -- {}", sh_quote(&parent), sh_quote(name))
}

/// `vm cp`.
pub fn run(ctx: &mut Ctx, a: VmCpArgs) -> Result<(), CliError> {
    // The daemon's ssh command names files on its own host.
    ctx.local_only(
        "vm cp",
        "copy with scp through the ProxyJump entries `banger ssh-config` writes (`scp FILE NAME.vm:`)",
    )?;
    let (src, dst) = (endpoint(&a.src), endpoint(&a.dst));
    match (&src, &dst) {
        (Endpoint::Host(from), Endpoint::Guest { vm, path }) => to_guest(ctx, from, vm, path)?,
        (Endpoint::Guest { vm, path }, Endpoint::Host(to)) => from_guest(ctx, vm, path, to)?,
        (Endpoint::Host(_), Endpoint::Host(_)) => {
            return Err(CliError::usage(
                "neither side is in a VM: write one as NAME:PATH (e.g. dev:/tmp/x)",
            ));
        }
        (Endpoint::Guest { .. }, Endpoint::Guest { .. }) => {
            return Err(CliError::usage(
                "both sides are in VMs: copy through the host, one side at a time",
            ));
        }
    }
    if !ctx.quiet() {
        writeln!(ctx.err, "copied {} to {}", a.src, a.dst)?;
    }
    Ok(())
}

fn ssh(ctx: &Ctx, vm: &str, remote: String) -> Result<Command, CliError> {
    let argv: SshArgv = ctx.connect()?.call(Request::VmSshArgv(VmSshParams {
        vm: vm.to_string(),
        command: vec![format!("sh -c {}", sh_quote(&remote))],
    }))?;
    let (prog, rest) = argv
        .argv
        .split_first()
        .ok_or_else(|| CliError::usage("the daemon returned an empty ssh command"))?;
    let mut c = Command::new(prog);
    c.args(rest);
    Ok(c)
}

fn spawn(c: &mut Command, what: &str) -> Result<Child, CliError> {
    c.spawn().map_err(|e| CliError::Failed {
        message: format!("cannot run {what}: {e}"),
        code: 1,
    })
}

fn wait(mut child: Child, what: &str) -> Result<(), CliError> {
    let status = child.wait().map_err(|e| CliError::Failed {
        message: format!("{what}: {e}"),
        code: 1,
    })?;
    if status.success() {
        return Ok(());
    }
    Err(CliError::Failed {
        message: format!("{what} failed ({status}); its message is above"),
        code: 1,
    })
}

fn to_guest(ctx: &mut Ctx, from: &Path, vm: &str, path: &str) -> Result<(), CliError> {
    std::fs::symlink_metadata(from)
        .map_err(|e| CliError::usage(format!("cannot copy {}: {e}", from.display())))?;
    let abs = std::path::absolute(from)
        .map_err(|e| CliError::usage(format!("cannot resolve {}: {e}", from.display())))?;
    let name = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| CliError::usage(format!("{} names no file", from.display())))?;
    let parent = abs.parent().unwrap_or(Path::new("/"));
    let mut tar = Command::new("tar");
    tar.arg("-C")
        .arg(parent)
        .args(["-cf", "-", "--"])
        .arg(&name)
        .stdout(Stdio::piped());
    let mut tar = spawn(&mut tar, "tar (install it)")?;
    let stdout = tar
        .stdout
        .take()
        .map(Stdio::from)
        .unwrap_or_else(Stdio::null);
    let mut ssh = ssh(ctx, vm, guest_receive(path, &name))?;
    ssh.stdin(stdout);
    let ssh = spawn(&mut ssh, "ssh (install the OpenSSH client)")?;
    let sent = wait(ssh, &format!("unpacking in {vm}"));
    let packed = wait(tar, &format!("reading {}", from.display()));
    sent.and(packed)
}

fn from_guest(ctx: &mut Ctx, vm: &str, path: &str, to: &Path) -> Result<(), CliError> {
    let name = guest_name(path)
        .ok_or_else(|| CliError::usage(format!("{vm}:{path} names no file or directory")))?
        .to_string();
    let (parent, final_name) = host_target(to, &name)?;
    let tmp = tempfile::Builder::new()
        .prefix(".banger-cp")
        .tempdir_in(&parent)
        .map_err(|e| CliError::Failed {
            message: format!("cannot write in {}: {e}", parent.display()),
            code: 1,
        })?;
    let mut ssh = ssh(ctx, vm, guest_send(path, &name))?;
    ssh.stdout(Stdio::piped());
    let mut ssh = spawn(&mut ssh, "ssh (install the OpenSSH client)")?;
    let stdout = ssh
        .stdout
        .take()
        .map(Stdio::from)
        .unwrap_or_else(Stdio::null);
    let mut tar = Command::new("tar");
    tar.args(["--no-same-owner", "-C"])
        .arg(tmp.path())
        .args(["-xf", "-"])
        .stdin(stdout);
    let tar = spawn(&mut tar, "tar (install it)")?;
    let got = wait(ssh, &format!("reading {vm}:{path}"));
    let unpacked = wait(tar, "unpacking on the host");
    got.and(unpacked)?;
    place(&tmp.path().join(&name), &parent.join(&final_name))
}

/// Move `from` (unpacked) to `to`: into an existing directory's contents
/// when both are directories, else replacing `to`.
fn place(from: &Path, to: &Path) -> Result<(), CliError> {
    let fail = |e: std::io::Error| CliError::Failed {
        message: format!("cannot move the copy to {}: {e}", to.display()),
        code: 1,
    };
    if to.is_dir() && from.is_dir() {
        let mut cp = Command::new("cp");
        cp.arg("-a")
            .arg(from.join("."))
            .arg(to)
            .stdin(Stdio::null());
        let child = spawn(&mut cp, "cp")?;
        return wait(child, &format!("merging into {}", to.display()));
    }
    if to.is_dir() {
        return Err(CliError::usage(format!(
            "{} is a directory and the source is not",
            to.display()
        )));
    }
    std::fs::rename(from, to).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let g = |vm: &str, path: &str| Endpoint::Guest {
            vm: vm.into(),
            path: path.into(),
        };
        assert_eq!(endpoint("dev:/etc/hosts"), g("dev", "/etc/hosts"));
        assert_eq!(endpoint("dev:notes.txt"), g("dev", "notes.txt"));
        assert_eq!(endpoint("dev:"), g("dev", "."));
        assert_eq!(endpoint("./a:b"), Endpoint::Host("./a:b".into()));
        assert_eq!(endpoint("/tmp/x"), Endpoint::Host("/tmp/x".into()));
        assert_eq!(endpoint(":x"), Endpoint::Host(":x".into()));
    }

    #[test]
    fn guest_names() {
        assert_eq!(guest_name("/a/b/"), Some("b"));
        assert_eq!(guest_name("notes.txt"), Some("notes.txt"));
        assert_eq!(guest_name("."), None);
        assert_eq!(guest_name("/"), None);
    }

    /// The guest scripts, run by a local `sh` standing in for the guest.
    #[test]
    fn guest_scripts_round_trip_through_a_local_shell() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src dir");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("sub/it's.txt"), "x").unwrap();
        let pack = |from: &Path, name: &str| {
            Command::new("sh")
                .arg("-c")
                .arg(guest_send(&from.join(name).display().to_string(), name))
                .output()
                .unwrap()
                .stdout
        };
        let unpack = |tarball: &[u8], dst: &Path, name: &str| {
            use std::io::Write as _;
            let mut c = Command::new("sh")
                .arg("-c")
                .arg(guest_receive(&dst.display().to_string(), name))
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin.take().unwrap().write_all(tarball).unwrap();
            assert!(c.wait().unwrap().success());
        };
        let t = pack(dir.path(), "src dir");
        // Into an existing directory: lands under its own name.
        let into = dir.path().join("into");
        std::fs::create_dir(&into).unwrap();
        unpack(&t, &into, "src dir");
        assert_eq!(
            std::fs::read_to_string(into.join("src dir/sub/it's.txt")).unwrap(),
            "x"
        );
        // To a new name: becomes it.
        let renamed = dir.path().join("renamed");
        unpack(&t, &renamed, "src dir");
        assert!(renamed.join("sub/it's.txt").is_file());
        // Again into the same place: merged, no temporary directory left.
        unpack(&t, &into, "src dir");
        let left: Vec<_> = std::fs::read_dir(&into).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        // A single file over an existing file.
        std::fs::write(dir.path().join("f.txt"), "new").unwrap();
        std::fs::write(into.join("g.txt"), "old").unwrap();
        let t = pack(dir.path(), "f.txt");
        unpack(&t, &into.join("g.txt"), "f.txt");
        assert_eq!(std::fs::read_to_string(into.join("g.txt")).unwrap(), "new");
    }

    #[test]
    fn host_targets() {
        let dir = tempfile::tempdir().unwrap();
        let (p, n) = host_target(dir.path(), "x").unwrap();
        assert_eq!((p, n.as_str()), (dir.path().to_path_buf(), "x"));
        let (p, n) = host_target(&dir.path().join("new"), "x").unwrap();
        assert_eq!((p, n.as_str()), (dir.path().to_path_buf(), "new"));
        let e = host_target(&dir.path().join("no/such"), "x").unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
    }
}
