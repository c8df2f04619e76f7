//! Operation rows: upsert, prune and failing interrupted ones.

use banger_api::{ErrorKind, OpState, RpcErrorBody};

use crate::util::{operation, temp_store};

#[test]
fn upsert_inserts_then_replaces() {
    let (_dir, store) = temp_store();
    let mut op = operation("op1", OpState::Running, 1_000);
    store.upsert_operation(&op, Some("vm-web")).unwrap();
    assert_eq!(store.get_operation("op1").unwrap().as_ref(), Some(&op));

    op.stage = "starting VMM".into();
    op.step = 3;
    op.state = OpState::Failed;
    op.error = Some(RpcErrorBody {
        kind: ErrorKind::Internal,
        message: "firecracker exited".into(),
    });
    op.updated_at = 2_000;
    store.upsert_operation(&op, None).unwrap();
    assert_eq!(store.get_operation("op1").unwrap().as_ref(), Some(&op));
    assert_eq!(store.list_operations().unwrap(), [op]);
    assert_eq!(store.get_operation("nope").unwrap(), None);
}

#[test]
fn list_is_oldest_first() {
    let (_dir, store) = temp_store();
    let late = operation("late", OpState::Running, 5_000);
    let early = operation("early", OpState::Succeeded, 1_000);
    store.upsert_operation(&late, None).unwrap();
    store.upsert_operation(&early, None).unwrap();
    let ids: Vec<String> = store
        .list_operations()
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(ids, ["early", "late"]);
}

#[test]
fn prune_removes_only_old_finished_operations() {
    let (_dir, store) = temp_store();
    for op in [
        operation("old-ok", OpState::Succeeded, 1_000),
        operation("old-failed", OpState::Failed, 1_000),
        operation("old-running", OpState::Running, 1_000),
        operation("new-ok", OpState::Succeeded, 9_000),
    ] {
        store.upsert_operation(&op, None).unwrap();
    }
    assert_eq!(store.prune_operations(5_000).unwrap(), 2);
    let mut ids: Vec<String> = store
        .list_operations()
        .unwrap()
        .into_iter()
        .map(|o| o.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["new-ok", "old-running"]);
    assert_eq!(store.prune_operations(5_000).unwrap(), 0);
}

#[test]
fn fail_running_marks_only_running_operations() {
    let (_dir, store) = temp_store();
    let done = operation("done", OpState::Succeeded, 1_000);
    store.upsert_operation(&done, None).unwrap();
    store
        .upsert_operation(&operation("a", OpState::Running, 1_000), None)
        .unwrap();
    store
        .upsert_operation(&operation("b", OpState::Running, 1_000), None)
        .unwrap();

    assert_eq!(
        store
            .fail_running_operations("the daemon restarted")
            .unwrap(),
        2
    );
    for id in ["a", "b"] {
        let op = store.get_operation(id).unwrap().unwrap();
        assert_eq!(op.state, OpState::Failed);
        assert_eq!(
            op.error,
            Some(RpcErrorBody {
                kind: ErrorKind::Internal,
                message: "the daemon restarted".into()
            })
        );
        assert!(op.updated_at > 1_000);
        assert_eq!(op.stage, "copying root disk", "progress is kept");
    }
    assert_eq!(store.get_operation("done").unwrap().as_ref(), Some(&done));
    assert_eq!(store.fail_running_operations("again").unwrap(), 0);
}
