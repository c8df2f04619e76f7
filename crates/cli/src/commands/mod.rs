//! One short module per CLI verb (or group of near-identical verbs). Each
//! checks its arguments, makes its calls and prints the result; this facade
//! only dispatches.

use banger_api::{ByteSize, validate};

use crate::args::{
    Command, ConfigCommand, ImageCommand, NetworkCommand, OperationCommand, VmCommand,
};
use crate::args_guest::WorkspaceCommand;
use crate::context::Ctx;
use crate::error::CliError;

mod completions;
mod config;
mod context;
mod doctor;
mod follow;
mod image;
mod image_build;
mod image_bundle;
mod image_pull;
mod image_register;
mod kernel;
mod managed_seed;
mod network;
mod operation;
mod shell;
mod status;
mod system;
mod vm_cp;
mod vm_create;
mod vm_forward;
mod vm_list;
mod vm_logs;
mod vm_power;
mod vm_provision;
mod vm_set;
mod vm_show;
mod vm_spec;
mod vm_ssh;
mod vm_stats;
mod workspace;

/// Run one parsed command.
pub fn run(command: Command, ctx: &mut Ctx) -> Result<(), CliError> {
    match command {
        Command::Vm(c) => match c {
            VmCommand::Create(a) => vm_create::run(ctx, a),
            VmCommand::Start(a) => vm_power::start(ctx, a),
            VmCommand::Stop(a) => vm_power::stop(ctx, a, false),
            VmCommand::Restart(a) => vm_power::stop(ctx, a, true),
            VmCommand::Kill(a) => vm_power::kill(ctx, a),
            VmCommand::Delete(a) => vm_power::delete(ctx, a),
            VmCommand::Set(a) => vm_set::run(ctx, a),
            VmCommand::List(a) => vm_list::run(ctx, a),
            VmCommand::Show(a) => vm_show::run(ctx, a),
            VmCommand::Stats(a) => vm_stats::run(ctx, a),
            VmCommand::Logs(a) => vm_logs::run(ctx, a),
            VmCommand::Ssh(a) => vm_ssh::ssh(ctx, a),
            VmCommand::Ports(a) => vm_ssh::ports(ctx, a),
            VmCommand::Forward(a) => vm_forward::run(ctx, a),
            VmCommand::Cp(a) => vm_cp::run(ctx, a),
        },
        Command::Shell(a) => shell::run(ctx, a),
        Command::Complete(a) => completions::names(ctx, a),
        Command::Workspace(c) => match c {
            WorkspaceCommand::Prepare(a) => workspace::prepare(ctx, a),
            WorkspaceCommand::Export(a) => workspace::export(ctx, a),
            WorkspaceCommand::SyncFiles(a) => workspace::sync_files(ctx, a),
        },
        Command::SshConfig(a) => vm_ssh::ssh_config(ctx, a),
        Command::Kernel(c) => kernel::run(ctx, c),
        Command::Image(c) => match c {
            ImageCommand::Register(a) => image_register::run(ctx, a),
            ImageCommand::List(a) => image::list(ctx, a),
            ImageCommand::Show(a) => image::show(ctx, a),
            ImageCommand::Delete(a) => image::delete(ctx, a),
            ImageCommand::Pull(a) => image_pull::run(ctx, a),
            ImageCommand::ExportBundle(a) => image_bundle::export(ctx, a),
            ImageCommand::Promote(a) => kernel::promote(ctx, a),
            ImageCommand::Build(a) => image_build::run(ctx, a),
        },
        Command::Operation(c) => match c {
            OperationCommand::List(a) => operation::list(ctx, a),
            OperationCommand::Show(a) => operation::show(ctx, a),
            OperationCommand::Watch(a) => operation::watch(ctx, a),
        },
        Command::Status(a) => status::run(ctx, a),
        Command::Doctor(a) => doctor::run(ctx, a),
        Command::Config(c) => match c {
            ConfigCommand::Default => config::default(ctx),
            ConfigCommand::Show(a) => config::show(ctx, a),
        },
        Command::Completions { shell } => completions::run(ctx, shell),
        Command::System(c) => system::run(ctx, c),
        Command::Network(NetworkCommand::Reset(a)) => network::reset(ctx, a),
        Command::ManagedSeed(crate::args::ManagedSeedCommand::Refresh(a)) => {
            managed_seed::refresh(ctx, a)
        }
        Command::Context(c) => context::run(ctx, c),
    }
}

/// Check `--vcpus` and turn `--memory` into whole MiB, refusing values out of
/// range with exit code 2 before anything is sent.
fn resources(vcpus: Option<u32>, memory: Option<ByteSize>) -> Result<Option<u32>, CliError> {
    if let Some(n) = vcpus {
        validate::vcpus(n).map_err(CliError::usage)?;
    }
    let Some(memory) = memory else {
        return Ok(None);
    };
    let mib = validate::memory(memory).map_err(CliError::usage)?;
    Ok(Some(mib))
}
