//! `banger image export-bundle`, and telling a bundle file apart from a
//! registry reference for `banger image pull`.

use std::path::Path;

use banger_api::rpc::ImageExportBundleParams;
use banger_api::{BundleExported, ByteSize, Request};

use crate::args::ImageExportBundleArgs;
use crate::context::{Ctx, remote_path};
use crate::contexts::Remote;
use crate::error::CliError;
use crate::output::print_json;

/// Write the bundle (the daemon writes it, so the path is made absolute;
/// with a remote context it is an absolute path on that host).
pub fn export(ctx: &mut Ctx, a: ImageExportBundleArgs) -> Result<(), CliError> {
    let file = match ctx.remote()? {
        Some(r) => remote_path(&r, "FILE", &a.file)?,
        None => local_new_file(&a.file)?,
    };
    let mut client = ctx.connect()?;
    client.set_timeout(None);
    let done: BundleExported =
        client.call(Request::ImageExportBundle(ImageExportBundleParams {
            name: a.name,
            file,
        }))?;
    if a.json.json {
        return print_json(ctx.out, &done);
    }
    writeln!(
        ctx.out,
        "wrote {} ({}, rootfs {}); import it with `banger image pull {}`",
        done.path,
        ByteSize(done.bytes),
        done.rootfs_sha256,
        done.path
    )?;
    Ok(())
}

/// The absolute path of a file that must not exist yet, as a string.
fn local_new_file(file: &Path) -> Result<String, CliError> {
    let abs = std::path::absolute(file)
        .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
    if abs.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists; pick another file or remove it first",
            abs.display()
        )));
    }
    abs.into_os_string()
        .into_string()
        .map_err(|p| CliError::Usage(format!("{}: the path must be valid UTF-8", p.display())))
}

/// A reference that names an existing local file (or starts with `./`,
/// `../` or `/`) is a bundle: send its absolute path. URLs and registry
/// references pass through. With a `remote` context a bundle is a file on
/// that host: only an absolute path (`/…`) names one, and it is not checked
/// here.
pub fn local_bundle(remote: Option<&Remote>, reference: &str) -> Result<String, CliError> {
    let relative = reference.starts_with("./") || reference.starts_with("../");
    let looks_local = relative
        || reference.starts_with('/')
        || (remote.is_none() && Path::new(reference).is_file());
    if !looks_local {
        return Ok(reference.to_string());
    }
    super::image_register::file_arg(remote, "bundle", Path::new(reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_told_from_references() {
        assert_eq!(local_bundle(None, "debian:12").unwrap(), "debian:12");
        assert_eq!(
            local_bundle(None, "https://example.com/b.tar").unwrap(),
            "https://example.com/b.tar"
        );
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("b.tar");
        std::fs::write(&f, "x").unwrap();
        assert_eq!(
            local_bundle(None, f.to_str().unwrap()).unwrap(),
            f.display().to_string()
        );
        assert!(local_bundle(None, "./no-such-bundle.tar").is_err());
    }
}
