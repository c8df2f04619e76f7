//! Validation of the network operations of [`PrivOp`]: device names carry
//! banger's prefix, addresses lie in the guest subnet, the NAT subnet is
//! exactly the policy's. Execution then checks the link itself (see
//! `netlink::bangers`): a TAP is the owner's, a bridge has only banger
//! TAPs as ports.

use crate::netlink::TapState;
use crate::op::PrivOp;
use crate::{Policy, PrivOpsError};

/// [`PrivOp::CreateTap`]: create the TAP exclusively, or re-use banger's
/// TAP of that name, then attach it to banger's bridge. A foreign link of
/// that name is refused; a TAP created here is deleted again when the
/// attach fails.
pub(crate) fn create_tap(policy: &Policy, name: &str, bridge: &str) -> Result<(), PrivOpsError> {
    let op = "create_tap";
    // The bridge first, so nothing is created for a foreign bridge.
    crate::netlink::check_bridge(policy, bridge)?;
    let created = match crate::netlink::tap_state(policy, name)? {
        TapState::Absent => {
            crate::tap::create_persistent(name, policy.owner_uid)?;
            true
        }
        TapState::Ours => false,
        TapState::Foreign(why) => {
            return Err(PrivOpsError::Refused {
                op,
                reason: format!("{name} exists and is not banger's TAP: {why}"),
            });
        }
    };
    if let Err(e) = crate::netlink::attach_up(policy, name, bridge) {
        if created {
            let _ = crate::netlink::delete(policy, name);
        }
        return Err(e);
    }
    Ok(())
}

/// Validate a network variant (the VMM variants are checked in `op.rs`).
pub(crate) fn validate(op: PrivOp, policy: &Policy) -> Result<PrivOp, PrivOpsError> {
    let name = op.name();
    match &op {
        PrivOp::EnsureBridge {
            name: bridge,
            gateway,
            prefix,
        } => {
            policy.check_device(name, bridge)?;
            policy.check_addr(name, *gateway)?;
            if *prefix != policy.subnet.1 {
                return Err(PrivOpsError::Refused {
                    op: name,
                    reason: format!(
                        "prefix /{prefix} is not the guest subnet's /{}",
                        policy.subnet.1
                    ),
                });
            }
        }
        PrivOp::CreateTap { name: tap, bridge } => {
            policy.check_device(name, tap)?;
            policy.check_device(name, bridge)?;
        }
        PrivOp::DeleteLink { name: link } => policy.check_device(name, link)?,
        PrivOp::ApplyNat {
            bridge,
            network,
            prefix,
        } => {
            policy.check_device(name, bridge)?;
            if (*network, *prefix) != policy.subnet {
                return Err(PrivOpsError::Refused {
                    op: name,
                    reason: format!(
                        "{network}/{prefix} is not the guest subnet {}/{}",
                        policy.subnet.0, policy.subnet.1
                    ),
                });
            }
        }
        PrivOp::ResolverRoute { bridge, dns, .. } => {
            policy.check_device(name, bridge)?;
            policy.check_addr(name, *dns)?;
        }
        PrivOp::ListLinks | PrivOp::RemoveNat | PrivOp::SetIpForward { .. } => {}
        PrivOp::SpawnVmm(_)
        | PrivOp::SignalVmm { .. }
        | PrivOp::LoopAttach { .. }
        | PrivOp::LoopDetach { .. }
        | PrivOp::DmCreateSnapshot { .. }
        | PrivOp::DmRemove { .. }
        | PrivOp::ListDisks => {
            return Err(PrivOpsError::Refused {
                op: name,
                reason: "not a network operation".into(),
            });
        }
    }
    Ok(op)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use super::*;

    fn policy() -> Policy {
        Policy {
            device_prefix: "bg".into(),
            state_dir: PathBuf::from("/x/state"),
            runtime_dir: PathBuf::from("/x/run"),
            subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
            owner_uid: 1000,
            vmm_binary: PathBuf::from("/usr/bin/firecracker"),
        }
    }

    #[test]
    fn refuses_foreign_devices_and_addresses() {
        let p = policy();
        let gw = Ipv4Addr::new(172, 30, 0, 1);
        let ok = [
            PrivOp::EnsureBridge {
                name: "bg0".into(),
                gateway: gw,
                prefix: 24,
            },
            PrivOp::CreateTap {
                name: "bgtap0".into(),
                bridge: "bg0".into(),
            },
            PrivOp::DeleteLink {
                name: "bgtap0".into(),
            },
            PrivOp::ApplyNat {
                bridge: "bg0".into(),
                network: Ipv4Addr::new(172, 30, 0, 0),
                prefix: 24,
            },
            PrivOp::ResolverRoute {
                bridge: "bg0".into(),
                dns: gw,
                revert: false,
            },
            PrivOp::ListLinks,
            PrivOp::RemoveNat,
            PrivOp::SetIpForward { enabled: true },
        ];
        for op in ok {
            assert!(op.clone().validate(&p).is_ok(), "{op:?}");
        }
        let bad = [
            PrivOp::EnsureBridge {
                name: "eth0".into(),
                gateway: gw,
                prefix: 24,
            },
            PrivOp::EnsureBridge {
                name: "bg0".into(),
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                prefix: 24,
            },
            PrivOp::EnsureBridge {
                name: "bg0".into(),
                gateway: gw,
                prefix: 16,
            },
            PrivOp::CreateTap {
                name: "tap0".into(),
                bridge: "bg0".into(),
            },
            PrivOp::CreateTap {
                name: "bgtap0".into(),
                bridge: "docker0".into(),
            },
            PrivOp::DeleteLink {
                name: "eth0".into(),
            },
            PrivOp::ApplyNat {
                bridge: "bg0".into(),
                network: Ipv4Addr::new(0, 0, 0, 0),
                prefix: 0,
            },
            PrivOp::ResolverRoute {
                bridge: "bg0".into(),
                dns: Ipv4Addr::new(8, 8, 8, 8),
                revert: false,
            },
        ];
        for op in bad {
            assert!(
                matches!(op.clone().validate(&p), Err(PrivOpsError::Refused { .. })),
                "{op:?}"
            );
        }
    }
}
