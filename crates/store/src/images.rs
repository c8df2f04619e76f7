//! The `images` table: registered root filesystems and the kernels they boot
//! with. An image cannot be deleted while a VM row still refers to it.

use banger_api::Image;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::sql::{self, Violation};
use crate::{Store, StoreError, vms};

/// The columns in [`from_row`]'s order.
macro_rules! columns {
    () => {
        "id, name, rootfs_path, kernel_path, initrd_path, size_bytes, source, created_at, seed_json, \
         work_seed_path"
    };
}

const INSERT: &str = concat!(
    "INSERT INTO images (",
    columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
);
const SELECT_ALL: &str = concat!("SELECT ", columns!(), " FROM images ORDER BY name");
const SELECT_BY_ID: &str = concat!("SELECT ", columns!(), " FROM images WHERE id = ?1");
const SELECT_BY_NAME: &str = concat!("SELECT ", columns!(), " FROM images WHERE name = ?1");

impl Store {
    /// Inserts a new image; fails with [`StoreError::NameTaken`] or
    /// [`StoreError::IdTaken`] on a duplicate.
    pub fn insert_image(&self, image: &Image) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.prepare_cached(INSERT)
                .and_then(|mut stmt| {
                    stmt.execute(params![
                        image.id,
                        image.name,
                        image.rootfs_path,
                        image.kernel_path,
                        image.initrd_path,
                        image.size_bytes,
                        image.source,
                        image.created_at,
                        seed_json(image)?,
                        image.work_seed_path,
                    ])
                })
                .map_err(|err| match sql::violation(&err) {
                    Some(Violation::Unique("images.name")) => StoreError::NameTaken {
                        what: "image",
                        name: image.name.clone(),
                    },
                    Some(Violation::Unique("images.id")) => StoreError::IdTaken {
                        what: "image",
                        id: image.id.clone(),
                    },
                    _ => StoreError::Sqlite {
                        op: "save the new image",
                        source: err,
                    },
                })?;
            Ok(())
        })
    }

    /// The image with this id.
    pub fn get_image(&self, id: &str) -> Result<Option<Image>, StoreError> {
        self.with_conn(|conn| select_by(conn, SELECT_BY_ID, id))
    }

    /// The image with this name, or else the image with this id.
    pub fn find_image(&self, name_or_id: &str) -> Result<Option<Image>, StoreError> {
        self.with_conn(|conn| match select_by(conn, SELECT_BY_NAME, name_or_id)? {
            Some(image) => Ok(Some(image)),
            None => select_by(conn, SELECT_BY_ID, name_or_id),
        })
    }

    /// All images, ordered by name.
    pub fn list_images(&self) -> Result<Vec<Image>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare_cached(SELECT_ALL)
                .map_err(StoreError::sqlite("list images"))?;
            stmt.query_map([], from_row)
                .and_then(|rows| rows.collect())
                .map_err(StoreError::sqlite("list images"))
        })
    }

    /// Records a new seed (and work seed) for the image with this id.
    pub fn update_image_seed(&self, image: &Image) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let n = conn
                .prepare_cached(
                    "UPDATE images SET seed_json = ?2, work_seed_path = ?3 WHERE id = ?1",
                )
                .and_then(|mut stmt| {
                    stmt.execute(params![image.id, seed_json(image)?, image.work_seed_path])
                })
                .map_err(StoreError::sqlite("save an image's seed"))?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "image",
                    key: image.id.clone(),
                });
            }
            Ok(())
        })
    }

    /// Deletes the image with this id.
    ///
    /// Refuses with [`StoreError::ImageInUse`], naming the VMs, while any VM
    /// uses it; the check and the delete share one transaction.
    pub fn delete_image(&self, id: &str) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::sqlite("begin deleting an image"))?;
            let image = select_by(&tx, SELECT_BY_ID, id)?.ok_or_else(|| StoreError::NotFound {
                what: "image",
                key: id.to_string(),
            })?;
            let vms = vms::names_using_image(&tx, id)?;
            if !vms.is_empty() {
                return Err(StoreError::ImageInUse {
                    name: image.name,
                    vms,
                });
            }
            tx.execute("DELETE FROM images WHERE id = ?1", [id])
                .map_err(StoreError::sqlite("delete an image"))?;
            tx.commit()
                .map_err(StoreError::sqlite("commit deleting an image"))
        })
    }
}

/// The one image `query` (`SELECT_BY_ID` or `SELECT_BY_NAME`) finds for `key`.
fn select_by(conn: &Connection, query: &str, key: &str) -> Result<Option<Image>, StoreError> {
    conn.prepare_cached(query)
        .and_then(|mut stmt| stmt.query_row([key], from_row).optional())
        .map_err(StoreError::sqlite("read an image"))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<Image> {
    Ok(Image {
        id: row.get(0)?,
        name: row.get(1)?,
        rootfs_path: row.get(2)?,
        kernel_path: row.get(3)?,
        initrd_path: row.get(4)?,
        size_bytes: row.get(5)?,
        source: row.get(6)?,
        created_at: row.get(7)?,
        seed: row
            .get::<_, Option<String>>(8)?
            .map(|j| {
                serde_json::from_str(&j).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        8,
                        rusqlite::types::Type::Text,
                        e.into(),
                    )
                })
            })
            .transpose()?,
        work_seed_path: row.get(9)?,
    })
}

fn seed_json(image: &Image) -> rusqlite::Result<Option<String>> {
    image
        .seed
        .as_ref()
        .map(|s| {
            serde_json::to_string(s).map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))
        })
        .transpose()
}
