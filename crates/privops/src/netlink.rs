//! Links through rtnetlink (bridge, attach, delete, list). The seam is
//! synchronous; each call builds a private current-thread runtime, opens a
//! netlink socket in the calling thread's network namespace, and drops both
//! when done. Callers inside an async runtime run it on a blocking thread.
//!
//! Which links are banger's ([`bangers`]): beyond the name prefix, a TAP
//! must be a `tun` link in TAP mode whose owner (`IFLA_TUN_OWNER`, set by
//! `TUNSETOWNER`) is the policy's owner uid, and a bridge must be of kind
//! `bridge` with only such TAPs as ports. Deleting, listing, re-using a
//! TAP and configuring a bridge all go by that rule.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

use rtnetlink::packet_core::Nla;
use rtnetlink::packet_route::link::InfoData;

use crate::op::LinkInfo as BangerLink;
use crate::{Policy, PrivOpsError};

/// `IFLA_TUN_OWNER` (u32 uid) in a `tun` link's info data.
const IFLA_TUN_OWNER: u16 = 1;
/// `IFLA_TUN_TYPE` (u8: `IFF_TUN` 1 or `IFF_TAP` 2).
const IFLA_TUN_TYPE: u16 = 3;

const ENODEV: i32 = libc::ENODEV;
const EEXIST: i32 = libc::EEXIST;

fn nl_err<'a>(op: &'static str, device: &'a str) -> impl Fn(rtnetlink::Error) -> PrivOpsError + 'a {
    move |e| PrivOpsError::Netlink {
        op,
        device: device.to_string(),
        message: e.to_string(),
    }
}

fn errno(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.raw_code().abs(),
        _ => 0,
    }
}

/// Run `f` with a netlink handle on a private current-thread runtime.
fn with_handle<T>(
    op: &'static str,
    f: impl AsyncFnOnce(Handle) -> Result<T, PrivOpsError>,
) -> Result<T, PrivOpsError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| PrivOpsError::Netlink {
            op,
            device: String::new(),
            message: format!("cannot build a runtime: {e}"),
        })?;
    rt.block_on(async move {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| PrivOpsError::Netlink {
            op,
            device: String::new(),
            message: format!("cannot open a netlink socket: {e}"),
        })?;
        let task = tokio::spawn(conn);
        let out = f(handle).await;
        task.abort();
        out
    })
}

async fn find(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(m) => Ok(m),
        Err(e) if errno(&e) == ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

/// See [`PrivOp::EnsureBridge`](crate::PrivOp::EnsureBridge).
pub(crate) fn ensure_bridge(
    policy: &Policy,
    name: &str,
    gw: Ipv4Addr,
    prefix: u8,
) -> Result<(), PrivOpsError> {
    let op = "ensure_bridge";
    with_handle(op, async |h| {
        let err = nl_err(op, name);
        let link = match find(&h, name).await.map_err(&err)? {
            Some(l) => {
                let all = dump(&h).await.map_err(&err)?;
                bangers(policy, &l, &all).map_err(|why| PrivOpsError::Refused {
                    op,
                    reason: format!(
                        "{name} exists and is not banger's bridge: {why}; delete it or choose another network.bridge"
                    ),
                })?;
                l
            }
            None => {
                if let Err(e) = h.link().add(LinkBridge::new(name).build()).execute().await
                    && errno(&e) != EEXIST
                {
                    return Err(err(e));
                }
                find(&h, name)
                    .await
                    .map_err(&err)?
                    .ok_or_else(|| PrivOpsError::Netlink {
                        op,
                        device: name.to_string(),
                        message: "the bridge vanished right after creation".into(),
                    })?
            }
        };
        if kind(&link) != "bridge" {
            return Err(PrivOpsError::Refused {
                op,
                reason: format!(
                    "{name} exists and is not a bridge ({}); delete it or choose another network.bridge",
                    kind(&link)
                ),
            });
        }
        let idx = link.header.index;
        let mut addrs = h.address().get().set_link_index_filter(idx).execute();
        let mut present = false;
        while let Some(a) = addrs.try_next().await.map_err(&err)? {
            let has = a
                .attributes
                .iter()
                .any(|at| matches!(at, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == gw));
            if has && a.header.prefix_len == prefix {
                present = true;
            }
        }
        if !present
            && let Err(e) = h.address().add(idx, IpAddr::V4(gw), prefix).execute().await
            && errno(&e) != EEXIST
        {
            return Err(err(e));
        }
        h.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(&err)
    })
}

/// What [`tap_state`] found under a TAP's name.
pub(crate) enum TapState {
    /// No link of that name.
    Absent,
    /// banger's TAP.
    Ours,
    /// Something else, and why it is not banger's.
    Foreign(String),
}

/// Whether `name` is absent, banger's TAP, or something else.
pub(crate) fn tap_state(policy: &Policy, name: &str) -> Result<TapState, PrivOpsError> {
    let op = "create_tap";
    with_handle(op, async |h| {
        let err = nl_err(op, name);
        let Some(l) = find(&h, name).await.map_err(&err)? else {
            return Ok(TapState::Absent);
        };
        if kind(&l) != "tun" {
            return Ok(TapState::Foreign(format!("it is a {:?} link", kind(&l))));
        }
        Ok(match bangers(policy, &l, &[]) {
            Ok(()) => TapState::Ours,
            Err(why) => TapState::Foreign(why),
        })
    })
}

/// Refused unless `bridge` exists and is banger's bridge.
pub(crate) fn check_bridge(policy: &Policy, bridge: &str) -> Result<(), PrivOpsError> {
    let op = "create_tap";
    with_handle(op, async |h| {
        bangers_bridge(&h, policy, op, bridge)
            .await?
            .map(|_| ())
            .ok_or_else(|| no_bridge(op, bridge))
    })
}

/// Refused when a link named `bridge` exists and is not banger's bridge
/// (an absent one is left to the operation to report).
pub(crate) fn check_bridge_if_present(
    policy: &Policy,
    op: &'static str,
    bridge: &str,
) -> Result<(), PrivOpsError> {
    with_handle(op, async |h| {
        bangers_bridge(&h, policy, op, bridge).await.map(|_| ())
    })
}

/// The link named `bridge` when it is banger's bridge; `None` when absent;
/// refused when it exists and is not banger's.
async fn bangers_bridge(
    h: &rtnetlink::Handle,
    policy: &Policy,
    op: &'static str,
    bridge: &str,
) -> Result<Option<LinkMessage>, PrivOpsError> {
    let Some(br) = find(h, bridge).await.map_err(nl_err(op, bridge))? else {
        return Ok(None);
    };
    let all = dump(h).await.map_err(nl_err(op, bridge))?;
    bridge_is_bangers(policy, &br, &all).map_err(|why| PrivOpsError::Refused {
        op,
        reason: format!("{bridge} is not banger's bridge: {why}"),
    })?;
    Ok(Some(br))
}

fn no_bridge(op: &'static str, bridge: &str) -> PrivOpsError {
    PrivOpsError::Refused {
        op,
        reason: format!("bridge {bridge} does not exist; the daemon creates it at start"),
    }
}

fn bridge_is_bangers(policy: &Policy, br: &LinkMessage, all: &[LinkMessage]) -> Result<(), String> {
    if kind(br) != "bridge" {
        return Err(format!("it is a {:?} link, not a bridge", kind(br)));
    }
    bangers(policy, br, all)
}

/// Attach `tap` to `bridge` (which must be banger's bridge) and bring it up.
pub(crate) fn attach_up(policy: &Policy, tap: &str, bridge: &str) -> Result<(), PrivOpsError> {
    let op = "create_tap";
    with_handle(op, async |h| {
        let br = bangers_bridge(&h, policy, op, bridge)
            .await?
            .ok_or_else(|| no_bridge(op, bridge))?;
        let t = find(&h, tap)
            .await
            .map_err(nl_err(op, tap))?
            .ok_or_else(|| PrivOpsError::Netlink {
                op,
                device: tap.to_string(),
                message: "the TAP vanished right after creation".into(),
            })?;
        h.link()
            .set(
                LinkUnspec::new_with_index(t.header.index)
                    .controller(br.header.index)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(nl_err(op, tap))
    })
}

/// Delete banger's link `name`; `Ok(false)` when it did not exist,
/// refused when it is not banger's (see [`bangers`]).
pub(crate) fn delete(policy: &Policy, name: &str) -> Result<bool, PrivOpsError> {
    let op = "delete_link";
    with_handle(op, async |h| {
        let err = nl_err(op, name);
        let Some(link) = find(&h, name).await.map_err(&err)? else {
            return Ok(false);
        };
        let all = dump(&h).await.map_err(&err)?;
        bangers(policy, &link, &all).map_err(|why| PrivOpsError::Refused {
            op,
            reason: format!(
                "link {name} (index {}) is not banger's: {why}",
                link.header.index
            ),
        })?;
        match h.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == ENODEV => Ok(false),
            Err(e) => Err(err(e)),
        }
    })
}

async fn dump(h: &Handle) -> Result<Vec<LinkMessage>, rtnetlink::Error> {
    let mut all = Vec::new();
    let mut links = h.link().get().execute();
    while let Some(l) = links.try_next().await? {
        all.push(l);
    }
    Ok(all)
}

/// The bytes of attribute `attr` of a `tun` link's info data.
fn tun_attr(l: &LinkMessage, attr: u16) -> Option<Vec<u8>> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Tun(nlas)) => {
                nlas.iter().find(|n| n.kind() == attr).map(|n| {
                    let mut v = vec![0u8; n.value_len()];
                    n.emit_value(&mut v);
                    v
                })
            }
            _ => None,
        }),
        _ => None,
    })
}

/// The owner uid of a `tun` link (`None`: no owner set).
fn tun_owner(l: &LinkMessage) -> Option<u32> {
    let v = tun_attr(l, IFLA_TUN_OWNER)?;
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// Whether a `tun` link is in TAP mode.
fn tun_is_tap(l: &LinkMessage) -> bool {
    tun_attr(l, IFLA_TUN_TYPE).is_some_and(|v| v.first() == Some(&(libc::IFF_TAP as u8)))
}

fn controller_of(l: &LinkMessage) -> Option<u32> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(i) => Some(*i),
        _ => None,
    })
}

/// Whether `l` is banger's (the module's rule); `Err(why not)`. `all` is
/// every link of the namespace (to find a bridge's ports).
pub(crate) fn bangers(policy: &Policy, l: &LinkMessage, all: &[LinkMessage]) -> Result<(), String> {
    let name = name_of(l).unwrap_or_default();
    if policy.check_device("link", &name).is_err() {
        return Err(format!(
            "{name:?} lacks banger's prefix {:?}",
            policy.device_prefix
        ));
    }
    match kind(l).as_str() {
        "tun" => {
            if !tun_is_tap(l) {
                return Err(format!("{name} is a tun device in TUN mode, not a TAP"));
            }
            match tun_owner(l) {
                Some(uid) if uid == policy.owner_uid => Ok(()),
                Some(uid) => Err(format!(
                    "TAP {name} is owned by uid {uid}, not by the owner uid {}",
                    policy.owner_uid
                )),
                None => Err(format!(
                    "TAP {name} has no owner (banger's TAPs are the owner's)"
                )),
            }
        }
        "bridge" => {
            for port in all
                .iter()
                .filter(|p| controller_of(p) == Some(l.header.index))
            {
                let pname = name_of(port).unwrap_or_default();
                let tap_ok = kind(port) == "tun" && bangers(policy, port, &[]).is_ok();
                if !tap_ok {
                    return Err(format!(
                        "bridge {name} has port {pname:?}, which is not a banger TAP"
                    ));
                }
            }
            Ok(())
        }
        other => Err(format!(
            "{name} is a {other:?} link, neither a TAP nor a bridge"
        )),
    }
}

/// banger's links (see [`bangers`]).
pub(crate) fn list_bangers(policy: &Policy) -> Result<Vec<BangerLink>, PrivOpsError> {
    let op = "list_links";
    let all = with_handle(op, async |h| dump(&h).await.map_err(nl_err(op, "")))?;
    Ok(describe(&all, |l| bangers(policy, l, &all).is_ok()))
}

/// Every link whose name starts with `prefix`.
pub(crate) fn list(prefix: &str) -> Result<Vec<BangerLink>, PrivOpsError> {
    let op = "list_links";
    let all = with_handle(op, async |h| dump(&h).await.map_err(nl_err(op, "")))?;
    Ok(describe(&all, |l| {
        name_of(l).is_some_and(|n| n.starts_with(prefix))
    }))
}

fn describe(all: &[LinkMessage], keep: impl Fn(&LinkMessage) -> bool) -> Vec<BangerLink> {
    let names: std::collections::HashMap<u32, String> = all
        .iter()
        .filter_map(|l| name_of(l).map(|n| (l.header.index, n)))
        .collect();
    all.iter()
        .filter(|l| keep(l))
        .filter_map(|l| {
            let name = name_of(l)?;
            let controller = controller_of(l).and_then(|i| names.get(&i).cloned());
            Some(BangerLink {
                name,
                kind: kind(l),
                up: l.header.flags.contains(LinkFlags::Up),
                controller,
            })
        })
        .collect()
}

fn name_of(l: &LinkMessage) -> Option<String> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

fn kind(l: &LinkMessage) -> String {
    l.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k.to_string()),
                _ => None,
            }),
            _ => None,
        })
        .unwrap_or_default()
}
