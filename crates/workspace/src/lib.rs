//! Leaf crate behind `banger workspace prepare/export` and file sync.
//!
//! It imports no sibling crate and does no network or guest I/O itself: it
//! inspects a git checkout on the host ([`git`]), records what was sent
//! ([`manifest`]) and what the guest holds ([`guest_state`]), writes the tar stream a guest unpacks ([`tarstream`]),
//! generates the guest-side shell scripts ([`script`]), brings guest work back
//! into the host repository without touching its working tree ([`export`]) and
//! validates file-sync paths ([`homepath`]). The daemon's `WorkspaceService`
//! drives these over SSH.

pub mod export;
pub mod git;
pub mod guest_state;
pub mod homepath;
pub mod manifest;
pub mod script;
pub mod tarstream;

pub use git::{GitError, RepoInfo};
pub use guest_state::GuestState;
pub use manifest::{Delta, Manifest, ManifestEntry, ManifestError};

#[cfg(test)]
pub(crate) mod test_repo;
