//! A recording [`PrivilegedOps`]: the fake the seam tests put in front of
//! the real adapter or of a pretend host.

use std::sync::Mutex;

use banger_privops::{Policy, PrivOp, PrivOpsError, PrivReply, PrivilegedOps};

/// Which operation fails, and how, when a test asks for a failure.
type FailWith = Box<dyn Fn(&PrivOp) -> Option<PrivOpsError> + Send + Sync>;

/// Records every operation as a line of its log, then hands it to `inner`
/// (the real in-process adapter, or a pretend host the test writes) which
/// answers it. Optionally it first checks the operation against a
/// [`Policy`] exactly as the real adapters do, and fails the operations a
/// test names (logged as `FAILED <line>`, `inner` never sees them).
///
/// `inner` is reachable through `Deref`, so a test reads its fake host's
/// state straight off the recorder.
pub struct RecordingOps<O> {
    inner: O,
    policy: Option<Policy>,
    label: fn(&PrivOp) -> String,
    fail: Option<FailWith>,
    log: Mutex<Vec<String>>,
}

/// The default log line: the operation's name (`spawn_vmm`, `create_tap`).
fn name(op: &PrivOp) -> String {
    op.name().to_string()
}

impl<O: PrivilegedOps> RecordingOps<O> {
    /// Record, then forward to `inner`; log lines are operation names.
    pub fn new(inner: O) -> RecordingOps<O> {
        RecordingOps {
            inner,
            policy: None,
            label: name,
            fail: None,
            log: Mutex::new(Vec::new()),
        }
    }

    /// Check every operation against `policy` first (a refused one is
    /// neither logged nor forwarded).
    pub fn validating(mut self, policy: Policy) -> RecordingOps<O> {
        self.policy = Some(policy);
        self
    }

    /// Log lines made by `label` instead of the operation's name.
    pub fn labelled(mut self, label: fn(&PrivOp) -> String) -> RecordingOps<O> {
        self.label = label;
        self
    }

    /// Fail the operations for which `fail` gives an error.
    pub fn failing(
        mut self,
        fail: impl Fn(&PrivOp) -> Option<PrivOpsError> + Send + Sync + 'static,
    ) -> RecordingOps<O> {
        self.fail = Some(Box::new(fail));
        self
    }

    /// The log lines so far, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Forget the log lines so far.
    pub fn clear_log(&self) {
        self.log.lock().unwrap().clear();
    }
}

impl<O> std::ops::Deref for RecordingOps<O> {
    type Target = O;
    fn deref(&self) -> &O {
        &self.inner
    }
}

impl<O: PrivilegedOps> PrivilegedOps for RecordingOps<O> {
    fn execute(&self, op: PrivOp) -> Result<PrivReply, PrivOpsError> {
        let op = match &self.policy {
            Some(policy) => op.validate(policy)?,
            None => op,
        };
        let line = (self.label)(&op);
        if let Some(err) = self.fail.as_ref().and_then(|f| f(&op)) {
            self.log.lock().unwrap().push(format!("FAILED {line}"));
            return Err(err);
        }
        self.log.lock().unwrap().push(line);
        self.inner.execute(op)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::Path;

    use super::*;

    /// Answers everything with `Done`.
    struct Yes;
    impl PrivilegedOps for Yes {
        fn execute(&self, _: PrivOp) -> Result<PrivReply, PrivOpsError> {
            Ok(PrivReply::Done)
        }
    }

    fn policy(root: &Path) -> Policy {
        Policy {
            device_prefix: "bg".into(),
            state_dir: root.join("state"),
            runtime_dir: root.join("run"),
            subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
            owner_uid: 0,
            vmm_binary: "/usr/bin/firecracker".into(),
        }
    }

    #[test]
    fn records_in_order_labels_and_fails_what_it_is_told() {
        let ops = RecordingOps::new(Yes)
            .labelled(|op| match op {
                PrivOp::DeleteLink { name } => format!("delete_link {name}"),
                other => other.name().to_string(),
            })
            .failing(|op| {
                matches!(op, PrivOp::RemoveNat).then(|| PrivOpsError::Refused {
                    op: "remove_nat",
                    reason: "test says no".into(),
                })
            });
        ops.execute(PrivOp::ListLinks).unwrap();
        ops.execute(PrivOp::DeleteLink {
            name: "bgt0001".into(),
        })
        .unwrap();
        assert!(ops.execute(PrivOp::RemoveNat).is_err());
        assert_eq!(
            ops.log(),
            ["list_links", "delete_link bgt0001", "FAILED remove_nat"]
        );
        ops.clear_log();
        assert!(ops.log().is_empty());
    }

    #[test]
    fn validates_against_the_policy_before_recording() {
        let t = tempfile::tempdir().unwrap();
        let ops = RecordingOps::new(Yes).validating(policy(t.path()));
        // Not banger's device prefix: refused, not recorded.
        let refused = ops.execute(PrivOp::DeleteLink {
            name: "eth0".into(),
        });
        assert!(refused.is_err());
        assert!(ops.log().is_empty());
    }
}
