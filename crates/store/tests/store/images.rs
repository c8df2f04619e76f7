//! Image rows and the in-use check on delete.

use banger_api::ErrorKind;
use banger_store::StoreError;

use crate::util::{image, store_with_image, temp_store, vm};

#[test]
fn insert_get_find_list_round_trip() {
    let (_dir, store) = temp_store();
    let mut b = image("bookworm");
    b.initrd_path = Some("/boot/initrd".into());
    let a = image("alpine");
    store.insert_image(&b).unwrap();
    store.insert_image(&a).unwrap();
    assert_eq!(store.get_image(&b.id).unwrap().as_ref(), Some(&b));
    assert_eq!(store.find_image("bookworm").unwrap().as_ref(), Some(&b));
    assert_eq!(store.find_image(&a.id).unwrap().as_ref(), Some(&a));
    assert_eq!(store.find_image("nope").unwrap(), None);
    assert_eq!(store.list_images().unwrap(), [a, b]);
}

#[test]
fn duplicate_name_is_name_taken() {
    let (_dir, store) = temp_store();
    store.insert_image(&image("debian")).unwrap();
    let mut dup = image("debian");
    dup.id = "other".into();
    let err = store.insert_image(&dup).unwrap_err();
    assert!(
        matches!(&err, StoreError::NameTaken { what: "image", name } if name == "debian"),
        "{err:?}"
    );
}

#[test]
fn delete_is_refused_while_vms_use_the_image() {
    let (_dir, store, img) = store_with_image();
    store.insert_vm(&vm("web", 2, &img)).unwrap();
    store.insert_vm(&vm("db", 3, &img)).unwrap();
    let err = store.delete_image(&img.id).unwrap_err();
    match &err {
        StoreError::ImageInUse { name, vms } => {
            assert_eq!(name, "img");
            assert_eq!(*vms, ["db", "web"]);
        }
        other => panic!("expected ImageInUse, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains("db, web"), "{err}");
    assert!(store.get_image(&img.id).unwrap().is_some());

    store.delete_vm("vm-web").unwrap();
    store.delete_vm("vm-db").unwrap();
    store.delete_image(&img.id).unwrap();
    assert_eq!(store.get_image(&img.id).unwrap(), None);
}

#[test]
fn delete_of_a_missing_image_is_not_found() {
    let (_dir, store) = temp_store();
    let err = store.delete_image("nope").unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "image", .. }),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[test]
fn seed_and_work_seed_are_recorded_and_updated() {
    let (_dir, store, mut img) = store_with_image();
    assert_eq!(store.get_image(&img.id).unwrap().unwrap().seed, None);
    img.seed = Some(banger_api::ImageSeed {
        guest_user: "dev".into(),
        key_fingerprint: "sha256:aa".into(),
        agent_sha256: None,
        seeded_at: 5,
    });
    img.work_seed_path = Some("/x/work-seed.ext4".into());
    store.update_image_seed(&img).unwrap();
    assert_eq!(store.get_image(&img.id).unwrap().unwrap(), img);
    let mut other = image("other");
    other.seed = img.seed.clone();
    store.insert_image(&other).unwrap();
    assert_eq!(store.find_image("other").unwrap().unwrap().seed, img.seed);
    let mut missing = image("missing");
    missing.id = "nope".into();
    assert!(store.update_image_seed(&missing).is_err());
}
