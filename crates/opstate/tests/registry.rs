//! Behaviour of `Registry` as the daemon uses it: progress reporting,
//! watching, pruning and concurrent updates.

use std::sync::Arc;
use std::time::Duration;

use banger_opstate::{AsyncOp, Registry};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Op {
    step: u32,
    done: bool,
}

impl AsyncOp for Op {
    fn is_done(&self) -> bool {
        self.done
    }
}

fn running(step: u32) -> Op {
    Op { step, done: false }
}

/// Reads values until the operation is done, forwarding each one.
async fn watch_to_end(mut rx: tokio::sync::watch::Receiver<Op>, seen: mpsc::UnboundedSender<Op>) {
    while rx.changed().await.is_ok() {
        let op = rx.borrow_and_update().clone();
        let done = op.done;
        seen.send(op).unwrap();
        if done {
            return;
        }
    }
}

#[tokio::test]
async fn watcher_sees_progress_then_the_final_value() {
    let reg = Arc::new(Registry::new());
    reg.insert("op", running(0));
    let rx = reg.subscribe("op").unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let watcher = tokio::spawn(watch_to_end(rx, seen_tx));

    // The current value first.
    assert_eq!(seen.recv().await, Some(running(0)));
    // Then each change; waiting for each keeps them from being coalesced.
    for step in 1..=3 {
        assert_eq!(reg.update("op", |op| op.step = step), Some(running(step)));
        assert_eq!(seen.recv().await, Some(running(step)));
    }
    reg.update("op", |op| op.done = true);
    assert_eq!(
        seen.recv().await,
        Some(Op {
            step: 3,
            done: true
        })
    );
    watcher.await.unwrap();
    assert_eq!(
        seen.recv().await,
        None,
        "the watcher stopped after the final value"
    );
}

#[tokio::test]
async fn watcher_never_misses_the_final_value() {
    let reg = Registry::new();
    reg.insert("op", running(0));
    let mut rx = reg.subscribe("op").unwrap();
    // Many changes without yielding: the watcher may not see each one, but
    // it must end on the final value.
    for step in 1..=100 {
        reg.update("op", |op| op.step = step);
    }
    reg.update("op", |op| op.done = true);
    let last = rx.wait_for(AsyncOp::is_done).await.unwrap().clone();
    assert_eq!(
        last,
        Op {
            step: 100,
            done: true
        }
    );
}

#[tokio::test]
async fn subscribing_after_completion_yields_the_final_value() {
    let reg = Registry::new();
    reg.insert("op", running(0));
    reg.update("op", |op| {
        op.step = 7;
        op.done = true;
    });
    let mut rx = reg.subscribe("op").unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("the first changed() returns at once")
        .unwrap();
    assert_eq!(
        *rx.borrow_and_update(),
        Op {
            step: 7,
            done: true
        }
    );

    let rx2 = reg.subscribe("op").unwrap();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    watch_to_end(rx2, seen_tx).await;
    assert_eq!(
        seen.recv().await,
        Some(Op {
            step: 7,
            done: true
        })
    );
}

#[tokio::test]
async fn removal_closes_watchers_but_keeps_their_last_value() {
    let reg = Registry::new();
    reg.insert("op", running(1));
    let mut rx = reg.subscribe("op").unwrap();
    rx.borrow_and_update();
    assert_eq!(reg.remove("op"), Some(running(1)));
    assert!(rx.changed().await.is_err());
    assert_eq!(*rx.borrow(), running(1));
    assert_eq!(reg.get("op"), None);
    assert_eq!(reg.remove("op"), None);
}

#[test]
fn unknown_ids_give_none() {
    let reg: Registry<Op> = Registry::default();
    assert_eq!(reg.get("x"), None);
    assert_eq!(reg.update("x", |op| op.step = 1), None);
    assert!(reg.subscribe("x").is_none());
    assert!(reg.is_empty());
}

#[test]
fn list_returns_current_values_ordered_by_id() {
    let reg = Registry::new();
    reg.insert("b", running(2));
    reg.insert("a", running(1));
    reg.insert("c", running(3));
    reg.update("b", |op| op.step = 20);
    assert_eq!(reg.list(), [running(1), running(20), running(3)]);
    assert_eq!(reg.len(), 3);
}

#[test]
fn insert_replaces_an_entry_with_the_same_id() {
    let reg = Registry::new();
    reg.insert("a", running(1));
    reg.insert("a", running(9));
    assert_eq!(reg.get("a"), Some(running(9)));
    assert_eq!(reg.len(), 1);
}

#[test]
fn prune_drops_only_operations_finished_long_enough_ago() {
    let reg = Registry::new();
    reg.insert("running", running(0));
    reg.insert("done-by-update", running(0));
    reg.update("done-by-update", |op| op.done = true);
    reg.insert(
        "inserted-done",
        Op {
            step: 1,
            done: true,
        },
    );

    assert_eq!(
        reg.prune(Duration::from_secs(3600)),
        0,
        "nothing is that old"
    );
    std::thread::sleep(Duration::from_millis(300));
    reg.insert("just-done", running(0));
    reg.update("just-done", |op| op.done = true);

    assert_eq!(reg.prune(Duration::from_millis(200)), 2);
    let mut left: Vec<Op> = reg.list();
    left.sort_by_key(|op| op.done);
    assert_eq!(
        left,
        [
            running(0),
            Op {
                step: 0,
                done: true
            }
        ]
    );
    assert!(reg.get("just-done").is_some());
    assert!(reg.get("running").is_some());

    assert_eq!(reg.prune(Duration::ZERO), 1);
    assert_eq!(
        reg.list(),
        [running(0)],
        "running operations are never pruned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_from_several_tasks_are_all_kept() {
    const TASKS: u32 = 8;
    const UPDATES: u32 = 250;
    let reg = Arc::new(Registry::new());
    reg.insert("op", running(0));

    // A watcher checking that progress never goes backwards.
    let mut rx = reg.subscribe("op").unwrap();
    let watcher = tokio::spawn(async move {
        let mut last = 0;
        while rx.changed().await.is_ok() {
            let op = rx.borrow_and_update().clone();
            assert!(op.step >= last, "went back from {last} to {}", op.step);
            last = op.step;
            if op.done {
                return op;
            }
        }
        panic!("channel closed before the operation finished");
    });

    let workers: Vec<_> = (0..TASKS)
        .map(|_| {
            let reg = reg.clone();
            tokio::spawn(async move {
                for _ in 0..UPDATES {
                    reg.update("op", |op| op.step += 1).unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    reg.update("op", |op| op.done = true);

    let last = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        last,
        Op {
            step: TASKS * UPDATES,
            done: true
        }
    );
    assert_eq!(reg.get("op").unwrap().step, TASKS * UPDATES);
}

#[test]
fn the_registry_lock_is_not_held_while_an_update_runs() {
    let reg = Registry::new();
    reg.insert("a", running(0));
    reg.insert("b", running(5));
    // Reading another operation from inside an update would deadlock if the
    // registry's own lock were held around the closure.
    let got = reg.update("a", |op| op.step = reg.get("b").unwrap().step + 1);
    assert_eq!(got, Some(running(6)));
    assert_eq!(reg.list().len(), 2);
}

#[test]
fn registry_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Registry<Op>>();
}
