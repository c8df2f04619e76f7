//! The `vms` table: VM rows, their uniqueness rules and state transitions.

use std::net::Ipv4Addr;

use banger_api::{Vm, VmState};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::sql::{self, Violation};
use crate::{Store, StoreError, now_millis};

/// The columns in [`from_row`]'s order (a macro so `concat!` can build
/// constant SQL from it).
macro_rules! columns {
    () => {
        "id, name, state, image_id, image_name, vcpus, memory_mib, disk_bytes, guest_ip, \
         guest_mac, created_at, updated_at, started_at, last_error, work_disk_bytes"
    };
}

const INSERT: &str = concat!(
    "INSERT INTO vms (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
);
const SELECT_ALL: &str = concat!("SELECT ", columns!(), " FROM vms ORDER BY name");
const SELECT_BY_ID: &str = concat!("SELECT ", columns!(), " FROM vms WHERE id = ?1");
const SELECT_BY_NAME: &str = concat!("SELECT ", columns!(), " FROM vms WHERE name = ?1");

impl Store {
    /// Inserts a new VM.
    ///
    /// Fails with [`StoreError::NameTaken`], [`StoreError::AddressTaken`],
    /// [`StoreError::MacTaken`] or [`StoreError::IdTaken`] when another VM has
    /// the same value, and with [`StoreError::NotFound`] when its image does
    /// not exist.
    pub fn insert_vm(&self, vm: &Vm) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.prepare_cached(INSERT)
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        vm.id,
                        vm.name,
                        vm.state.as_str(),
                        vm.image_id,
                        vm.image_name,
                        vm.vcpus,
                        vm.memory_mib,
                        vm.disk_bytes,
                        vm.guest_ip.to_string(),
                        vm.guest_mac,
                        vm.created_at,
                        vm.updated_at,
                        vm.started_at,
                        vm.last_error,
                        vm.work_disk_bytes,
                    ])
                })
                .map_err(write_error(vm, "save the new VM"))?;
            Ok(())
        })
    }

    /// The VM with this id.
    pub fn get_vm(&self, id: &str) -> Result<Option<Vm>, StoreError> {
        self.with_conn(|conn| select_by(conn, SELECT_BY_ID, id))
    }

    /// The VM with this name, or else the VM with this id.
    pub fn find_vm(&self, name_or_id: &str) -> Result<Option<Vm>, StoreError> {
        self.with_conn(|conn| match select_by(conn, SELECT_BY_NAME, name_or_id)? {
            Some(vm) => Ok(Some(vm)),
            None => select_by(conn, SELECT_BY_ID, name_or_id),
        })
    }

    /// All VMs, ordered by name.
    pub fn list_vms(&self) -> Result<Vec<Vm>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(SELECT_ALL)
                .map_err(StoreError::sqlite("list VMs"))?;
            stmt.query_map([], from_row)
                .and_then(|rows| rows.collect())
                .map_err(StoreError::sqlite("list VMs"))
        })
    }

    /// Rewrites every column of the VM with `vm.id` from `vm`, as given
    /// (`updated_at` included).
    ///
    /// Uniqueness failures are reported as by [`insert_vm`](Store::insert_vm);
    /// a missing row as [`StoreError::NotFound`].
    pub fn update_vm(&self, vm: &Vm) -> Result<(), StoreError> {
        self.with_conn(|conn| update(conn, &vm.id, vm))
    }

    /// Moves a VM to state `to`, atomically.
    ///
    /// In one transaction: reads the row, refuses with
    /// [`StoreError::WrongState`] unless its state is one of `from` (an empty
    /// `from` accepts any state), sets `state = to`, applies `patch`, sets
    /// `updated_at` to now, writes the row and returns it. On any error the
    /// row is left unchanged.
    ///
    /// `patch` runs while the store is locked: keep it to field assignments
    /// and never call the store from it. It must not change `id`.
    pub fn transition_vm(
        &self,
        id: &str,
        from: &[VmState],
        to: VmState,
        patch: impl FnOnce(&mut Vm),
    ) -> Result<Vm, StoreError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::sqlite("begin a VM state change"))?;
            let mut vm = select_by(&tx, SELECT_BY_ID, id)?.ok_or_else(|| StoreError::NotFound {
                what: "VM",
                key: id.to_string(),
            })?;
            if !from.is_empty() && !from.contains(&vm.state) {
                return Err(StoreError::WrongState {
                    name: vm.name,
                    state: vm.state,
                    expected: from.to_vec(),
                });
            }
            vm.state = to;
            patch(&mut vm);
            vm.id = id.to_string();
            vm.updated_at = now_millis();
            update(&tx, id, &vm)?;
            tx.commit()
                .map_err(StoreError::sqlite("commit a VM state change"))?;
            Ok(vm)
        })
    }

    /// Deletes the VM with this id.
    pub fn delete_vm(&self, id: &str) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let n = conn
                .prepare_cached("DELETE FROM vms WHERE id = ?1")
                .and_then(|mut stmt| stmt.execute([id]))
                .map_err(StoreError::sqlite("delete a VM"))?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "VM",
                    key: id.to_string(),
                });
            }
            Ok(())
        })
    }

    /// Guest addresses of all VMs, in no particular order.
    pub fn used_guest_ips(&self) -> Result<Vec<Ipv4Addr>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT guest_ip FROM vms")
                .map_err(StoreError::sqlite("list guest addresses"))?;
            stmt.query_map([], |row| sql::parse_column(row, 0))
                .and_then(|rows| rows.collect())
                .map_err(StoreError::sqlite("list guest addresses"))
        })
    }

    /// Names of the VMs created from this image, sorted.
    pub fn vm_names_using_image(&self, image_id: &str) -> Result<Vec<String>, StoreError> {
        self.with_conn(|conn| names_using_image(conn, image_id))
    }
}

/// Names of the VMs using `image_id`, sorted; shared with image deletion,
/// which needs it inside its own transaction.
pub(crate) fn names_using_image(
    conn: &Connection,
    image_id: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT name FROM vms WHERE image_id = ?1 ORDER BY name")
        .map_err(StoreError::sqlite("list the VMs using an image"))?;
    stmt.query_map([image_id], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(StoreError::sqlite("list the VMs using an image"))
}

/// The one VM `query` (`SELECT_BY_ID` or `SELECT_BY_NAME`) finds for `key`.
fn select_by(conn: &Connection, query: &str, key: &str) -> Result<Option<Vm>, StoreError> {
    conn.prepare_cached(query)
        .and_then(|mut stmt| stmt.query_row([key], from_row).optional())
        .map_err(StoreError::sqlite("read a VM"))
}

/// Writes all columns of `vm` into the row with id `id`.
fn update(conn: &Connection, id: &str, vm: &Vm) -> Result<(), StoreError> {
    let n = conn
        .prepare_cached(
            "UPDATE vms SET name = ?2, state = ?3, image_id = ?4, image_name = ?5, vcpus = ?6, \
             memory_mib = ?7, disk_bytes = ?8, guest_ip = ?9, guest_mac = ?10, \
             created_at = ?11, updated_at = ?12, started_at = ?13, last_error = ?14, \
             work_disk_bytes = ?15 \
             WHERE id = ?1",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                vm.name,
                vm.state.as_str(),
                vm.image_id,
                vm.image_name,
                vm.vcpus,
                vm.memory_mib,
                vm.disk_bytes,
                vm.guest_ip.to_string(),
                vm.guest_mac,
                vm.created_at,
                vm.updated_at,
                vm.started_at,
                vm.last_error,
                vm.work_disk_bytes,
            ])
        })
        .map_err(write_error(vm, "save a VM"))?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "VM",
            key: id.to_string(),
        });
    }
    Ok(())
}

/// Maps constraint violations from writing `vm` to typed errors.
fn write_error(vm: &Vm, op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |err| match sql::violation(&err) {
        Some(Violation::Unique("vms.name")) => StoreError::NameTaken {
            what: "VM",
            name: vm.name.clone(),
        },
        Some(Violation::Unique("vms.guest_ip")) => StoreError::AddressTaken { ip: vm.guest_ip },
        Some(Violation::Unique("vms.guest_mac")) => StoreError::MacTaken {
            mac: vm.guest_mac.clone(),
        },
        Some(Violation::Unique("vms.id")) => StoreError::IdTaken {
            what: "VM",
            id: vm.id.clone(),
        },
        // The only foreign key is the image.
        Some(Violation::ForeignKey) => StoreError::NotFound {
            what: "image",
            key: vm.image_id.clone(),
        },
        _ => StoreError::Sqlite { op, source: err },
    }
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Vm> {
    Ok(Vm {
        id: row.get(0)?,
        name: row.get(1)?,
        state: sql::parse_column(row, 2)?,
        image_id: row.get(3)?,
        image_name: row.get(4)?,
        vcpus: row.get(5)?,
        memory_mib: row.get(6)?,
        disk_bytes: row.get(7)?,
        guest_ip: sql::parse_column(row, 8)?,
        guest_mac: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        started_at: row.get(12)?,
        last_error: row.get(13)?,
        work_disk_bytes: row.get(14)?,
    })
}
