//! The provisioning record of each VM (`vms.provision_json`): the runs of
//! `vm create --provision`, kept with the VM row and deleted with it.

use banger_api::ProvisionRun;
use rusqlite::OptionalExtension;

use crate::{Store, StoreError};

impl Store {
    /// Replace VM `id`'s provisioning record with `runs`.
    ///
    /// Fails with [`StoreError::NotFound`] when the VM does not exist.
    pub fn set_vm_provision(&self, id: &str, runs: &[ProvisionRun]) -> Result<(), StoreError> {
        let json = serde_json::to_string(runs).map_err(|e| StoreError::Sqlite {
            op: "encode a provisioning record",
            source: rusqlite::Error::ToSqlConversionFailure(e.into()),
        })?;
        self.with_conn(|conn| {
            let n = conn
                .prepare_cached("UPDATE vms SET provision_json = ?2 WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute(rusqlite::params![id, json]))
                .map_err(StoreError::sqlite("save a provisioning record"))?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "VM",
                    key: id.to_string(),
                });
            }
            Ok(())
        })
    }

    /// VM `id`'s provisioning record (empty when none was made or the VM
    /// does not exist).
    pub fn vm_provision(&self, id: &str) -> Result<Vec<ProvisionRun>, StoreError> {
        let json: Option<Option<String>> = self.with_conn(|conn| {
            conn.prepare_cached("SELECT provision_json FROM vms WHERE id = ?1")
                .and_then(|mut stmt| stmt.query_row([id], |row| row.get(0)).optional())
                .map_err(StoreError::sqlite("read a provisioning record"))
        })?;
        match json.flatten() {
            None => Ok(Vec::new()),
            Some(j) => serde_json::from_str(&j).map_err(|e| StoreError::Sqlite {
                op: "decode a provisioning record",
                source: rusqlite::Error::FromSqlConversionFailure(
                    0,
                    rusqlite::types::Type::Text,
                    e.into(),
                ),
            }),
        }
    }
}
