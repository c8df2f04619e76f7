//! Opening, migrating and refusing databases.

use banger_store::{SCHEMA_VERSION, Store, StoreError};

use crate::util::{image, temp_store};

#[test]
fn open_creates_the_schema_from_empty() {
    let (dir, store) = temp_store();
    assert!(dir.path().join("state/banger.db").exists());
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("state/banger.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    let tables: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        tables,
        ["images", "kernels", "operations", "vm_forwards", "vms"]
    );
    let store = Store::open(dir.path().join("state/banger.db")).unwrap();
    assert!(store.list_vms().unwrap().is_empty());
    assert!(store.list_images().unwrap().is_empty());
    assert!(store.list_kernels().unwrap().is_empty());
    assert!(store.list_operations().unwrap().is_empty());
}

#[test]
fn reopening_is_idempotent_and_keeps_data() {
    let (dir, store) = temp_store();
    let path = store.path().unwrap().to_path_buf();
    store.insert_image(&image("debian")).unwrap();
    drop(store);

    for _ in 0..2 {
        let store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        let names: Vec<String> = store
            .list_images()
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect();
        assert_eq!(names, ["debian"]);
    }
    drop(dir);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    match &err {
        StoreError::SchemaTooNew { found, supported } => {
            assert_eq!(*found, SCHEMA_VERSION + 1);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    assert!(err.to_string().contains("upgrade banger"), "{err}");
    // Refusing must not have touched the file's version.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION + 1);
}

#[test]
fn open_fails_cleanly_when_the_directory_cannot_be_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let err = Store::open(file.join("banger.db")).unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
}

#[test]
fn in_memory_store_has_the_schema() {
    let store = Store::open_in_memory().unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    assert!(store.path().is_none());
    store.insert_image(&image("x")).unwrap();
    assert_eq!(store.list_images().unwrap().len(), 1);
}
