//! Integration tests for `banger-store`, one module per table plus schema
//! and concurrency; fixtures live in `util`.

mod concurrency;
mod forwards;
mod images;
mod kernels;
mod operations;
mod schema;
mod util;
mod vms;
