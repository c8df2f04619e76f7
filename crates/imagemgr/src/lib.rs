//! Image subsystem helpers with no state: checks that a file is what it
//! claims to be, and cheap copies of root filesystems.
//!
//! A leaf crate: it imports no other banger crate.
#![warn(missing_docs)]

mod bundle;
mod bzimage;
mod copy;
mod digest;
mod ext4build;
mod ext4edit;
mod layer;
mod probe;
mod resize;

pub use bundle::{
    BUNDLE_FORMAT, BundleFile, BundleManifest, BundleSource, read_bundle, write_bundle,
};
pub use bzimage::{KernelCompression, extract_vmlinux, vmlinux_from_bzimage};
pub use copy::{CopyMethod, clone_or_copy, grow_file};
pub use digest::{Hasher, Sha256Digest, sha256_file, verify_file};
pub use ext4build::{Ext4Size, build_ext4, ext4_size, fixup_script};
pub use ext4edit::{
    Ext4Edit, Owner, build_ext4_from_dir, dump_dir, exists as ext4_exists,
    read_file as ext4_read_file,
};
pub use layer::{EntryMeta, Flattened, Flattener, TreeStats};
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
    /// A digest string is not `sha256:<64 hex digits>`.
    #[error("unsupported digest {digest:?}: only sha256:<64 hex digits> is accepted")]
    BadDigest {
        /// The digest as given.
        digest: String,
    },
    /// Content does not hash to the digest it was announced with.
    #[error(
        "digest mismatch for {what}: expected {expected}, got {actual}; the download is corrupt (pull again)"
    )]
    DigestMismatch {
        /// The blob or file.
        what: String,
        /// The announced digest.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A layer could not be applied.
    #[error("layer {layer}{}: {reason}", if entry.is_empty() { String::new() } else { format!(", entry {entry}") })]
    Layer {
        /// The layer (digest).
        layer: String,
        /// The tar entry, if one is at fault.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// Something the image builder cannot express.
    #[error("unsupported in an image: {what}")]
    Unsupported {
        /// What.
        what: String,
    },
    /// An e2fsprogs tool failed.
    #[error("{program} failed on {path}: {message}")]
    Tool {
        /// The program.
        program: &'static str,
        /// The image file.
        path: PathBuf,
        /// Its error output.
        message: String,
    },
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ImageMgrError + '_ {
    move |source| ImageMgrError::Io {
        path: path.to_path_buf(),
        source,
    }
}
