//! The `vm_forwards` table: uniqueness per host address and port, the
//! VM's existence, listing and deletion with the VM.

use banger_api::forward::PortForward;
use banger_store::{Store, StoreError};

use crate::util::{store_with_image, vm};

fn fwd(vm_id: &str, address: &str, host_port: u16, guest_port: u16) -> PortForward {
    PortForward {
        vm_id: vm_id.into(),
        vm: String::new(),
        address: address.parse().unwrap(),
        host_port,
        guest_port,
        created_at: 1_700_000_000_000,
        listening: false,
        error: None,
    }
}

#[test]
fn forwards_are_unique_per_address_and_port_and_go_with_their_vm() {
    let (dir, store, img) = store_with_image();
    store.insert_vm(&vm("web", 2, &img)).unwrap();
    store.insert_vm(&vm("db", 3, &img)).unwrap();
    store
        .insert_forward(&fwd("vm-web", "127.0.0.1", 8080, 80))
        .unwrap();
    store
        .insert_forward(&fwd("vm-web", "::1", 8080, 80))
        .unwrap();
    store
        .insert_forward(&fwd("vm-db", "127.0.0.1", 5432, 5432))
        .unwrap();

    let err = store
        .insert_forward(&fwd("vm-db", "127.0.0.1", 8080, 81))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NameTaken { what: "forward", name } if name == "127.0.0.1:8080"),
        "{err:?}"
    );
    let err = store
        .insert_forward(&fwd("vm-gone", "127.0.0.1", 9000, 80))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "VM", .. }),
        "{err:?}"
    );

    let web = store.vm_forwards("vm-web").unwrap();
    assert_eq!(web.len(), 2);
    assert!(web.iter().all(|f| f.vm == "web" && f.guest_port == 80));
    let all: Vec<String> = store
        .list_forwards()
        .unwrap()
        .iter()
        .map(|f| format!("{} {}", f.vm, f.host_endpoint()))
        .collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0], "db 127.0.0.1:5432");

    // Kept across reopening.
    let path = store.path().unwrap().to_path_buf();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!(store.list_forwards().unwrap().len(), 3);

    assert!(store.delete_forward("::1".parse().unwrap(), 8080).unwrap());
    assert!(!store.delete_forward("::1".parse().unwrap(), 8080).unwrap());
    assert_eq!(store.vm_forwards("vm-web").unwrap().len(), 1);

    // Deleting the VM deletes its forwards.
    store.delete_vm("vm-web").unwrap();
    assert!(store.vm_forwards("vm-web").unwrap().is_empty());
    assert_eq!(store.list_forwards().unwrap().len(), 1);
    drop(dir);
}
