//! `banger kernel list|pull|register|delete|check|build` and `banger image promote`.

use banger_api::rpc::{ImagePromoteParams, KernelBuildParams, KernelRegisterParams, NameRef};
use banger_api::{ByteSize, Deleted, Image, Kernel, Operation, Request, validate};
use comfy_table::Cell;

use crate::args::{JsonArg, NameArg};
use crate::args_kernel::{
    ImagePromoteArgs, KernelBuildArgs, KernelCheckArgs, KernelCommand, KernelRegisterArgs,
};
use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{Term, now_ms, print_json, print_table, table};
use crate::render;

/// Dispatch `banger kernel …`.
pub fn run(ctx: &mut Ctx, c: KernelCommand) -> Result<(), CliError> {
    match c {
        KernelCommand::List(a) => list(ctx, a),
        KernelCommand::Pull(a) => {
            validate::image_name(&a.name).map_err(CliError::usage)?;
            let mut client = ctx.connect()?;
            client.set_timeout(None);
            let k: Kernel = client.call(Request::KernelPull(NameRef { name: a.name }))?;
            shown(ctx, a.json, &k)
        }
        KernelCommand::Register(a) => register(ctx, a),
        KernelCommand::Delete(a) => delete(ctx, a),
        KernelCommand::Check(a) => check(ctx, a),
        KernelCommand::Build(a) => build(ctx, a),
    }
}

/// `banger kernel build`: start the build, follow it unless `--detach`,
/// print the registered kernel.
fn build(ctx: &mut Ctx, a: KernelBuildArgs) -> Result<(), CliError> {
    validate::image_name(&a.name).map_err(CliError::usage)?;
    let mut client = ctx.connect()?;
    let op: Operation = client.call(Request::KernelBuild(KernelBuildParams {
        name: Some(a.name.clone()),
        no_cache: a.no_cache,
    }))?;
    if a.detach {
        writeln!(
            ctx.err,
            "building kernel {} in the background; follow it with `banger operation watch {}`",
            op.subject, op.id
        )?;
        return if a.json.json {
            print_json(ctx.out, &op)
        } else {
            Ok(())
        };
    }
    let done = super::follow::follow(
        ctx,
        &mut client,
        &op.id,
        &format!("building kernel {}", op.subject),
    )?;
    if let Some(e) = super::follow::failure(&done, "; nothing was registered") {
        return Err(e);
    }
    writeln!(ctx.err, "built kernel {}: {}", done.subject, done.stage)?;
    let ks: Vec<Kernel> = client.call(Request::KernelList)?;
    match ks.iter().find(|k| k.name == done.subject) {
        Some(k) => shown(ctx, a.json, k),
        None => Ok(()),
    }
}

/// Why `kernel check NAME` is refused with a remote context.
const REMOTE_KERNEL: &str = "a registered kernel's file is on the daemon's host; run `banger kernel check NAME` there over ssh (a kernel FILE here can be checked locally)";

/// `banger kernel check NAME|FILE`: read the kernel's embedded config and
/// report Firecracker's guest-kernel requirements per boot profile. Exit 0
/// when ACPI boot or legacy boot is fully satisfied, 1 otherwise (also when
/// the config cannot be read).
fn check(ctx: &mut Ctx, a: KernelCheckArgs) -> Result<(), CliError> {
    let path =
        if a.dot_config || a.kernel.contains('/') || std::path::Path::new(&a.kernel).is_file() {
            std::path::PathBuf::from(&a.kernel)
        } else {
            validate::image_name(&a.kernel).map_err(CliError::usage)?;
            ctx.local_only("kernel check NAME", REMOTE_KERNEL)?;
            let ks: Vec<Kernel> = ctx.connect()?.call(Request::KernelList)?;
            let k =
                ks.into_iter()
                    .find(|k| k.name == a.kernel)
                    .ok_or_else(|| CliError::Failed {
                        message: format!(
                            "no kernel named {:?} and no such file; see `banger kernel list`",
                            a.kernel
                        ),
                        code: 3,
                    })?;
            std::path::PathBuf::from(k.path)
        };
    let failed = |message: String| CliError::Failed { message, code: 1 };
    let data =
        std::fs::read(&path).map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
    let report = if a.dot_config {
        let text = String::from_utf8(data)
            .map_err(|_| failed(format!("{} is not a text .config file", path.display())))?;
        let config = banger_imagemgr::KernelConfig::parse(&text);
        if config.is_empty() {
            return Err(failed(format!(
                "{} has no CONFIG_ lines; is it a .config file?",
                path.display()
            )));
        }
        banger_imagemgr::check_kernel_config(&config)
    } else {
        banger_imagemgr::check_kernel_image(&data)
            .map_err(|e| failed(format!("{}: {e}", path.display())))?
    };
    if a.json.json {
        print_json(ctx.out, &report)?;
    } else {
        writeln!(ctx.out, "kernel: {}", path.display())?;
        for p in &report.profiles {
            writeln!(ctx.out, "{}:", p.title)?;
            let width = p.items.iter().map(|i| i.option.len()).max().unwrap_or(0);
            for i in &p.items {
                writeln!(
                    ctx.out,
                    "  {:<7}  {:<width$}  {}",
                    i.status.as_str(),
                    i.option,
                    i.why
                )?;
            }
        }
        writeln!(ctx.out, "verdict: {}", report.verdict())?;
    }
    if report.bootable {
        Ok(())
    } else {
        Err(failed(
            "no boot profile is fully satisfied: build the items marked missing or module in (=y)"
                .into(),
        ))
    }
}

fn list(ctx: &mut Ctx, a: JsonArg) -> Result<(), CliError> {
    let ks: Vec<Kernel> = ctx.connect()?.call(Request::KernelList)?;
    if a.json {
        return print_json(ctx.out, &ks);
    }
    if ks.is_empty() {
        writeln!(
            ctx.err,
            "no kernels yet; add one with `banger kernel pull NAME` or `banger kernel register NAME FILE`"
        )?;
        return Ok(());
    }
    print_table(ctx.out, kernel_table(ctx.term, &ks))
}

fn register(ctx: &mut Ctx, a: KernelRegisterArgs) -> Result<(), CliError> {
    validate::image_name(&a.name).map_err(CliError::usage)?;
    let remote = ctx.remote()?;
    let file = crate::commands::image_register::file_arg(remote.as_ref(), "kernel", &a.file)?;
    let mut client = ctx.connect()?;
    client.set_timeout(None);
    let k: Kernel = client.call(Request::KernelRegister(KernelRegisterParams {
        name: a.name,
        file,
        version: a.kernel_version,
    }))?;
    shown(ctx, a.json, &k)
}

fn delete(ctx: &mut Ctx, a: NameArg) -> Result<(), CliError> {
    let d: Deleted = ctx
        .connect()?
        .call(Request::KernelDelete(NameRef { name: a.name }))?;
    if a.json.json {
        return print_json(ctx.out, &d);
    }
    writeln!(ctx.out, "deleted kernel {} ({})", d.name, d.id)?;
    Ok(())
}

fn shown(ctx: &mut Ctx, json: JsonArg, k: &Kernel) -> Result<(), CliError> {
    if json.json {
        return print_json(ctx.out, k);
    }
    print_table(ctx.out, kernel_table(ctx.term, std::slice::from_ref(k)))
}

/// NAME, VERSION, SIZE, SHA256, SOURCE.
fn kernel_table(term: Term, ks: &[Kernel]) -> comfy_table::Table {
    let mut t = table(term, &["NAME", "VERSION", "SIZE", "SHA256", "SOURCE"]);
    for k in ks {
        t.add_row(vec![
            Cell::new(&k.name),
            Cell::new(k.version.as_deref().unwrap_or("-")),
            Cell::new(ByteSize(k.size_bytes)),
            Cell::new(&k.sha256),
            Cell::new(&k.source),
        ]);
    }
    t
}

/// `banger image promote VM NAME`.
pub fn promote(ctx: &mut Ctx, a: ImagePromoteArgs) -> Result<(), CliError> {
    validate::image_name(&a.name).map_err(CliError::usage)?;
    let mut client = ctx.connect()?;
    client.set_timeout(None);
    let image: Image = client.call(Request::ImagePromote(ImagePromoteParams {
        vm: a.vm,
        name: a.name,
    }))?;
    if a.json.json {
        return print_json(ctx.out, &image);
    }
    print_table(ctx.out, render::image(ctx.term, now_ms(), &image))
}
