//! The `kernels` table: the kernel catalogue.

use banger_api::Kernel;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::sql::{self, Violation};
use crate::{Store, StoreError};

/// The columns in [`from_row`]'s order.
macro_rules! columns {
    () => {
        "id, name, version, path, sha256, created_at, source"
    };
}

const INSERT: &str = concat!(
    "INSERT INTO kernels (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
);
const SELECT_ALL: &str = concat!("SELECT ", columns!(), " FROM kernels ORDER BY name");
const SELECT_BY_ID: &str = concat!("SELECT ", columns!(), " FROM kernels WHERE id = ?1");
const SELECT_BY_NAME: &str = concat!("SELECT ", columns!(), " FROM kernels WHERE name = ?1");

impl Store {
    /// Inserts a new kernel; fails with [`StoreError::NameTaken`] or
    /// [`StoreError::IdTaken`] on a duplicate.
    pub fn insert_kernel(&self, kernel: &Kernel) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.prepare_cached(INSERT)
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        kernel.id,
                        kernel.name,
                        kernel.version,
                        kernel.path,
                        kernel.sha256,
                        kernel.created_at,
                        kernel.source,
                    ])
                })
                .map_err(|err| match sql::violation(&err) {
                    Some(Violation::Unique("kernels.name")) => StoreError::NameTaken {
                        what: "kernel",
                        name: kernel.name.clone(),
                    },
                    Some(Violation::Unique("kernels.id")) => StoreError::IdTaken {
                        what: "kernel",
                        id: kernel.id.clone(),
                    },
                    _ => StoreError::Sqlite {
                        op: "save the new kernel",
                        source: err,
                    },
                })?;
            Ok(())
        })
    }

    /// The kernel with this id.
    pub fn get_kernel(&self, id: &str) -> Result<Option<Kernel>, StoreError> {
        self.with_conn(|conn| select_by(conn, SELECT_BY_ID, id))
    }

    /// The kernel with this name, or else the kernel with this id.
    pub fn find_kernel(&self, name_or_id: &str) -> Result<Option<Kernel>, StoreError> {
        self.with_conn(|conn| match select_by(conn, SELECT_BY_NAME, name_or_id)? {
            Some(kernel) => Ok(Some(kernel)),
            None => select_by(conn, SELECT_BY_ID, name_or_id),
        })
    }

    /// All kernels, ordered by name.
    pub fn list_kernels(&self) -> Result<Vec<Kernel>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(SELECT_ALL)
                .map_err(StoreError::sqlite("list kernels"))?;
            stmt.query_map([], from_row)
                .and_then(|rows| rows.collect())
                .map_err(StoreError::sqlite("list kernels"))
        })
    }

    /// Deletes the kernel with this id.
    pub fn delete_kernel(&self, id: &str) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let n = conn
                .execute("DELETE FROM kernels WHERE id = ?1", [id])
                .map_err(StoreError::sqlite("delete a kernel"))?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "kernel",
                    key: id.to_string(),
                });
            }
            Ok(())
        })
    }
}

/// The one kernel `query` (`SELECT_BY_ID` or `SELECT_BY_NAME`) finds for `key`.
fn select_by(conn: &Connection, query: &str, key: &str) -> Result<Option<Kernel>, StoreError> {
    conn.prepare_cached(query)
        .and_then(|mut stmt| stmt.query_row([key], from_row).optional())
        .map_err(StoreError::sqlite("read a kernel"))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Kernel> {
    Ok(Kernel {
        id: row.get(0)?,
        name: row.get(1)?,
        version: row.get(2)?,
        path: row.get(3)?,
        sha256: row.get(4)?,
        created_at: row.get(5)?,
        source: row.get(6)?,
        size_bytes: 0,
    })
}
