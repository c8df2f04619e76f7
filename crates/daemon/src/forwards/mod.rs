//! `ForwardService`: port forwards (`vm forward`). Each forward is a TCP
//! listener inside bangerd (a tokio task, no process of its own) whose
//! connections are copied to the guest's address and port with
//! `tokio::io::copy_bidirectional`. Forwards are stored (`vm_forwards`),
//! re-opened at daemon start, and closed with `vm.forward_remove` or with
//! their VM. While the VM is not running the listener stays open (the
//! port stays reserved) and resets each connection at once.

mod error;
mod lowports;
mod service;

pub use error::ForwardError;
pub use service::ForwardService;
