//! `banger image build`.

use banger_api::rpc::{ImageBuildParams, NameRef};
use banger_api::{Image, Operation, Request, validate};

use super::follow::{failure, follow};
use crate::args::ImageBuildArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// Start the build, follow it unless `--detach`, print the image and the
/// time each step took.
pub fn run(ctx: &mut Ctx, a: ImageBuildArgs) -> Result<(), CliError> {
    for n in a.name.iter().chain(&a.kernel_name) {
        validate::image_name(n).map_err(CliError::usage)?;
    }
    let params = ImageBuildParams {
        name: a.name.clone(),
        suite: Some(a.suite.clone()),
        mirror: a.mirror.clone(),
        include: a.include.clone(),
        no_cache: a.no_cache,
        kernel_name: a.kernel_name.clone(),
        debian_kernel: a.debian_kernel,
    };
    let mut client = ctx.connect()?;
    let op: Operation = client.call(Request::ImageBuild(params))?;
    if a.detach {
        writeln!(
            ctx.err,
            "building {} in the background; follow it with `banger operation watch {}`",
            op.subject, op.id
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
        &format!("building {}", op.subject),
    )?;
    if let Some(e) = failure(
        &done,
        "; nothing was published (a finished bootstrap stays cached for the next build)",
    ) {
        return Err(e);
    }
    writeln!(ctx.err, "built {}: {}", done.subject, done.stage)?;
    let image: Image = client.call(Request::ImageShow(NameRef {
        name: done.subject.clone(),
    }))?;
    if a.json.json {
        return print_json(ctx.out, &image);
    }
    print_table(ctx.out, render::image(ctx.term, now_ms(), &image))
}
