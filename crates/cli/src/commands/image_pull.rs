//! `banger image pull`.

use banger_api::rpc::{ImagePullParams, NameRef};
use banger_api::{Image, Operation, Request, validate};

use super::follow::{failure, follow};
use super::image_register::file_arg;
use crate::args::ImagePullArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// Start the pull, follow it with a progress bar unless `--detach`, print
/// the image.
pub fn run(ctx: &mut Ctx, a: ImagePullArgs) -> Result<(), CliError> {
    if let Some(n) = &a.name {
        validate::image_name(n).map_err(CliError::usage)?;
    }
    let remote = ctx.remote()?;
    let params = ImagePullParams {
        reference: super::image_bundle::local_bundle(remote.as_ref(), &a.reference)?,
        name: a.name.clone(),
        kernel: a
            .kernel
            .as_deref()
            .map(|k| file_arg(remote.as_ref(), "kernel", k))
            .transpose()?,
        platform: Some(a.platform.clone()),
        kernel_name: a.kernel_name.clone(),
    };
    let mut client = ctx.connect()?;
    let op: Operation = client.call(Request::ImagePull(params))?;
    if a.detach {
        writeln!(
            ctx.err,
            "pulling {} as {} in the background; follow it with `banger operation watch {}`",
            a.reference, op.subject, op.id
        )?;
        if a.json.json {
            return print_json(ctx.out, &op);
        }
        return Ok(());
    }
    let done = follow(
        ctx,
        &mut client,
        &op.id,
        &format!("pulling {}", a.reference),
    )?;
    if let Some(e) = failure(
        &done,
        "; nothing was published, run the pull again (finished layers are cached)",
    ) {
        return Err(e);
    }
    let image: Image = client.call(Request::ImageShow(NameRef {
        name: done.subject.clone(),
    }))?;
    if a.json.json {
        return print_json(ctx.out, &image);
    }
    print_table(ctx.out, render::image(ctx.term, now_ms(), &image))?;
    if image.kernel_path.is_empty() {
        writeln!(
            ctx.err,
            "note: {} has no kernel; VMs cannot boot it until you pull again with --kernel FILE",
            image.name
        )?;
    }
    Ok(())
}
