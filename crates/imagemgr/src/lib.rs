//! Image subsystem helpers with no state: checks that a file is what it
//! claims to be, and cheap copies of root filesystems.
//!
//! A leaf crate: it imports no other banger crate.
#![warn(missing_docs)]

mod copy;
mod probe;
mod resize;

pub use copy::{CopyMethod, clone_or_copy, grow_file};
pub use probe::{FileKind, check_kernel, check_rootfs, probe};
pub use resize::resize_ext4;

use std::path::PathBuf;

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum ImageMgrError {
    /// A file could not be opened, read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not of the kind required.
    #[error("{path} is not {expected}: {found}")]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// What it should be.
        expected: &'static str,
        /// What it looks like, and what to do.
        found: String,
    },
    /// A file would have to shrink.
    #[error("{path} is {current} bytes; it cannot shrink to {requested} bytes")]
    Shrink {
        /// The file.
        path: PathBuf,
        /// Its size.
        current: u64,
        /// The size asked for.
        requested: u64,
    },
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ImageMgrError + '_ {
    move |source| ImageMgrError::Io {
        path: path.to_path_buf(),
        source,
    }
}
