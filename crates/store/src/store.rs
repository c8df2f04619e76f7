//! The [`Store`] handle: opening the database and serialising access to its
//! one connection. The table-specific methods live in `vms.rs`, `images.rs`,
//! `kernels.rs` and `operations.rs`.

use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

use crate::{StoreError, migrations};

/// How long a statement waits for another process's write lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon's database: one SQLite connection behind a mutex.
///
/// `Store` is `Send + Sync`; share it with `Arc<Store>`. Each method holds the
/// mutex only for its own statement or transaction and never calls out while
/// holding it (except the patch closure of
/// [`transition_vm`](Store::transition_vm)), so it is a leaf lock: callers may
/// hold any of their own locks when calling in, but must not call into the
/// store from inside that closure.
pub struct Store {
    /// The only connection. Held for one statement or transaction at a time.
    conn: Mutex<Connection>,
    /// The database file, `None` for an in-memory store.
    path: Option<PathBuf>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and migrates it to
    /// the current schema.
    ///
    /// Creates the parent directory (mode 0700) if it is missing. Refuses a
    /// database written by a newer banger with [`StoreError::SchemaTooNew`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|source| StoreError::CreateDir {
                    path: dir.to_path_buf(),
                    source,
                })?;
        }
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        migrations::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: Some(path.to_path_buf()),
        })
    }

    /// Opens a private in-memory database with the current schema, for tests.
    pub fn open_in_memory() -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: PathBuf::from(":memory:"),
            source,
        };
        let mut conn = Connection::open_in_memory().map_err(open_err)?;
        configure(&conn).map_err(open_err)?;
        migrations::migrate(&mut conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: None,
        })
    }

    /// The database file, or `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.with_conn(|conn| migrations::current_version(conn))
    }

    /// Runs `f` with exclusive use of the connection.
    ///
    /// A panic in an earlier caller poisons the mutex but cannot leave a
    /// transaction half-applied (dropping a `Transaction` rolls it back), so
    /// the poison is ignored.
    pub(crate) fn with_conn<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Answers with the resulting mode ("memory" for in-memory databases).
    let _mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }

    #[test]
    fn open_configures_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("nested/dir/banger.db")).unwrap();
        store
            .with_conn(|conn| {
                let mode: String = conn
                    .pragma_query_value(None, "journal_mode", |r| r.get(0))
                    .unwrap();
                let sync: i64 = conn
                    .pragma_query_value(None, "synchronous", |r| r.get(0))
                    .unwrap();
                let fk: i64 = conn
                    .pragma_query_value(None, "foreign_keys", |r| r.get(0))
                    .unwrap();
                assert_eq!(mode, "wal");
                assert_eq!(sync, 1, "NORMAL");
                assert_eq!(fk, 1);
                Ok(())
            })
            .unwrap();
    }
}
