//! banger's nftables table, written as one JSON transaction to
//! `nft -j -f -` (the Debian `nftables` package): applied atomically,
//! removed as one table, readable in `nft -j list ruleset`.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::PrivOpsError;

/// Name of banger's table (family `inet`).
pub const NAT_TABLE: &str = "banger";

/// The `nft` binary (looked up on `$PATH`).
pub const NFT: &str = "nft";

/// The transaction that (re)creates the table: add + delete + add makes
/// it a replacement whether or not the table existed, all in one commit.
pub fn ruleset(bridge: &str, network: Ipv4Addr, prefix: u8) -> Value {
    let t = json!({"family": "inet", "name": NAT_TABLE});
    let rule = |chain: &str, expr: Value| json!({"add": {"rule": {"family": "inet", "table": NAT_TABLE, "chain": chain, "expr": expr}}});
    let from_subnet = json!({"match": {"op": "==",
        "left": {"payload": {"protocol": "ip", "field": "saddr"}},
        "right": {"prefix": {"addr": network.to_string(), "len": prefix}}}});
    let ifname = |key: &str, op: &str| json!({"match": {"op": op, "left": {"meta": {"key": key}}, "right": bridge}});
    json!({"nftables": [
        {"add": {"table": t}},
        {"delete": {"table": t}},
        {"add": {"table": t}},
        {"add": {"chain": {"family": "inet", "table": NAT_TABLE, "name": "postrouting",
            "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"}}},
        {"add": {"chain": {"family": "inet", "table": NAT_TABLE, "name": "forward",
            "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}},
        rule("postrouting", json!([from_subnet, ifname("oifname", "!="), {"masquerade": null}])),
        rule("forward", json!([ifname("iifname", "=="), {"accept": null}])),
        rule("forward", json!([ifname("oifname", "=="),
            {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
            {"accept": null}])),
    ]})
}

/// Apply [`ruleset`].
pub(crate) fn apply(bridge: &str, network: Ipv4Addr, prefix: u8) -> Result<(), PrivOpsError> {
    run_json(&ruleset(bridge, network, prefix))
}

/// Delete the table; `Ok(false)` when it was absent.
pub(crate) fn remove() -> Result<bool, PrivOpsError> {
    if !present()? {
        return Ok(false);
    }
    run_json(&json!({"nftables": [{"delete": {"table": {"family": "inet", "name": NAT_TABLE}}}]}))?;
    Ok(true)
}

/// Whether banger's table exists.
pub fn present() -> Result<bool, PrivOpsError> {
    let v = list_json(&["tables", "inet"])?;
    Ok(v["nftables"].as_array().is_some_and(|items| {
        items
            .iter()
            .any(|i| i["table"]["name"] == NAT_TABLE && i["table"]["family"] == "inet")
    }))
}

/// The whole ruleset as `nft -j list ruleset` prints it (for `doctor`'s
/// forward-policy check; needs CAP_NET_ADMIN).
pub fn list_ruleset() -> Result<Value, PrivOpsError> {
    list_json(&["ruleset"])
}

/// `nft -j list ARGS…`, parsed.
fn list_json(args: &[&str]) -> Result<Value, PrivOpsError> {
    let out = Command::new(NFT)
        .args(["-j", "list"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            nft_err(format!(
                "cannot run {NFT}: {e} (install the nftables package)"
            ))
        })?;
    if !out.status.success() {
        return Err(nft_err(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| {
        nft_err(format!(
            "unreadable `nft -j list {}` output: {e}",
            args.join(" ")
        ))
    })
}

fn run_json(v: &Value) -> Result<(), PrivOpsError> {
    let mut child = Command::new(NFT)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            nft_err(format!(
                "cannot run {NFT}: {e} (install the nftables package)"
            ))
        })?;
    let body = v.to_string();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(body.as_bytes())
            .map_err(|e| nft_err(format!("cannot write to {NFT}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| nft_err(format!("cannot wait for {NFT}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(nft_err(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

fn nft_err(message: String) -> PrivOpsError {
    PrivOpsError::Nft { message }
}
