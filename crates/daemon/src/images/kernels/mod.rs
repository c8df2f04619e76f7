//! `KernelService`: the kernel catalogue (`service.rs`) and the built-in
//! catalog of downloadable kernels (`catalog.rs`, `catalog.toml`).

mod catalog;
mod service;

pub use service::KernelService;
pub(crate) use service::catalog_kernel;
