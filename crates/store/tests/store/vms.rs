//! VM rows: round trips, uniqueness and state transitions.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use banger_api::{ErrorKind, VmState};
use banger_store::{StoreError, now_millis};

use crate::util::{store_with_image, vm};

#[test]
fn insert_get_find_round_trip() {
    let (_dir, store, img) = store_with_image();
    let mut web = vm("web", 2, &img);
    web.started_at = Some(1_700_000_000_500);
    web.last_error = Some("boom".into());
    store.insert_vm(&web).unwrap();

    assert_eq!(store.get_vm(&web.id).unwrap().as_ref(), Some(&web));
    assert_eq!(store.find_vm("web").unwrap().as_ref(), Some(&web));
    assert_eq!(store.find_vm(&web.id).unwrap().as_ref(), Some(&web));
    assert_eq!(store.get_vm("web").unwrap(), None, "get_vm takes ids only");
    assert_eq!(store.find_vm("nope").unwrap(), None);
}

#[test]
fn find_prefers_the_name_over_the_id() {
    let (_dir, store, img) = store_with_image();
    let a = vm("a", 2, &img);
    let mut b = vm("b", 3, &img);
    // B is named like A's id.
    b.name = a.id.clone();
    store.insert_vm(&a).unwrap();
    store.insert_vm(&b).unwrap();
    assert_eq!(store.find_vm(&a.id).unwrap().unwrap().id, b.id);
}

#[test]
fn list_is_ordered_by_name() {
    let (_dir, store, img) = store_with_image();
    for (i, name) in ["delta", "alpha", "charlie", "bravo"].iter().enumerate() {
        store.insert_vm(&vm(name, i as u8 + 2, &img)).unwrap();
    }
    let names: Vec<String> = store
        .list_vms()
        .unwrap()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert_eq!(names, ["alpha", "bravo", "charlie", "delta"]);
}

#[test]
fn listing_100_vms_takes_well_under_a_millisecond() {
    let (_dir, store, img) = store_with_image();
    for i in 0..100u8 {
        store
            .insert_vm(&vm(&format!("vm{i:03}"), i + 2, &img))
            .unwrap();
    }
    // Best of several runs, so a scheduler hiccup cannot fail the test.
    let mut best = Duration::MAX;
    for _ in 0..20 {
        let start = Instant::now();
        let vms = store.list_vms().unwrap();
        best = best.min(start.elapsed());
        assert_eq!(vms.len(), 100);
    }
    assert!(best < Duration::from_millis(1), "list_vms took {best:?}");
}

#[test]
fn update_rewrites_the_whole_row() {
    let (_dir, store, img) = store_with_image();
    let mut web = vm("web", 2, &img);
    store.insert_vm(&web).unwrap();
    web.name = "web2".into();
    web.vcpus = 8;
    web.memory_mib = 4096;
    web.disk_bytes = u64::from(u32::MAX) * 4;
    web.guest_ip = Ipv4Addr::new(172, 16, 0, 99);
    web.guest_mac = "06:00:ac:10:00:63".into();
    web.state = VmState::Stopped;
    web.updated_at = 42;
    web.last_error = Some("x".into());
    store.update_vm(&web).unwrap();
    assert_eq!(store.get_vm(&web.id).unwrap().as_ref(), Some(&web));
    assert_eq!(store.find_vm("web").unwrap(), None);
}

#[test]
fn update_of_a_missing_vm_is_not_found() {
    let (_dir, store, img) = store_with_image();
    let err = store.update_vm(&vm("ghost", 2, &img)).unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "VM", .. }),
        "{err:?}"
    );
}

#[test]
fn delete_removes_the_row() {
    let (_dir, store, img) = store_with_image();
    let web = vm("web", 2, &img);
    store.insert_vm(&web).unwrap();
    store.delete_vm(&web.id).unwrap();
    assert_eq!(store.get_vm(&web.id).unwrap(), None);
    assert!(store.list_vms().unwrap().is_empty());
    let err = store.delete_vm(&web.id).unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
    // The name and address are free again.
    store.insert_vm(&web).unwrap();
}

#[test]
fn duplicate_name_is_name_taken() {
    let (_dir, store, img) = store_with_image();
    store.insert_vm(&vm("web", 2, &img)).unwrap();
    let mut dup = vm("web", 3, &img);
    dup.id = "other".into();
    let err = store.insert_vm(&dup).unwrap_err();
    match &err {
        StoreError::NameTaken { what, name } => {
            assert_eq!(*what, "VM");
            assert_eq!(name, "web");
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.to_string(), "VM \"web\" already exists");
    assert_eq!(store.list_vms().unwrap().len(), 1);
}

#[test]
fn duplicate_address_is_address_taken() {
    let (_dir, store, img) = store_with_image();
    store.insert_vm(&vm("a", 2, &img)).unwrap();
    let mut b = vm("b", 2, &img);
    b.guest_mac = "06:00:00:00:00:01".into();
    let err = store.insert_vm(&b).unwrap_err();
    assert!(
        matches!(err, StoreError::AddressTaken { ip } if ip == Ipv4Addr::new(172, 16, 0, 2)),
        "{err:?}"
    );
}

#[test]
fn duplicate_mac_is_mac_taken() {
    let (_dir, store, img) = store_with_image();
    store.insert_vm(&vm("a", 2, &img)).unwrap();
    let mut b = vm("b", 3, &img);
    b.guest_mac = vm("a", 2, &img).guest_mac;
    let err = store.insert_vm(&b).unwrap_err();
    assert!(matches!(err, StoreError::MacTaken { .. }), "{err:?}");
}

#[test]
fn duplicate_id_is_id_taken() {
    let (_dir, store, img) = store_with_image();
    store.insert_vm(&vm("a", 2, &img)).unwrap();
    let mut b = vm("b", 3, &img);
    b.id = vm("a", 2, &img).id;
    let err = store.insert_vm(&b).unwrap_err();
    assert!(
        matches!(err, StoreError::IdTaken { what: "VM", .. }),
        "{err:?}"
    );
}

#[test]
fn renaming_onto_a_taken_name_is_name_taken() {
    let (_dir, store, img) = store_with_image();
    store.insert_vm(&vm("a", 2, &img)).unwrap();
    let mut b = vm("b", 3, &img);
    store.insert_vm(&b).unwrap();
    b.name = "a".into();
    let err = store.update_vm(&b).unwrap_err();
    assert!(matches!(err, StoreError::NameTaken { .. }), "{err:?}");
    assert_eq!(store.get_vm(&b.id).unwrap().unwrap().name, "b");
}

#[test]
fn vm_with_an_unknown_image_is_refused() {
    let (_dir, store, img) = store_with_image();
    let mut orphan = vm("orphan", 2, &img);
    orphan.image_id = "missing".into();
    let err = store.insert_vm(&orphan).unwrap_err();
    assert!(
        matches!(&err, StoreError::NotFound { what: "image", key } if key == "missing"),
        "{err:?}"
    );
}

#[test]
fn used_guest_ips_and_image_users() {
    let (_dir, store, img) = store_with_image();
    let other = crate::util::image("other");
    store.insert_image(&other).unwrap();
    store.insert_vm(&vm("b", 3, &img)).unwrap();
    store.insert_vm(&vm("a", 2, &img)).unwrap();
    store.insert_vm(&vm("c", 4, &other)).unwrap();

    let mut ips = store.used_guest_ips().unwrap();
    ips.sort();
    assert_eq!(
        ips,
        [2, 3, 4].map(|n| Ipv4Addr::new(172, 16, 0, n)).to_vec()
    );
    assert_eq!(store.vm_names_using_image(&img.id).unwrap(), ["a", "b"]);
    assert_eq!(store.vm_names_using_image(&other.id).unwrap(), ["c"]);
    assert!(store.vm_names_using_image("none").unwrap().is_empty());
}

#[test]
fn transition_applies_state_patch_and_timestamp() {
    let (_dir, store, img) = store_with_image();
    let web = vm("web", 2, &img);
    store.insert_vm(&web).unwrap();
    let before = now_millis();
    let new = store
        .transition_vm(
            &web.id,
            &[VmState::Created, VmState::Stopped],
            VmState::Starting,
            |vm| {
                vm.started_at = Some(123);
                vm.last_error = None;
            },
        )
        .unwrap();
    assert_eq!(new.state, VmState::Starting);
    assert_eq!(new.started_at, Some(123));
    assert!(new.updated_at >= before);
    assert_eq!(store.get_vm(&web.id).unwrap().as_ref(), Some(&new));
}

#[test]
fn transition_from_the_wrong_state_is_refused_and_changes_nothing() {
    let (_dir, store, img) = store_with_image();
    let mut web = vm("web", 2, &img);
    web.state = VmState::Running;
    store.insert_vm(&web).unwrap();
    let err = store
        .transition_vm(
            &web.id,
            &[VmState::Created, VmState::Stopped],
            VmState::Starting,
            |vm| vm.vcpus = 64,
        )
        .unwrap_err();
    match &err {
        StoreError::WrongState {
            name,
            state,
            expected,
        } => {
            assert_eq!(name, "web");
            assert_eq!(*state, VmState::Running);
            assert_eq!(*expected, [VmState::Created, VmState::Stopped]);
        }
        other => panic!("expected WrongState, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(store.get_vm(&web.id).unwrap().as_ref(), Some(&web));
}

#[test]
fn transition_with_empty_from_accepts_any_state() {
    let (_dir, store, img) = store_with_image();
    let mut web = vm("web", 2, &img);
    web.state = VmState::Error;
    store.insert_vm(&web).unwrap();
    let new = store
        .transition_vm(&web.id, &[], VmState::Stopped, |_| {})
        .unwrap();
    assert_eq!(new.state, VmState::Stopped);
}

#[test]
fn transition_of_a_missing_vm_is_not_found() {
    let (_dir, store, _img) = store_with_image();
    let err = store
        .transition_vm("nope", &[], VmState::Stopped, |_| {})
        .unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { what: "VM", .. }),
        "{err:?}"
    );
}

#[test]
fn transition_whose_patch_breaks_uniqueness_rolls_back() {
    let (_dir, store, img) = store_with_image();
    store.insert_vm(&vm("a", 2, &img)).unwrap();
    let b = vm("b", 3, &img);
    store.insert_vm(&b).unwrap();
    let err = store
        .transition_vm(&b.id, &[VmState::Created], VmState::Starting, |vm| {
            vm.guest_ip = Ipv4Addr::new(172, 16, 0, 2)
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::AddressTaken { .. }), "{err:?}");
    assert_eq!(store.get_vm(&b.id).unwrap().as_ref(), Some(&b));
}

#[test]
fn a_panicking_patch_leaves_the_store_usable() {
    let (_dir, store, img) = store_with_image();
    let web = vm("web", 2, &img);
    store.insert_vm(&web).unwrap();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.transition_vm(&web.id, &[], VmState::Running, |_| panic!("patch failed"))
    }));
    assert!(result.is_err());
    assert_eq!(store.get_vm(&web.id).unwrap().as_ref(), Some(&web));
    store
        .transition_vm(&web.id, &[VmState::Created], VmState::Starting, |_| {})
        .unwrap();
}

#[test]
fn provisioning_record_round_trips_and_goes_with_the_vm() {
    use banger_api::{ProvisionRun, ProvisionState};
    let (_dir, store, img) = store_with_image();
    let web = vm("web", 2, &img);
    store.insert_vm(&web).unwrap();
    assert_eq!(store.vm_provision(&web.id).unwrap(), vec![]);
    let runs = vec![
        ProvisionRun {
            script: "setup.sh".into(),
            state: ProvisionState::Failed,
            exit_code: Some(3),
            started_at: Some(1),
            finished_at: Some(2),
        },
        ProvisionRun {
            script: "more.sh".into(),
            state: ProvisionState::Pending,
            exit_code: None,
            started_at: None,
            finished_at: None,
        },
    ];
    store.set_vm_provision(&web.id, &runs).unwrap();
    assert_eq!(store.vm_provision(&web.id).unwrap(), runs);
    // Other columns are untouched.
    assert_eq!(store.get_vm(&web.id).unwrap().as_ref(), Some(&web));
    assert!(matches!(
        store.set_vm_provision("nope", &runs),
        Err(StoreError::NotFound { .. })
    ));
    store.delete_vm(&web.id).unwrap();
    assert_eq!(store.vm_provision(&web.id).unwrap(), vec![]);
}
