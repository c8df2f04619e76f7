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
mod kbuild;
mod kconfig;
mod layer;
mod limits;
mod probe;
mod resize;

pub use bundle::{
    BUNDLE_FORMAT, BundleFile, BundleManifest, BundleSource, MAX_MANIFEST_BYTES, read_bundle,
    read_bundle_from, write_bundle,
};
pub use bzimage::{KernelCompression, extract_vmlinux, vmlinux_from_bzimage};
pub use copy::{CopyMethod, clone_or_copy, grow_file};
pub use digest::{Hasher, Sha256Digest, sha256_file, verify_file};
pub use ext4build::{Ext4Size, build_ext4, ext4_size, fixup_script};
pub use ext4edit::{
    Ext4Edit, Owner, build_ext4_from_dir, dump_dir, exists as ext4_exists,
    read_file as ext4_read_file,
};
pub use kbuild::{
    BuildRequest as KernelBuildRequest, BuiltKernel, DEBIAN_SOURCE_DIR, DPKG_STATUS, Fragment,
    KbuildError, KernelSource, Lost as LostKconfigItem, MICROVM_FRAGMENT, Tools as KbuildTools,
    build as build_kernel, cached as cached_kernel, dpkg_version,
};
pub use kconfig::{
    Item as KconfigItem, ItemStatus, KconfigError, KernelCheck, KernelConfig, OptionValue,
    ProfileReport, check as check_kernel_config, check_image as check_kernel_image,
    embedded_config, required_options as required_kernel_options,
};
pub use layer::{
    EntryMeta, Flattened, Flattener, MAX_FLATTENED_BYTES, MAX_TAR_METADATA_BYTES, TreeStats,
};
pub use limits::{
    BoundedCopyError, BoundedWriter, Ext4Geometry, SPACE_MARGIN, available_bytes,
    check_ext4_growable, copy_bounded, ensure_free_space, ext4_geometry,
};
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
    /// Input carried more bytes than were declared for it; nothing past
    /// the declared size was written.
    #[error("{what} is larger than the {declared} bytes {declared_by}; {advice}")]
    Oversized {
        /// The member, blob or layer.
        what: String,
        /// The declared size.
        declared: u64,
        /// Who declared it ("its manifest declares").
        declared_by: &'static str,
        /// What it means and what to do.
        advice: &'static str,
    },
    /// Not enough free space for what a pull or import would write.
    #[error(
        "not enough free space in {dir} for {what}: it needs {needed} bytes plus a {margin} byte margin, and {available} bytes are available; free space on that filesystem or move banger's state directory (state_dir)",
        margin = crate::SPACE_MARGIN
    )]
    NoSpace {
        /// The destination directory.
        dir: PathBuf,
        /// What would be written.
        what: String,
        /// Bytes it needs.
        needed: u64,
        /// Bytes available to an unprivileged writer.
        available: u64,
    },
    /// A disk size the image's ext4 cannot be grown to.
    #[error(
        "{path}: its ext4 filesystem ({block_size}-byte blocks, {bits}) can grow to at most {max} bytes, not {wanted}; ask for at most {max} bytes or use an image made with 4 KiB blocks (mkfs.ext4 -b 4096 -O 64bit)",
        bits = if *is_64bit { "64bit" } else { "without 64bit" }
    )]
    TooLargeForFilesystem {
        /// The filesystem image.
        path: PathBuf,
        /// The size asked for, in bytes.
        wanted: u64,
        /// The largest size resize2fs can reach, in bytes.
        max: u64,
        /// Its block size.
        block_size: u64,
        /// Whether it has the `64bit` feature.
        is_64bit: bool,
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

/// Create the empty file `path` (must not exist) 0600, for an image that
/// `mkfs.ext4 -F` then formats in place (it keeps the file's mode).
fn create_private_file(path: &std::path::Path) -> Result<(), ImageMgrError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(io_err(path))
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ImageMgrError + '_ {
    move |source| ImageMgrError::Io {
        path: path.to_path_buf(),
        source,
    }
}
