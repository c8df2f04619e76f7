//! `ImageService`: registering, pulling (`pull.rs`, `manifest.rs`,
//! `registry_auth.rs`), importing bundles (`bundle.rs`), building
//! (`build/`), seeding (`seed.rs`, `refresh.rs`) and deleting images; and
//! `KernelService` (`kernels/`), the kernel catalogue.

mod build;
mod bundle;
mod error;
pub mod kernels;
mod manifest;
mod pull;
mod refresh;
pub mod registry_auth;
mod seed;
mod service;

pub use error::ImageError;
pub use kernels::KernelService;
pub use seed::SeedSettings;
pub use service::ImageService;
pub(crate) use service::{Staged, link_or_copy, name_taken};
