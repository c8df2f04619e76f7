//! `daemon.doctor`: the host checks `bangerd` runs on itself (KVM, the VMM
//! binary, its directories, device-mapper, its network namespace, image
//! seeds), as the CLI's `banger doctor` prints them.

use serde::{Deserialize, Serialize};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Fine.
    Ok,
    /// banger works, but worse or not for long.
    Warn,
    /// banger cannot work until this is fixed.
    Fail,
}

/// One diagnostic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Short name (`kvm`, `firecracker`, `state dir`, …).
    pub name: String,
    /// The outcome.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// What to do about it, when the status is not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    /// A passing check.
    pub fn ok(name: &str, detail: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: CheckStatus::Ok,
            detail: detail.into(),
            hint: None,
        }
    }

    /// A warning with a hint.
    pub fn warn(name: &str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: CheckStatus::Warn,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }

    /// A failure with a hint.
    pub fn fail(name: &str, detail: impl Into<String>, hint: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: CheckStatus::Fail,
            detail: detail.into(),
            hint: Some(hint.into()),
        }
    }
}

/// Whether any check failed.
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == CheckStatus::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_what_doctor_json_prints() {
        let checks = vec![
            Check::ok("kvm", "fine"),
            Check::fail("firecracker", "missing", "install it"),
        ];
        let text = serde_json::to_string(&checks).unwrap();
        assert_eq!(
            text,
            r#"[{"name":"kvm","status":"ok","detail":"fine"},{"name":"firecracker","status":"fail","detail":"missing","hint":"install it"}]"#
        );
        assert_eq!(serde_json::from_str::<Vec<Check>>(&text).unwrap(), checks);
        assert!(any_failed(&checks) && !any_failed(&checks[..1]));
    }
}
