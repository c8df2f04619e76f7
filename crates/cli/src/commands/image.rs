//! `banger image list|show|delete`.

use banger_api::rpc::NameRef;
use banger_api::{Deleted, Image, Request};

use crate::args::{JsonArg, NameArg};
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, print_json, print_table};
use crate::render;

/// `image list`.
pub fn list(ctx: &mut Ctx, a: JsonArg) -> Result<(), CliError> {
    let images: Vec<Image> = ctx.connect()?.call(Request::ImageList)?;
    if a.json {
        return print_json(ctx.out, &images);
    }
    if ctx.quiet() {
        for image in &images {
            writeln!(ctx.out, "{}", image.name)?;
        }
        return Ok(());
    }
    if images.is_empty() {
        writeln!(
            ctx.err,
            "no images yet; add one with `banger image register NAME --rootfs FILE --kernel FILE`"
        )?;
        return Ok(());
    }
    print_table(ctx.out, render::image_list(ctx.term, now_ms(), &images))
}

/// `image show`.
pub fn show(ctx: &mut Ctx, a: NameArg) -> Result<(), CliError> {
    let image: Image = ctx
        .connect()?
        .call(Request::ImageShow(NameRef { name: a.name }))?;
    if a.json.json {
        return print_json(ctx.out, &image);
    }
    print_table(ctx.out, render::image(ctx.term, now_ms(), &image))
}

/// `image delete`.
pub fn delete(ctx: &mut Ctx, a: NameArg) -> Result<(), CliError> {
    let deleted: Deleted = ctx
        .connect()?
        .call(Request::ImageDelete(NameRef { name: a.name }))?;
    if a.json.json {
        return print_json(ctx.out, &deleted);
    }
    writeln!(ctx.out, "deleted image {} ({})", deleted.name, deleted.id)?;
    Ok(())
}
