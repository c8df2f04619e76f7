//! The `operations` table: durable copies of asynchronous operations, so that
//! `operation.get` still answers after the daemon restarts.
//!
//! The live, watchable copy of a running operation is in the daemon's opstate
//! registry; the daemon upserts the row at each change. Rows left `running`
//! by a daemon that died are failed at the next start with
//! [`Store::fail_running_operations`], and finished rows are pruned with
//! [`Store::prune_operations`].

use banger_api::{ErrorKind, OpState, Operation, RpcErrorBody, UnixMillis};
use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row, params};

use crate::sql;
use crate::{Store, StoreError, now_millis};

/// The columns in [`from_row`]'s order.
macro_rules! columns {
    () => {
        "id, kind, subject, state, stage, step, steps, error_json, created_at, updated_at"
    };
}

const SELECT_ALL: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM operations ORDER BY created_at, id"
);
const SELECT_BY_ID: &str = concat!("SELECT ", columns!(), " FROM operations WHERE id = ?1");

impl Store {
    /// Inserts the operation or replaces the stored copy with the same id.
    ///
    /// `vm_id` records the VM it concerns; `None` keeps the one stored by an
    /// earlier call, so progress updates need not repeat it. `created_at` is
    /// kept from the first insert.
    pub fn upsert_operation(&self, op: &Operation, vm_id: Option<&str>) -> Result<(), StoreError> {
        let error_json = op
            .error
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|err| StoreError::Sqlite {
                op: "encode an operation's error",
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(err)),
            })?;
        self.with_conn(|conn| {
            conn.prepare_cached(
                "INSERT INTO operations (id, kind, subject, vm_id, state, stage, step, steps, \
                                         error_json, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
                 ON CONFLICT (id) DO UPDATE SET \
                     kind = excluded.kind, subject = excluded.subject, \
                     vm_id = coalesce(excluded.vm_id, operations.vm_id), state = excluded.state, \
                     stage = excluded.stage, step = excluded.step, steps = excluded.steps, \
                     error_json = excluded.error_json, updated_at = excluded.updated_at",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    op.id,
                    op.kind,
                    op.subject,
                    vm_id,
                    op.state.as_str(),
                    op.stage,
                    op.step,
                    op.steps,
                    error_json,
                    op.created_at,
                    op.updated_at,
                ])
            })
            .map_err(StoreError::sqlite("save an operation"))?;
            Ok(())
        })
    }

    /// The operation with this id.
    pub fn get_operation(&self, id: &str) -> Result<Option<Operation>, StoreError> {
        self.with_conn(|conn| {
            conn.prepare_cached(SELECT_BY_ID)
                .and_then(|mut stmt| stmt.query_row([id], from_row).optional())
                .map_err(StoreError::sqlite("read an operation"))
        })
    }

    /// All stored operations, oldest first.
    pub fn list_operations(&self) -> Result<Vec<Operation>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(SELECT_ALL)
                .map_err(StoreError::sqlite("list operations"))?;
            stmt.query_map([], from_row)
                .and_then(|rows| rows.collect())
                .map_err(StoreError::sqlite("list operations"))
        })
    }

    /// Deletes finished operations last updated before `finished_before`;
    /// running ones are kept whatever their age. Returns how many were deleted.
    pub fn prune_operations(&self, finished_before: UnixMillis) -> Result<usize, StoreError> {
        self.with_conn(|conn| {
            conn.execute(
                "DELETE FROM operations WHERE state <> ?1 AND updated_at < ?2",
                params![OpState::Running.as_str(), finished_before],
            )
            .map_err(StoreError::sqlite("prune operations"))
        })
    }

    /// Marks every `running` operation as failed with an
    /// [`ErrorKind::Internal`] error carrying `message`. Returns how many.
    ///
    /// Run once at daemon start: nothing can still be working on them.
    pub fn fail_running_operations(&self, message: &str) -> Result<usize, StoreError> {
        let error = RpcErrorBody {
            kind: ErrorKind::Internal,
            message: message.to_string(),
        };
        let error_json = serde_json::to_string(&error).map_err(|err| StoreError::Sqlite {
            op: "encode an operation's error",
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(err)),
        })?;
        self.with_conn(|conn| {
            conn.execute(
                "UPDATE operations SET state = ?1, error_json = ?2, updated_at = ?3 \
                 WHERE state = ?4",
                params![
                    OpState::Failed.as_str(),
                    error_json,
                    now_millis(),
                    OpState::Running.as_str(),
                ],
            )
            .map_err(StoreError::sqlite("fail interrupted operations"))
        })
    }
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Operation> {
    let error_json: Option<String> = row.get(7)?;
    let error = error_json
        .map(|json| serde_json::from_str::<RpcErrorBody>(&json))
        .transpose()
        .map_err(|err| rusqlite::Error::FromSqlConversionFailure(7, Type::Text, Box::new(err)))?;
    Ok(Operation {
        id: row.get(0)?,
        kind: row.get(1)?,
        subject: row.get(2)?,
        state: sql::parse_column(row, 3)?,
        stage: row.get(4)?,
        step: row.get(5)?,
        steps: row.get(6)?,
        error,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}
