//! A registry of in-flight asynchronous operations that clients can watch.
//!
//! The daemon starts long work (`vm.create`'s boot, an image pull) on a task
//! and answers the request at once with an operation id. The task reports
//! progress with [`Registry::update`]; clients poll with [`Registry::get`] or
//! follow every change with [`Registry::subscribe`]. Finished operations
//! linger so late watchers still see the outcome, until
//! [`Registry::prune`] drops the old ones.
//!
//! The crate is a leaf: it knows nothing of VMs or of the daemon's wire
//! types. The operation type only has to say when it is done ([`AsyncOp`]).
#![warn(missing_docs)]

mod async_op;
mod registry;

pub use async_op::AsyncOp;
pub use registry::Registry;
