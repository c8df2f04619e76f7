//! Many threads sharing one `Arc<Store>`.

use std::sync::{Arc, Barrier};
use std::thread;

use banger_api::VmState;
use banger_store::StoreError;

use crate::util::{store_with_image, vm};

#[test]
fn twenty_threads_inserting_distinct_vms_all_succeed() {
    let (_dir, store, img) = store_with_image();
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(20));
    let handles: Vec<_> = (0..20u8)
        .map(|i| {
            let (store, barrier, img) = (store.clone(), barrier.clone(), img.clone());
            thread::spawn(move || {
                barrier.wait();
                store.insert_vm(&vm(&format!("vm{i:02}"), i + 2, &img))
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap().unwrap();
    }
    assert_eq!(store.list_vms().unwrap().len(), 20);
}

#[test]
fn two_threads_racing_for_one_name_exactly_one_wins() {
    for _ in 0..10 {
        let (_dir, store, img) = store_with_image();
        let store = Arc::new(store);
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2u8)
            .map(|i| {
                let (store, barrier) = (store.clone(), barrier.clone());
                let mut v = vm("contested", i + 2, &img);
                v.id = format!("id{i}");
                thread::spawn(move || {
                    barrier.wait();
                    store.insert_vm(&v)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StoreError::NameTaken { .. }))),
            "{results:?}"
        );
        assert_eq!(store.list_vms().unwrap().len(), 1);
    }
}

#[test]
fn racing_transitions_from_one_state_let_exactly_one_through() {
    let (_dir, store, img) = store_with_image();
    let web = vm("web", 2, &img);
    store.insert_vm(&web).unwrap();
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (store, barrier, id) = (store.clone(), barrier.clone(), web.id.clone());
            thread::spawn(move || {
                barrier.wait();
                store.transition_vm(&id, &[VmState::Created], VmState::Starting, |_| {})
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(StoreError::WrongState { .. })))
    );
}
