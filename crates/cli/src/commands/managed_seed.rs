//! `banger managed-seed refresh`.

use banger_api::rpc::ImageRefreshSeedParams;
use banger_api::{Request, SeedRefresh};

use crate::args::ManagedSeedRefreshArgs;
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{print_json, print_table};
use crate::render;

/// Re-seed stale images and print what happened to each; fails (after
/// printing) when an image could not be re-seeded.
pub fn refresh(ctx: &mut Ctx, a: ManagedSeedRefreshArgs) -> Result<(), CliError> {
    let rows: Vec<SeedRefresh> =
        ctx.connect()?
            .call(Request::ImageRefreshSeed(ImageRefreshSeedParams {
                image: a.image,
            }))?;
    if a.json.json {
        print_json(ctx.out, &rows)?;
    } else if rows.is_empty() {
        writeln!(ctx.out, "no images")?;
    } else {
        print_table(ctx.out, render::seed_refresh(ctx.term, &rows))?;
    }
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| r.outcome == "failed")
        .map(|r| r.image.as_str())
        .collect();
    if !failed.is_empty() {
        return Err(CliError::Failed {
            message: format!(
                "could not re-seed {}; see the detail above, fix it and run `banger managed-seed refresh` again",
                failed.join(", ")
            ),
            code: 1,
        });
    }
    Ok(())
}
