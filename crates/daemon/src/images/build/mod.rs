//! `image.build`: a VM-ready Debian image built locally (see `recipe.rs`);
//! `kernel.build`: banger's microVM kernel (see `kernel.rs`).

mod kernel;
mod recipe;

pub use kernel::MICROVM_KERNEL;
