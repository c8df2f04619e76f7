//! `image.build`: a VM-ready Debian image built locally (see `recipe.rs`).

mod recipe;
