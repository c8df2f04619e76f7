//! `banger image register`.

use std::path::Path;

use banger_api::rpc::ImageRegisterParams;
use banger_api::{Image, Request, validate};

use crate::args::ImageRegisterArgs;
use crate::client::Client;
use crate::context::{Ctx, remote_path};
use crate::contexts::Remote;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// Register files as an image. The daemon opens them: on this machine the
/// paths are made absolute here (the daemon does not share the CLI's
/// working directory); with a remote context they are paths on that host.
pub fn run(ctx: &mut Ctx, a: ImageRegisterArgs) -> Result<(), CliError> {
    validate::image_name(&a.name).map_err(CliError::usage)?;
    let remote = ctx.remote()?;
    let file = |flag, p| file_arg(remote.as_ref(), flag, p);
    let params = ImageRegisterParams {
        name: a.name,
        rootfs: file("rootfs", &a.rootfs)?,
        kernel: a
            .kernel
            .as_deref()
            .map(|k| file("kernel", k))
            .transpose()?
            .unwrap_or_default(),
        kernel_name: a.kernel_name,
        initrd: a.initrd.as_deref().map(|p| file("initrd", p)).transpose()?,
    };
    let mut client: Client = ctx.connect()?;
    // Copying a large root filesystem takes as long as it takes.
    client.set_timeout(None);
    let image: Image = client.call(Request::ImageRegister(params))?;
    if a.json.json {
        return print_json(ctx.out, &image);
    }
    print_table(ctx.out, render::image(ctx.term, now_ms(), &image))
}

/// The absolute path of an existing regular file, as a string; with a
/// `remote` context, an absolute path on that host (not checked here).
pub fn file_arg(remote: Option<&Remote>, flag: &str, path: &Path) -> Result<String, CliError> {
    if let Some(r) = remote {
        return remote_path(r, &format!("--{flag}"), path);
    }
    let abs = std::path::absolute(path)
        .map_err(|e| CliError::Usage(format!("--{flag} {}: {e}", path.display())))?;
    if !abs.is_file() {
        return Err(CliError::Usage(format!(
            "--{flag} {}: no such file; give the path of an existing {flag} file",
            abs.display()
        )));
    }
    abs.into_os_string().into_string().map_err(|p| {
        CliError::Usage(format!(
            "--{flag} {}: the path must be valid UTF-8",
            p.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_args_are_absolute_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rootfs.ext4");
        std::fs::write(&f, "x").unwrap();
        assert_eq!(
            file_arg(None, "rootfs", &f).unwrap(),
            f.display().to_string()
        );
        let cwd = std::env::current_dir().unwrap();
        let rel = std::path::Path::new("Cargo.toml");
        assert_eq!(
            file_arg(None, "kernel", rel).unwrap(),
            cwd.join(rel).display().to_string()
        );
        let e = file_arg(None, "kernel", &dir.path().join("missing")).unwrap_err();
        assert!(e.to_string().contains("no such file"), "{e}");
        assert_eq!(e.exit_code(), 2);
        assert!(file_arg(None, "kernel", dir.path()).is_err());
    }
}
