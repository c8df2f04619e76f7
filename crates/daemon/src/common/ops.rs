//! The operation tracker: asynchronous operations (`vm.create`,
//! `image.pull`, `image.build`) as kept in a `banger_opstate::Registry`.

use banger_api::Operation;
use banger_opstate::AsyncOp;

/// An operation as kept in the registry.
#[derive(Debug, Clone)]
pub struct OpEntry(pub Operation);

impl AsyncOp for OpEntry {
    fn is_done(&self) -> bool {
        self.0.state.is_done()
    }
}
