//! Links through rtnetlink (bridge, attach, delete, list). The seam is
//! synchronous; each call builds a private current-thread runtime, opens a
//! netlink socket in the calling thread's network namespace, and drops both
//! when done. Callers inside an async runtime run it on a blocking thread.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec};

use crate::PrivOpsError;
use crate::op::LinkInfo as BangerLink;

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
pub(crate) fn ensure_bridge(name: &str, gw: Ipv4Addr, prefix: u8) -> Result<(), PrivOpsError> {
    let op = "ensure_bridge";
    with_handle(op, async |h| {
        let err = nl_err(op, name);
        let link = match find(&h, name).await.map_err(&err)? {
            Some(l) => l,
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

/// Attach `tap` to `bridge` and bring it up.
pub(crate) fn attach_up(tap: &str, bridge: &str) -> Result<(), PrivOpsError> {
    let op = "create_tap";
    with_handle(op, async |h| {
        let br = find(&h, bridge)
            .await
            .map_err(nl_err(op, bridge))?
            .ok_or_else(|| PrivOpsError::Refused {
                op,
                reason: format!("bridge {bridge} does not exist; the daemon creates it at start"),
            })?;
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

/// Delete link `name`; `Ok(false)` when it did not exist.
pub(crate) fn delete(name: &str) -> Result<bool, PrivOpsError> {
    let op = "delete_link";
    with_handle(op, async |h| {
        let err = nl_err(op, name);
        let Some(link) = find(&h, name).await.map_err(&err)? else {
            return Ok(false);
        };
        match h.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == ENODEV => Ok(false),
            Err(e) => Err(err(e)),
        }
    })
}

/// Every link whose name starts with `prefix`.
pub(crate) fn list(prefix: &str) -> Result<Vec<BangerLink>, PrivOpsError> {
    let op = "list_links";
    with_handle(op, async |h| {
        let err = nl_err(op, "");
        let mut all = Vec::new();
        let mut links = h.link().get().execute();
        while let Some(l) = links.try_next().await.map_err(&err)? {
            all.push(l);
        }
        let names: std::collections::HashMap<u32, String> = all
            .iter()
            .filter_map(|l| name_of(l).map(|n| (l.header.index, n)))
            .collect();
        Ok(all
            .iter()
            .filter_map(|l| {
                let name = name_of(l)?;
                if !name.starts_with(prefix) {
                    return None;
                }
                let controller = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Controller(i) => names.get(i).cloned(),
                    _ => None,
                });
                Some(BangerLink {
                    name,
                    kind: kind(l),
                    up: l.header.flags.contains(LinkFlags::Up),
                    controller,
                })
            })
            .collect())
    })
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
