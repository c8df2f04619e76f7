//! The operation tracker: the asynchronous operations (`vm.create`,
//! `image.pull`, `image.build`) a caller follows with `operation.watch`.
//! One [`OpTracker`] per service keeps them in memory (a
//! `banger_opstate::Registry`, so watchers see every change) and writes
//! them to the store as each kind's [`Persist`] says (`operation.list` and
//! `operation.get` of a pruned operation read the store).

use std::sync::Arc;

use banger_api::{OpState, Operation, RpcErrorBody};
use banger_opstate::{AsyncOp, Registry};
use banger_store::Store;

use crate::common::error::{DaemonError, to_rpc};

/// When an operation's record goes to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Persist {
    /// At its end only (`image.pull` of a bundle).
    AtEnd,
    /// At its start and its end (`image.pull` from a registry, `image.build`).
    AtStartAndEnd,
    /// At every change, bound to the VM (`vm.create`).
    Always {
        /// The VM the operation is about.
        vm_id: String,
    },
}

/// An operation as kept in the registry, with how it is recorded.
#[derive(Debug, Clone)]
pub struct OpEntry(pub Operation, Persist);

impl AsyncOp for OpEntry {
    fn is_done(&self) -> bool {
        self.0.state.is_done()
    }
}

/// The operations of one service.
#[derive(Debug)]
pub struct OpTracker {
    ops: Registry<OpEntry>,
    store: Arc<Store>,
}

impl OpTracker {
    /// An empty tracker recording into `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self {
            ops: Registry::new(),
            store,
        }
    }

    /// Start a running operation `kind` on `subject` with `steps` steps
    /// (stage `queued`, step 0).
    pub fn start(&self, kind: &str, subject: String, steps: u32, persist: Persist) -> Operation {
        let now = banger_store::now_millis();
        let op = Operation {
            id: banger_store::new_id(),
            kind: kind.into(),
            subject,
            state: OpState::Running,
            stage: "queued".into(),
            step: 0,
            steps,
            error: None,
            created_at: now,
            updated_at: now,
        };
        let record = persist != Persist::AtEnd;
        self.ops.insert(op.id.clone(), OpEntry(op.clone(), persist));
        if record {
            self.persist(&op.id);
        }
        op
    }

    /// Move operation `id` to step `step`, `stage`.
    pub fn stage(&self, id: &str, step: u32, stage: &str) {
        let entry = self.ops.update(id, |o| {
            o.0.step = step;
            o.0.stage = stage.to_string();
            o.0.updated_at = banger_store::now_millis();
        });
        if entry.is_some_and(|e| matches!(e.1, Persist::Always { .. })) {
            self.persist(id);
        }
    }

    /// Rename the operation's subject (a pull learns the image's name).
    pub fn set_subject(&self, id: &str, subject: &str) {
        self.ops.update(id, |o| o.0.subject = subject.to_string());
    }

    /// End operation `id`: `Ok(stage)` succeeded (last step, `stage`),
    /// `Err(e)` failed with `e` as its RPC error, which is returned.
    pub fn finish(&self, id: &str, outcome: Result<String, &DaemonError>) -> Option<RpcErrorBody> {
        let error = outcome
            .as_ref()
            .err()
            .map(|e| RpcErrorBody::from(to_rpc(e)));
        self.ops.update(id, |o| {
            match &outcome {
                Ok(done) => {
                    o.0.state = OpState::Succeeded;
                    o.0.step = o.0.steps;
                    o.0.stage = done.clone();
                }
                Err(_) => o.0.state = OpState::Failed,
            }
            o.0.error = error.clone();
            o.0.updated_at = banger_store::now_millis();
        });
        self.persist(id);
        error
    }

    /// Operation `id`, while in memory.
    pub fn get(&self, id: &str) -> Option<Operation> {
        self.ops.get(id).map(|o| o.0)
    }

    /// Follow operation `id`, while in memory.
    pub fn subscribe(&self, id: &str) -> Option<tokio::sync::watch::Receiver<OpEntry>> {
        self.ops.subscribe(id)
    }

    /// Drop operations finished longer than `keep` ago from memory.
    pub fn prune(&self, keep: std::time::Duration) -> usize {
        self.ops.prune(keep)
    }

    fn persist(&self, id: &str) {
        if let Some(OpEntry(op, persist)) = self.ops.get(id) {
            let vm_id = match &persist {
                Persist::Always { vm_id } => Some(vm_id.as_str()),
                _ => None,
            };
            if let Err(e) = self.store.upsert_operation(&op, vm_id) {
                tracing::warn!(op = id, error = %e, "cannot persist operation");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> (tempfile::TempDir, OpTracker) {
        let t = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(t.path().join("banger.db")).unwrap());
        (t, OpTracker::new(store))
    }

    #[test]
    fn each_kind_is_recorded_when_its_policy_says() {
        let (_t, ops) = tracker();
        let pull = ops.start("image.pull", "x".into(), 3, Persist::AtEnd);
        let build = ops.start("image.build", "y".into(), 4, Persist::AtStartAndEnd);
        let create = ops.start(
            "vm.create",
            "z".into(),
            4,
            Persist::Always {
                vm_id: "vm1".into(),
            },
        );
        let stored = |id: &str| ops.store.get_operation(id).unwrap();
        assert!(stored(&pull.id).is_none());
        assert_eq!(stored(&build.id).unwrap().stage, "queued");
        ops.stage(&build.id, 1, "bootstrapping");
        ops.stage(&create.id, 1, "preparing root disk");
        assert_eq!(stored(&build.id).unwrap().stage, "queued");
        assert_eq!(stored(&create.id).unwrap().stage, "preparing root disk");
        assert_eq!(ops.get(&build.id).unwrap().stage, "bootstrapping");

        ops.set_subject(&pull.id, "named");
        assert!(ops.finish(&pull.id, Ok("done".into())).is_none());
        let p = stored(&pull.id).unwrap();
        assert_eq!(
            (p.state, p.step, p.stage.as_str(), p.subject.as_str()),
            (OpState::Succeeded, 3, "done", "named")
        );

        let e = DaemonError::NotFound("no image named \"q\"".into());
        let body = ops.finish(&create.id, Err(&e)).unwrap();
        assert_eq!(body.message, "no image named \"q\"");
        let c = stored(&create.id).unwrap();
        assert_eq!(
            (c.state, c.step, c.stage.as_str()),
            (OpState::Failed, 1, "preparing root disk")
        );
        assert_eq!(c.error.unwrap().message, body.message);
    }
}
