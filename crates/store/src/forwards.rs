//! The `vm_forwards` table: port forwards, one per host address and port,
//! deleted with their VM (`ON DELETE CASCADE`).

use banger_api::forward::PortForward;
use rusqlite::{Row, params};

use crate::sql::{self, Violation};
use crate::{Store, StoreError};

const SELECT: &str = "SELECT f.vm_id, v.name, f.address, f.host_port, f.guest_port, f.created_at \
     FROM vm_forwards f JOIN vms v ON v.id = f.vm_id";

impl Store {
    /// Inserts a forward. Fails with [`StoreError::NameTaken`] (what
    /// `forward`, name `address:port`) when that host address and port is
    /// already forwarded, and with [`StoreError::NotFound`] when the VM is
    /// gone.
    pub fn insert_forward(&self, f: &PortForward) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.prepare_cached(
                "INSERT INTO vm_forwards (vm_id, address, host_port, guest_port, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    f.vm_id,
                    f.address.to_string(),
                    f.host_port,
                    f.guest_port,
                    f.created_at,
                ])
            })
            .map_err(|err| match sql::violation(&err) {
                Some(Violation::Unique(_)) => StoreError::NameTaken {
                    what: "forward",
                    name: f.host_endpoint(),
                },
                Some(Violation::ForeignKey) => StoreError::NotFound {
                    what: "VM",
                    key: f.vm_id.clone(),
                },
                None => StoreError::Sqlite {
                    op: "save a port forward",
                    source: err,
                },
            })?;
            Ok(())
        })
    }

    /// Every forward, ordered by VM name, guest port and host port.
    pub fn list_forwards(&self) -> Result<Vec<PortForward>, StoreError> {
        self.select_forwards("", "")
    }

    /// The forwards of the VM with this id, ordered by guest and host port.
    pub fn vm_forwards(&self, vm_id: &str) -> Result<Vec<PortForward>, StoreError> {
        self.select_forwards(" WHERE f.vm_id = ?1", vm_id)
    }

    fn select_forwards(&self, filter: &str, key: &str) -> Result<Vec<PortForward>, StoreError> {
        let query = format!("{SELECT}{filter} ORDER BY v.name, f.guest_port, f.host_port");
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(&query)
                .map_err(StoreError::sqlite("list port forwards"))?;
            let rows = if filter.is_empty() {
                stmt.query_map([], from_row).and_then(|rows| rows.collect())
            } else {
                stmt.query_map([key], from_row)
                    .and_then(|rows| rows.collect())
            };
            rows.map_err(StoreError::sqlite("list port forwards"))
        })
    }

    /// Deletes the forward on this host address and port; false when there
    /// was none.
    pub fn delete_forward(
        &self,
        address: std::net::IpAddr,
        host_port: u16,
    ) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let n = conn
                .prepare_cached("DELETE FROM vm_forwards WHERE address = ?1 AND host_port = ?2")
                .and_then(|mut stmt| stmt.execute(params![address.to_string(), host_port]))
                .map_err(StoreError::sqlite("delete a port forward"))?;
            Ok(n > 0)
        })
    }
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<PortForward> {
    Ok(PortForward {
        vm_id: row.get(0)?,
        vm: row.get(1)?,
        address: sql::parse_column(row, 2)?,
        host_port: row.get(3)?,
        guest_port: row.get(4)?,
        created_at: row.get(5)?,
        listening: false,
        error: None,
    })
}
