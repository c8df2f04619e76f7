//! `banger image export-bundle`, and telling a bundle file apart from a
//! registry reference for `banger image pull`.

use std::path::Path;

use banger_api::rpc::ImageExportBundleParams;
use banger_api::{BundleExported, ByteSize, Request};

use crate::args::ImageExportBundleArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::print_json;

/// Write the bundle (the daemon writes it, so the path is made absolute).
pub fn export(ctx: &mut Ctx, a: ImageExportBundleArgs) -> Result<(), CliError> {
    let abs = std::path::absolute(&a.file)
        .map_err(|e| CliError::Usage(format!("{}: {e}", a.file.display())))?;
    if abs.exists() {
        return Err(CliError::Usage(format!(
            "{} already exists; pick another file or remove it first",
            abs.display()
        )));
    }
    let file = abs
        .into_os_string()
        .into_string()
        .map_err(|p| CliError::Usage(format!("{}: the path must be valid UTF-8", p.display())))?;
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

/// A reference that names an existing local file (or starts with `./`,
/// `../` or `/`) is a bundle: send its absolute path. URLs and registry
/// references pass through.
pub fn local_bundle(reference: &str) -> Result<String, CliError> {
    let looks_local = reference.starts_with("./")
        || reference.starts_with("../")
        || reference.starts_with('/')
        || Path::new(reference).is_file();
    if !looks_local {
        return Ok(reference.to_string());
    }
    super::image_register::file_arg("bundle", Path::new(reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_are_told_from_references() {
        assert_eq!(local_bundle("debian:12").unwrap(), "debian:12");
        assert_eq!(
            local_bundle("https://example.com/b.tar").unwrap(),
            "https://example.com/b.tar"
        );
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("b.tar");
        std::fs::write(&f, "x").unwrap();
        assert_eq!(
            local_bundle(f.to_str().unwrap()).unwrap(),
            f.display().to_string()
        );
        assert!(local_bundle("./no-such-bundle.tar").is_err());
    }
}
