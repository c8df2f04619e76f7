//! Persistent state of the `bangerd` daemon: VMs, their port forwards,
//! images, kernels and operations, kept in one SQLite database.
//!
//! The daemon opens one [`Store`] at start-up and shares it behind an `Arc`.
//! Every method is short and synchronous: it takes the store's single
//! connection, runs one statement or one transaction, and returns plain model
//! types from [`banger_api`]. Rules the daemon relies on:
//!
//! 1. Names, guest addresses and MACs are unique; violations come back as
//!    typed [`StoreError`] variants, never as raw SQLite errors.
//! 2. Every VM state change goes through [`Store::transition_vm`], a
//!    compare-and-set inside one transaction.
//! 3. The schema is versioned with `PRAGMA user_version`; opening a database
//!    written by a newer banger is refused rather than guessed at.
#![warn(missing_docs)]

mod error;
mod forwards;
mod id;
mod images;
mod kernels;
mod migrations;
mod operations;
mod provision;
mod sql;
mod store;
mod vms;

pub use error::StoreError;
pub use id::{new_id, now_millis};
pub use migrations::SCHEMA_VERSION;
pub use store::Store;
