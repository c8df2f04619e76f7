//! Following an operation with progress on stderr.

use banger_api::{ErrorKind, OpState, Operation, RpcError};

use crate::client::Client;
use crate::context::Ctx;
use crate::error::CliError;
use crate::progress::Progress;

/// Watch operation `id` until it finishes, showing progress as `label`.
/// Returns the final operation, failed or not.
pub fn follow(
    ctx: &mut Ctx,
    client: &mut Client,
    id: &str,
    label: &str,
) -> Result<Operation, CliError> {
    let mut progress = Progress::new(ctx.term, label);
    let err = &mut *ctx.err;
    let result = client.watch(id, |op| progress.update(op, err));
    progress.finish();
    Ok(result?)
}

/// The error of a failed operation, `None` if it succeeded.
pub fn failure(op: &Operation, hint: &str) -> Option<CliError> {
    if op.state != OpState::Failed {
        return None;
    }
    let source = op.error.clone().map(RpcError::from).unwrap_or_else(|| {
        RpcError::new(
            ErrorKind::Internal,
            "the daemon gave no reason; see its log",
        )
    });
    Some(CliError::Operation {
        message: format!(
            "{} {} failed at step {}/{} ({}){hint}",
            op.kind, op.subject, op.step, op.steps, op.stage
        ),
        source,
    })
}
