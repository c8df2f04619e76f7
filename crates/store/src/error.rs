//! Everything that can go wrong in the store, as one enum whose variants carry
//! their subject so callers need no context strings.

use std::io;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use banger_api::{ErrorKind, VmState};

/// An error returned by [`Store`](crate::Store).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory that should hold the database could not be created.
    #[error("cannot create the database directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The database file could not be opened or configured.
    #[error("cannot open the database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer banger.
    #[error(
        "the database has schema version {found} but this banger supports only up to \
         {supported}; upgrade banger"
    )]
    SchemaTooNew {
        /// Version found in the database.
        found: u32,
        /// Newest version this code knows.
        supported: u32,
    },
    /// A schema migration step failed; the database keeps its previous version.
    #[error("cannot migrate the database to schema version {version}")]
    Migrate {
        /// The version the failed step would have produced.
        version: u32,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// Another object of the same kind already has this name.
    #[error("{what} {name:?} already exists")]
    NameTaken {
        /// Kind of object (`VM`, `image`, `kernel`).
        what: &'static str,
        /// The name.
        name: String,
    },
    /// Another object of the same kind already has this id.
    #[error("{what} id {id} already exists")]
    IdTaken {
        /// Kind of object.
        what: &'static str,
        /// The id.
        id: String,
    },
    /// Another VM already uses this guest address.
    #[error("guest address {ip} is already in use")]
    AddressTaken {
        /// The address.
        ip: Ipv4Addr,
    },
    /// Another VM already uses this guest MAC address.
    #[error("guest MAC address {mac} is already in use")]
    MacTaken {
        /// The MAC address.
        mac: String,
    },
    /// No such object.
    #[error("{what} {key:?} not found")]
    NotFound {
        /// Kind of object (`VM`, `image`, `kernel`, `operation`).
        what: &'static str,
        /// The name or id that was looked up.
        key: String,
    },
    /// A VM is not in one of the states an operation requires.
    #[error("VM {name:?} is {state}; expected {}", join_states(.expected))]
    WrongState {
        /// The VM's name.
        name: String,
        /// Its current state.
        state: VmState,
        /// The states the operation accepts.
        expected: Vec<VmState>,
    },
    /// An image cannot be deleted while VMs use it.
    #[error("image {name:?} is used by {}; delete them first", join_vms(.vms))]
    ImageInUse {
        /// The image's name.
        name: String,
        /// Names of the VMs that use it, sorted.
        vms: Vec<String>,
    },
    /// Any other database failure.
    #[error("cannot {op}")]
    Sqlite {
        /// What the store was doing (`save VM`, `list images`, …).
        op: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// The RPC error class this error maps to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::NameTaken { .. }
            | StoreError::IdTaken { .. }
            | StoreError::AddressTaken { .. }
            | StoreError::MacTaken { .. }
            | StoreError::WrongState { .. }
            | StoreError::ImageInUse { .. } => ErrorKind::Conflict,
            StoreError::NotFound { .. } => ErrorKind::NotFound,
            StoreError::CreateDir { .. }
            | StoreError::Open { .. }
            | StoreError::SchemaTooNew { .. }
            | StoreError::Migrate { .. }
            | StoreError::Sqlite { .. } => ErrorKind::Internal,
        }
    }

    /// A `map_err` adapter wrapping a SQLite error as [`StoreError::Sqlite`].
    pub(crate) fn sqlite(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
        move |source| StoreError::Sqlite { op, source }
    }
}

fn join_states(states: &[VmState]) -> String {
    let names: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
    names.join(" or ")
}

fn join_vms(vms: &[String]) -> String {
    let noun = if vms.len() == 1 { "VM" } else { "VMs" };
    format!("{noun} {}", vms.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_state_lists_expected_states() {
        let err = StoreError::WrongState {
            name: "web".into(),
            state: VmState::Running,
            expected: vec![VmState::Created, VmState::Stopped],
        };
        assert_eq!(
            err.to_string(),
            "VM \"web\" is running; expected created or stopped"
        );
        assert_eq!(err.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn image_in_use_names_the_vms() {
        let err = StoreError::ImageInUse {
            name: "debian".into(),
            vms: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            err.to_string(),
            "image \"debian\" is used by VMs a, b; delete them first"
        );
    }

    #[test]
    fn schema_too_new_says_to_upgrade() {
        let err = StoreError::SchemaTooNew {
            found: 9,
            supported: 1,
        };
        assert!(err.to_string().ends_with("upgrade banger"), "{err}");
    }
}
