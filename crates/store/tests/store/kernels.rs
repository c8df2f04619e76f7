//! Kernel rows.

use banger_store::StoreError;

use crate::util::{kernel, temp_store};

#[test]
fn insert_find_list_delete_round_trip() {
    let (_dir, store) = temp_store();
    let mut b = kernel("b-6.6");
    b.version = None;
    let a = kernel("a-6.1");
    store.insert_kernel(&b).unwrap();
    store.insert_kernel(&a).unwrap();
    assert_eq!(store.find_kernel("b-6.6").unwrap().as_ref(), Some(&b));
    assert_eq!(store.find_kernel(&a.id).unwrap().as_ref(), Some(&a));
    assert_eq!(store.get_kernel(&a.id).unwrap().as_ref(), Some(&a));
    assert_eq!(store.list_kernels().unwrap(), [a.clone(), b.clone()]);
    store.delete_kernel(&a.id).unwrap();
    assert_eq!(store.list_kernels().unwrap(), [b]);
    let err = store.delete_kernel(&a.id).unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "kernel", .. }),
        "{err:?}"
    );
}

#[test]
fn duplicate_name_is_name_taken() {
    let (_dir, store) = temp_store();
    store.insert_kernel(&kernel("k")).unwrap();
    let mut dup = kernel("k");
    dup.id = "other".into();
    let err = store.insert_kernel(&dup).unwrap_err();
    assert!(
        matches!(err, StoreError::NameTaken { what: "kernel", .. }),
        "{err:?}"
    );
}
