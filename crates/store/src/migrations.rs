//! The database schema, as an ordered list of migration steps.
//!
//! `PRAGMA user_version` holds the number of steps applied. On open:
//!
//! 1. Begin an immediate transaction and read `user_version`.
//! 2. If it is larger than [`SCHEMA_VERSION`], refuse: a newer banger wrote
//!    this database and this one cannot know what changed.
//! 3. Otherwise apply the next step and bump `user_version` in the same
//!    transaction, commit, and repeat until up to date. A failing step rolls
//!    back entirely, so the version always matches the schema.
//!
//! Steps are append-only: never edit one that has shipped, add a new one.

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

/// Schema steps; step `i` takes the database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE images (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL UNIQUE,
        rootfs_path TEXT NOT NULL,
        kernel_path TEXT NOT NULL,
        initrd_path TEXT,
        size_bytes  INTEGER NOT NULL,
        source      TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE vms (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL UNIQUE,
        state       TEXT NOT NULL,
        image_id    TEXT NOT NULL REFERENCES images (id),
        image_name  TEXT NOT NULL,
        vcpus       INTEGER NOT NULL,
        memory_mib  INTEGER NOT NULL,
        disk_bytes  INTEGER NOT NULL,
        guest_ip    TEXT NOT NULL UNIQUE,
        guest_mac   TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        started_at  INTEGER,
        last_error  TEXT
    ) STRICT;
    CREATE INDEX vms_image_id ON vms (image_id);

    CREATE TABLE kernels (
        id          TEXT PRIMARY KEY NOT NULL,
        name        TEXT NOT NULL UNIQUE,
        version     TEXT,
        path        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        created_at  INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE operations (
        id          TEXT PRIMARY KEY NOT NULL,
        kind        TEXT NOT NULL,
        subject     TEXT NOT NULL,
        vm_id       TEXT,
        state       TEXT NOT NULL,
        stage       TEXT NOT NULL,
        step        INTEGER NOT NULL,
        steps       INTEGER NOT NULL,
        error_json  TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX operations_state_updated_at ON operations (state, updated_at);",
    // 2: where a kernel came from (catalog URL or registered file).
    "ALTER TABLE kernels ADD COLUMN source TEXT NOT NULL DEFAULT '';",
    // 3: image seeding (what was written, JSON), the work seed, and each
    // VM's work-disk size.
    "ALTER TABLE images ADD COLUMN seed_json TEXT;
    ALTER TABLE images ADD COLUMN work_seed_path TEXT;
    ALTER TABLE vms ADD COLUMN work_disk_bytes INTEGER NOT NULL DEFAULT 0;",
    // 4: port forwards (`vm forward`); one listener per host address and
    // port, gone with their VM.
    "CREATE TABLE vm_forwards (
        vm_id       TEXT NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
        address     TEXT NOT NULL,
        host_port   INTEGER NOT NULL,
        guest_port  INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (address, host_port)
    ) STRICT;
    CREATE INDEX vm_forwards_vm_id ON vm_forwards (vm_id);",
    // 5: provisioning runs of `vm create --provision` (JSON list).
    "ALTER TABLE vms ADD COLUMN provision_json TEXT;",
];

/// The schema version this code writes and the newest it can read.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the database up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    apply(conn, MIGRATIONS)
}

/// Reads `user_version` without changing anything.
pub(crate) fn current_version(conn: &Connection) -> Result<u32, StoreError> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(StoreError::sqlite("read the schema version"))
}

fn apply(conn: &mut Connection, steps: &[&str]) -> Result<(), StoreError> {
    let supported = steps.len() as u32;
    loop {
        // Immediate, so that two daemons opening the same file at once
        // cannot both apply the same step.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("begin a schema migration"))?;
        let found = current_version(&tx)?;
        if found > supported {
            return Err(StoreError::SchemaTooNew { found, supported });
        }
        let Some(step) = steps.get(found as usize) else {
            return Ok(());
        };
        let version = found + 1;
        let migrate_err = |source| StoreError::Migrate { version, source };
        tx.execute_batch(step).map_err(migrate_err)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(migrate_err)?;
        tx.commit().map_err(migrate_err)?;
        tracing::info!(version, "migrated the database schema");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_names(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn steps_apply_in_order_and_only_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        let steps = [
            "CREATE TABLE a (x INTEGER)",
            "ALTER TABLE a ADD COLUMN y INTEGER",
        ];
        apply(&mut conn, &steps[..1]).unwrap();
        assert_eq!(current_version(&conn).unwrap(), 1);
        // The second run starts at version 1, so step 1 is not re-run (it
        // would fail: the table exists).
        apply(&mut conn, &steps).unwrap();
        assert_eq!(current_version(&conn).unwrap(), 2);
        conn.execute("INSERT INTO a (x, y) VALUES (1, 2)", [])
            .unwrap();
        apply(&mut conn, &steps).unwrap();
        assert_eq!(current_version(&conn).unwrap(), 2);
    }

    #[test]
    fn failing_step_rolls_back_with_its_version_bump() {
        let mut conn = Connection::open_in_memory().unwrap();
        let steps = [
            "CREATE TABLE a (x INTEGER)",
            "CREATE TABLE b (x INTEGER); CREATE TABLE a (x INTEGER)",
        ];
        let err = apply(&mut conn, &steps).unwrap_err();
        assert!(
            matches!(err, StoreError::Migrate { version: 2, .. }),
            "{err:?}"
        );
        assert_eq!(current_version(&conn).unwrap(), 1);
        assert_eq!(table_names(&conn), ["a"]);
    }

    #[test]
    fn newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        let err = apply(&mut conn, &["CREATE TABLE a (x INTEGER)"]).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::SchemaTooNew {
                    found: 3,
                    supported: 1
                }
            ),
            "{err:?}"
        );
        assert!(table_names(&conn).is_empty());
    }
}
