//! `banger doctor`'s "forward firewall" check: another firewall whose
//! forward hook drops what it does not accept (Docker sets the iptables
//! `FORWARD` policy to DROP, ufw's `DEFAULT_FORWARD_POLICY="DROP"`,
//! firewalld's final reject) cuts guests off, whatever banger's own table
//! accepts: in nftables every base chain on a hook must let a packet
//! through. Read from `nft -j list ruleset` (iptables-nft rules show there
//! too) and, when the legacy filter table is loaded, `iptables-legacy -S`.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::doctor::Check;

const NAME: &str = "forward firewall";

/// Whose chain it is, for the fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firewall {
    /// Docker (a `DOCKER-USER` chain in the table).
    Docker,
    /// ufw (`ufw-*` chains).
    Ufw,
    /// firewalld (table `firewalld`).
    Firewalld,
    /// Anything else.
    Other,
}

/// A forward chain that drops banger's bridge traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardDrop {
    /// `ip filter FORWARD`, or `iptables-legacy FORWARD`.
    pub location: String,
    /// `policy drop` or `final reject rule`.
    pub how: &'static str,
    /// Whose it is.
    pub firewall: Firewall,
    /// Whether the fix is for `iptables-legacy`.
    pub legacy: bool,
}

impl ForwardDrop {
    /// The commands that let `bridge`'s traffic through this firewall.
    pub fn fix(&self, bridge: &str) -> String {
        let ipt = if self.legacy {
            "iptables-legacy"
        } else {
            "iptables"
        };
        match self.firewall {
            Firewall::Docker => format!(
                "`{ipt} -I DOCKER-USER -i {bridge} -j ACCEPT` and `{ipt} -I DOCKER-USER -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`"
            ),
            Firewall::Ufw => {
                format!("`ufw route allow in on {bridge}` and `ufw route allow out on {bridge}`")
            }
            Firewall::Firewalld => format!(
                "`firewall-cmd --zone=trusted --add-interface={bridge} --permanent` then `firewall-cmd --reload`"
            ),
            Firewall::Other if self.legacy => format!(
                "`{ipt} -I FORWARD -i {bridge} -j ACCEPT` and `{ipt} -I FORWARD -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`"
            ),
            Firewall::Other => {
                let loc = &self.location;
                format!(
                    "`nft insert rule {loc} iifname {bridge} accept` and `nft insert rule {loc} oifname {bridge} ct state related,established accept`"
                )
            }
        }
    }
}

/// The check, reading this host's (this thread's network namespace's)
/// rulesets.
pub fn check(bridge: &str) -> Check {
    let ruleset = match banger_privops::nft_ruleset() {
        Ok(v) => v,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("cannot read the ruleset: {e}"),
                "run `banger doctor` as root to see nftables, and install the nftables package",
            );
        }
    };
    let mut found = nft_forward_drops(&ruleset, bridge);
    if let Some(rules) = iptables_legacy_rules() {
        found.extend(legacy_forward_drop(&rules, bridge));
    }
    verdict(&found, bridge)
}

fn verdict(found: &[ForwardDrop], bridge: &str) -> Check {
    if found.is_empty() {
        return Check::ok(NAME, format!("no forward chain drops {bridge}'s traffic"));
    }
    let detail = found
        .iter()
        .map(|f| {
            let who = match f.firewall {
                Firewall::Docker => " (Docker)",
                Firewall::Ufw => " (ufw)",
                Firewall::Firewalld => " (firewalld)",
                Firewall::Other => "",
            };
            format!("{}{who}: {}", f.location, f.how)
        })
        .collect::<Vec<_>>()
        .join("; ");
    let fixes = found
        .iter()
        .map(|f| f.fix(bridge))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
        .join("; ");
    Check::warn(
        NAME,
        format!("{detail}, with no accept for {bridge}: guests cannot reach the network"),
        format!("let {bridge} through (as root): {fixes}"),
    )
}

/// `iptables-legacy -S`, when the legacy filter table is loaded in this
/// network namespace (`/proc/thread-self/net/ip_tables_names`: asking otherwise would
/// load the legacy modules, a change doctor must not make) and the program
/// exists and answers.
fn iptables_legacy_rules() -> Option<String> {
    let loaded = std::fs::read_to_string("/proc/thread-self/net/ip_tables_names").ok()?;
    if !loaded.lines().any(|l| l.trim() == "filter") {
        return None;
    }
    let out = Command::new("iptables-legacy")
        .arg("-S")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The forward-hook chains (families `ip` and `inet`, not banger's own
/// table) in `nft -j list ruleset` output that drop by policy or by a
/// final unconditional drop/reject rule, and do not accept `bridge` both
/// ways (in on it; out on it, or established for any interface) in
/// themselves or in the chains they jump to.
pub fn nft_forward_drops(ruleset: &Value, bridge: &str) -> Vec<ForwardDrop> {
    let items = ruleset["nftables"].as_array().map_or(&[][..], |v| v);
    // (family, table) → chain → rules.
    let mut rules: BTreeMap<(&str, &str), BTreeMap<&str, Vec<&Value>>> = BTreeMap::new();
    let mut bases = Vec::new();
    for item in items {
        if let Some(c) = item.get("chain") {
            let (Some(f), Some(t), Some(n)) = (
                c["family"].as_str(),
                c["table"].as_str(),
                c["name"].as_str(),
            ) else {
                continue;
            };
            rules.entry((f, t)).or_default().entry(n).or_default();
            let ours = f == "inet" && t == banger_privops::NAT_TABLE;
            if c["hook"] == "forward" && matches!(f, "ip" | "inet") && !ours {
                bases.push((f, t, n, c["policy"] == "drop"));
            }
        } else if let Some(r) = item.get("rule")
            && let (Some(f), Some(t), Some(n)) = (
                r["family"].as_str(),
                r["table"].as_str(),
                r["chain"].as_str(),
            )
        {
            rules
                .entry((f, t))
                .or_default()
                .entry(n)
                .or_default()
                .push(r);
        }
    }
    let mut out = Vec::new();
    for (family, table, chain, policy_drop) in bases {
        let chains = &rules[&(family, table)];
        let final_reject = chains[chain].last().is_some_and(|r| {
            let e = exprs(r);
            !e.iter().any(|x| x.get("match").is_some())
                && e.iter()
                    .any(|x| x.get("drop").is_some() || x.get("reject").is_some())
        });
        if !policy_drop && !final_reject {
            continue;
        }
        let mut seen = BTreeSet::new();
        let (mut inbound, mut outbound) = (false, false);
        walk(
            chains,
            chain,
            bridge,
            &mut seen,
            &mut inbound,
            &mut outbound,
        );
        if inbound && outbound {
            continue;
        }
        let firewall = if table == "firewalld" {
            Firewall::Firewalld
        } else if chains.contains_key("DOCKER-USER") {
            Firewall::Docker
        } else if chains.keys().any(|c| c.starts_with("ufw")) {
            Firewall::Ufw
        } else {
            Firewall::Other
        };
        out.push(ForwardDrop {
            location: format!("{family} {table} {chain}"),
            how: if policy_drop {
                "policy drop"
            } else {
                "final reject rule"
            },
            firewall,
            legacy: false,
        });
    }
    out
}

fn exprs(rule: &Value) -> &[Value] {
    rule["expr"].as_array().map_or(&[][..], |v| v)
}

/// Look through `chain` and what it jumps to for accepts of `bridge`.
fn walk<'a>(
    chains: &BTreeMap<&'a str, Vec<&Value>>,
    chain: &'a str,
    bridge: &str,
    seen: &mut BTreeSet<&'a str>,
    inbound: &mut bool,
    outbound: &mut bool,
) {
    if !seen.insert(chain) {
        return;
    }
    for rule in chains.get(chain).into_iter().flatten() {
        let e = exprs(rule);
        let mut iif = None;
        let mut oif = None;
        let mut ct = false;
        for m in e.iter().filter_map(|x| x.get("match")) {
            match m["left"]["meta"]["key"].as_str() {
                Some("iifname" | "iif") => iif = Some(names_bridge(m, bridge)),
                Some("oifname" | "oif") => oif = Some(names_bridge(m, bridge)),
                _ => ct |= m["left"]["ct"]["key"] == "state",
            }
        }
        let target = e.iter().find_map(|x| {
            x.get("jump")
                .or_else(|| x.get("goto"))
                .and_then(|j| j["target"].as_str())
        });
        let accepts = e.iter().any(|x| x.get("accept").is_some())
            || target.is_some_and(|t| accepts_all(chains, t, &mut BTreeSet::new()));
        if accepts {
            *inbound |= iif == Some(true);
            *outbound |= oif == Some(true) || (ct && iif.is_none() && oif.is_none());
        }
        if let Some(t) = target
            && let Some((name, _)) = chains.get_key_value(t)
        {
            walk(chains, name, bridge, seen, inbound, outbound);
        }
    }
}

/// Whether `chain` (or what it jumps to) ends in an unconditional accept.
fn accepts_all<'a>(
    chains: &BTreeMap<&'a str, Vec<&Value>>,
    chain: &str,
    seen: &mut BTreeSet<&'a str>,
) -> bool {
    let Some((name, rules)) = chains.get_key_value(chain) else {
        return false;
    };
    if !seen.insert(name) {
        return false;
    }
    rules.iter().any(|r| {
        let e = exprs(r);
        !e.iter().any(|x| x.get("match").is_some())
            && (e.iter().any(|x| x.get("accept").is_some())
                || e.iter().any(|x| {
                    x.get("goto")
                        .and_then(|g| g["target"].as_str())
                        .is_some_and(|t| accepts_all(chains, t, seen))
                }))
    })
}

/// Whether a positive interface match covers `bridge` (`"bg0"`, a set
/// holding it, or a `"bg*"` wildcard).
fn names_bridge(m: &Value, bridge: &str) -> bool {
    if !matches!(m["op"].as_str(), Some("==" | "in")) {
        return false;
    }
    let one = |v: &Value| {
        v.as_str().is_some_and(|s| {
            s == bridge || s.strip_suffix('*').is_some_and(|p| bridge.starts_with(p))
        })
    };
    let right = &m["right"];
    one(right) || right["set"].as_array().is_some_and(|s| s.iter().any(one))
}

/// `-P FORWARD DROP` in `iptables-legacy -S` output without an ACCEPT
/// for `bridge` in and out.
pub fn legacy_forward_drop(rules: &str, bridge: &str) -> Option<ForwardDrop> {
    let lines: Vec<Vec<&str>> = rules
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    if !lines.iter().any(|l| l[..] == ["-P", "FORWARD", "DROP"]) {
        return None;
    }
    let accepts = |flag: &str| {
        lines.iter().any(|l| {
            l.first() == Some(&"-A")
                && l.windows(2).any(|w| w == [flag, bridge])
                && l.windows(2).any(|w| w == ["-j", "ACCEPT"])
        })
    };
    if accepts("-i") && accepts("-o") {
        return None;
    }
    let has = |chain: &str| {
        lines
            .iter()
            .any(|l| l.first() == Some(&"-N") && l.get(1).is_some_and(|c| c.starts_with(chain)))
    };
    let firewall = if has("DOCKER-USER") {
        Firewall::Docker
    } else if has("ufw") {
        Firewall::Ufw
    } else {
        Firewall::Other
    };
    Some(ForwardDrop {
        location: "iptables-legacy filter FORWARD".into(),
        how: "policy drop",
        firewall,
        legacy: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::CheckStatus;
    use serde_json::json;

    fn chain(f: &str, t: &str, n: &str, base: Option<(&str, &str)>) -> Value {
        let mut c = json!({"family": f, "table": t, "name": n, "handle": 1});
        if let Some((hook, policy)) = base {
            c["type"] = json!("filter");
            c["hook"] = json!(hook);
            c["prio"] = json!(0);
            c["policy"] = json!(policy);
        }
        json!({"chain": c})
    }

    fn rule(f: &str, t: &str, c: &str, expr: Value) -> Value {
        json!({"rule": {"family": f, "table": t, "chain": c, "handle": 2, "expr": expr}})
    }

    fn iface(key: &str, name: &str) -> Value {
        json!({"match": {"op": "==", "left": {"meta": {"key": key}}, "right": name}})
    }

    fn ct_established() -> Value {
        json!({"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}})
    }

    fn ruleset(items: Vec<Value>) -> Value {
        json!({"nftables": items})
    }

    /// Docker through iptables-nft: `ip filter FORWARD` policy drop,
    /// jumping to DOCKER-USER.
    fn docker(extra_user_rules: Vec<Value>) -> Value {
        let mut items = vec![
            json!({"metainfo": {"version": "1.0.6"}}),
            json!({"table": {"family": "ip", "name": "filter", "handle": 1}}),
            chain("ip", "filter", "FORWARD", Some(("forward", "drop"))),
            chain("ip", "filter", "DOCKER-USER", None),
            chain("ip", "filter", "DOCKER", None),
            rule(
                "ip",
                "filter",
                "FORWARD",
                json!([{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "DOCKER-USER"}}]),
            ),
            rule(
                "ip",
                "filter",
                "FORWARD",
                json!([iface("oifname", "docker0"), ct_established(), {"accept": null}]),
            ),
            rule(
                "ip",
                "filter",
                "DOCKER-USER",
                json!([{"counter": {"packets": 0, "bytes": 0}}, {"return": null}]),
            ),
            // banger's own table accepts the bridge, which does not help.
            chain("inet", "banger", "forward", Some(("forward", "accept"))),
            rule(
                "inet",
                "banger",
                "forward",
                json!([iface("iifname", "bg0"), {"accept": null}]),
            ),
        ];
        items.extend(extra_user_rules);
        ruleset(items)
    }

    #[test]
    fn docker_policy_drop_and_its_fix() {
        let found = nft_forward_drops(&docker(vec![]), "bg0");
        assert_eq!(
            found,
            vec![ForwardDrop {
                location: "ip filter FORWARD".into(),
                how: "policy drop",
                firewall: Firewall::Docker,
                legacy: false,
            }]
        );
        let c = verdict(&found, "bg0");
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(c.detail.contains("ip filter FORWARD (Docker)"), "{c:?}");
        let hint = c.hint.unwrap();
        assert!(
            hint.contains("iptables -I DOCKER-USER -i bg0 -j ACCEPT")
                && hint.contains(
                    "iptables -I DOCKER-USER -o bg0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
                ),
            "{hint}"
        );
        // With the fix applied (inserted in DOCKER-USER) nothing is found.
        let fixed = docker(vec![
            rule(
                "ip",
                "filter",
                "DOCKER-USER",
                json!([iface("iifname", "bg0"), {"accept": null}]),
            ),
            rule(
                "ip",
                "filter",
                "DOCKER-USER",
                json!([iface("oifname", "bg0"), ct_established(), {"accept": null}]),
            ),
        ]);
        assert_eq!(nft_forward_drops(&fixed, "bg0"), vec![]);
        // Half a fix is not enough.
        let half = docker(vec![rule(
            "ip",
            "filter",
            "DOCKER-USER",
            json!([iface("iifname", "bg0"), {"accept": null}]),
        )]);
        assert_eq!(nft_forward_drops(&half, "bg0").len(), 1);
    }

    fn ufw(route_rules: Vec<Value>) -> Value {
        let mut items = vec![
            chain("ip", "filter", "FORWARD", Some(("forward", "drop"))),
            chain("ip", "filter", "ufw-before-forward", None),
            chain("ip", "filter", "ufw-user-forward", None),
            rule(
                "ip",
                "filter",
                "FORWARD",
                json!([{"jump": {"target": "ufw-before-forward"}}]),
            ),
            rule(
                "ip",
                "filter",
                "ufw-before-forward",
                json!([ct_established(), {"accept": null}]),
            ),
            rule(
                "ip",
                "filter",
                "ufw-before-forward",
                json!([{"jump": {"target": "ufw-user-forward"}}]),
            ),
        ];
        items.extend(route_rules);
        ruleset(items)
    }

    #[test]
    fn ufw_default_forward_drop() {
        let found = nft_forward_drops(&ufw(vec![]), "bg0");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].firewall, Firewall::Ufw);
        let hint = verdict(&found, "bg0").hint.unwrap();
        assert!(
            hint.contains("ufw route allow in on bg0")
                && hint.contains("ufw route allow out on bg0"),
            "{hint}"
        );
        // `ufw route allow in on bg0` (established traffic back is already
        // accepted for every interface).
        let allowed = ufw(vec![rule(
            "ip",
            "filter",
            "ufw-user-forward",
            json!([iface("iifname", "bg0"), {"counter": null}, {"accept": null}]),
        )]);
        assert_eq!(nft_forward_drops(&allowed, "bg0"), vec![]);
        // Another interface's allowance does not count.
        let other = ufw(vec![rule(
            "ip",
            "filter",
            "ufw-user-forward",
            json!([iface("iifname", "eth1"), {"accept": null}]),
        )]);
        assert_eq!(nft_forward_drops(&other, "bg0").len(), 1);
    }

    fn firewalld(trusted: bool) -> Value {
        let t = |c: &str, e: Value| rule("inet", "firewalld", c, e);
        let mut items = vec![
            json!({"table": {"family": "inet", "name": "firewalld", "handle": 9}}),
            chain(
                "inet",
                "firewalld",
                "filter_FORWARD",
                Some(("forward", "accept")),
            ),
            chain("inet", "firewalld", "filter_FORWARD_IN_ZONES", None),
            chain("inet", "firewalld", "filter_FORWARD_OUT_ZONES", None),
            chain("inet", "firewalld", "filter_FWDI_trusted", None),
            chain("inet", "firewalld", "filter_FWDO_trusted", None),
            t(
                "filter_FORWARD",
                json!([ct_established(), {"accept": null}]),
            ),
            t(
                "filter_FORWARD",
                json!([{"jump": {"target": "filter_FORWARD_IN_ZONES"}}]),
            ),
            t(
                "filter_FORWARD",
                json!([{"jump": {"target": "filter_FORWARD_OUT_ZONES"}}]),
            ),
            t(
                "filter_FORWARD",
                json!([{"reject": {"type": "icmpx", "expr": "admin-prohibited"}}]),
            ),
            t("filter_FWDI_trusted", json!([{"accept": null}])),
            t("filter_FWDO_trusted", json!([{"accept": null}])),
        ];
        if trusted {
            items.push(t(
                "filter_FORWARD_IN_ZONES",
                json!([iface("iifname", "bg0"), {"goto": {"target": "filter_FWDI_trusted"}}]),
            ));
            items.push(t(
                "filter_FORWARD_OUT_ZONES",
                json!([iface("oifname", "bg0"), {"goto": {"target": "filter_FWDO_trusted"}}]),
            ));
        }
        ruleset(items)
    }

    #[test]
    fn firewalld_final_reject_and_trusted_zone() {
        let found = nft_forward_drops(&firewalld(false), "bg0");
        assert_eq!(
            found,
            vec![ForwardDrop {
                location: "inet firewalld filter_FORWARD".into(),
                how: "final reject rule",
                firewall: Firewall::Firewalld,
                legacy: false,
            }]
        );
        assert!(
            verdict(&found, "bg0")
                .hint
                .unwrap()
                .contains("firewall-cmd --zone=trusted --add-interface=bg0 --permanent")
        );
        assert_eq!(nft_forward_drops(&firewalld(true), "bg0"), vec![]);
    }

    #[test]
    fn clean_rulesets_are_ok() {
        let clean = ruleset(vec![
            chain("inet", "banger", "forward", Some(("forward", "accept"))),
            chain("inet", "filter", "forward", Some(("forward", "accept"))),
            // IPv6-only and input chains do not matter.
            chain("ip6", "filter", "FORWARD", Some(("forward", "drop"))),
            chain("inet", "filter", "input", Some(("input", "drop"))),
        ]);
        let found = nft_forward_drops(&clean, "bg0");
        assert_eq!(found, vec![]);
        assert_eq!(verdict(&found, "bg0").status, CheckStatus::Ok);
        assert_eq!(nft_forward_drops(&json!({}), "bg0"), vec![]);
        assert_eq!(nft_forward_drops(&json!({"nftables": 3}), "bg0"), vec![]);
        // A plain table of one's own: the nft fix names it.
        let plain = ruleset(vec![chain("inet", "t", "f", Some(("forward", "drop")))]);
        let found = nft_forward_drops(&plain, "bg0");
        assert_eq!(found[0].firewall, Firewall::Other);
        assert!(
            found[0]
                .fix("bg0")
                .contains("nft insert rule inet t f iifname bg0 accept")
        );
        // A wildcard or set naming the bridge counts.
        let wild = ruleset(vec![
            chain("inet", "t", "f", Some(("forward", "drop"))),
            rule(
                "inet",
                "t",
                "f",
                json!([iface("iifname", "bg*"), {"accept": null}]),
            ),
            rule(
                "inet",
                "t",
                "f",
                json!([{"match": {"op": "in", "left": {"meta": {"key": "oifname"}}, "right": {"set": ["x", "bg0"]}}}, {"accept": null}]),
            ),
        ]);
        assert_eq!(nft_forward_drops(&wild, "bg0"), vec![]);
    }

    #[test]
    fn iptables_legacy_policy() {
        let docker = "-P INPUT ACCEPT\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n-N DOCKER\n-N DOCKER-USER\n-A FORWARD -j DOCKER-USER\n-A DOCKER-USER -j RETURN\n";
        let f = legacy_forward_drop(docker, "bg0").unwrap();
        assert_eq!(f.firewall, Firewall::Docker);
        assert!(
            f.fix("bg0")
                .contains("iptables-legacy -I DOCKER-USER -i bg0 -j ACCEPT")
        );
        let fixed = format!(
            "{docker}-A DOCKER-USER -i bg0 -j ACCEPT\n-A DOCKER-USER -o bg0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        );
        assert_eq!(legacy_forward_drop(&fixed, "bg0"), None);
        assert_eq!(
            legacy_forward_drop("-P INPUT ACCEPT\n-P FORWARD ACCEPT\n", "bg0"),
            None
        );
        assert_eq!(legacy_forward_drop("", "bg0"), None);
    }

    /// Real `nft -j list ruleset` output (nftables 1.0.6) after
    /// iptables-nft 1.8.9 ran Docker's policy and the suggested fix.
    const IPTABLES_NFT_FIXED: &str = r#"{"nftables":[{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},{"table":{"family":"ip","name":"filter","handle":1}},{"chain":{"family":"ip","table":"filter","name":"FORWARD","handle":1,"type":"filter","hook":"forward","prio":0,"policy":"drop"}},{"chain":{"family":"ip","table":"filter","name":"DOCKER-USER","handle":2}},{"rule":{"family":"ip","table":"filter","chain":"FORWARD","handle":3,"expr":[{"counter":{"packets":0,"bytes":0}},{"jump":{"target":"DOCKER-USER"}}]}},{"rule":{"family":"ip","table":"filter","chain":"DOCKER-USER","handle":5,"expr":[{"match":{"op":"==","left":{"meta":{"key":"oifname"}},"right":"bg0"}},{"xt":{"type":"match","name":"conntrack"}},{"counter":{"packets":0,"bytes":0}},{"accept":null}]}},{"rule":{"family":"ip","table":"filter","chain":"DOCKER-USER","handle":4,"expr":[{"match":{"op":"==","left":{"meta":{"key":"iifname"}},"right":"bg0"}},{"counter":{"packets":0,"bytes":0}},{"accept":null}]}}]}"#;

    #[test]
    fn real_iptables_nft_output() {
        let fixed: Value = serde_json::from_str(IPTABLES_NFT_FIXED).unwrap();
        assert_eq!(nft_forward_drops(&fixed, "bg0"), vec![]);
        // The same without the accepts: Docker's drop.
        let mut bare = fixed.clone();
        bare["nftables"]
            .as_array_mut()
            .unwrap()
            .retain(|i| i["rule"]["chain"] != "DOCKER-USER");
        let found = nft_forward_drops(&bare, "bg0");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].firewall, Firewall::Docker);
    }

    /// As root with nft: a throwaway namespace whose ruleset has a
    /// forward chain with policy drop; the check run inside it warns.
    #[test]
    fn real_ruleset_in_a_namespace() {
        const TEST: &str = "real_ruleset_in_a_namespace";
        if !nix::unistd::geteuid().is_root() {
            banger_testsupport::skip!(TEST, "needs root (ip netns, nft)");
        }
        if Command::new(banger_privops::NFT)
            .arg("--version")
            .output()
            .is_err()
        {
            banger_testsupport::skip!(TEST, "nft is missing (install nftables)");
        }
        let ns = format!("bgfw{}", std::process::id());
        let run = |args: &[&str], input: Option<&str>| {
            use std::io::Write as _;
            let mut child = Command::new(args[0])
                .args(&args[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(input.unwrap_or("").as_bytes()).unwrap();
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        struct Del(String);
        impl Drop for Del {
            fn drop(&mut self) {
                let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
            }
        }
        run(&["ip", "netns", "add", &ns], None);
        let _del = Del(ns.clone());
        let in_ns = |ns: String| {
            std::thread::spawn(move || {
                use std::os::fd::AsFd as _;
                let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
                nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
                check("bg0")
            })
            .join()
            .unwrap()
        };
        // Empty ruleset: fine.
        let c = in_ns(ns.clone());
        assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
        run(
            &["ip", "netns", "exec", &ns, "nft", "-f", "-"],
            Some(
                "table inet t {\n chain f { type filter hook forward priority 0; policy drop; }\n}\n",
            ),
        );
        let c = in_ns(ns.clone());
        assert_eq!(c.status, CheckStatus::Warn, "{c:?}");
        assert!(c.detail.contains("inet t f: policy drop"), "{c:?}");
        assert!(
            c.hint
                .unwrap()
                .contains("nft insert rule inet t f iifname bg0 accept")
        );
        // Accepting the bridge both ways makes it fine again.
        run(
            &["ip", "netns", "exec", &ns, "nft", "-f", "-"],
            Some(
                "add rule inet t f iifname bg0 accept\nadd rule inet t f oifname bg0 ct state related,established accept\n",
            ),
        );
        let c = in_ns(ns.clone());
        assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
        // iptables-legacy's FORWARD policy DROP, seen through `-S`.
        if Command::new("iptables-legacy").arg("-V").output().is_err() {
            banger_testsupport::skip!(TEST, "iptables-legacy is missing (legacy part only)");
        }
        run(
            &[
                "ip",
                "netns",
                "exec",
                &ns,
                "iptables-legacy",
                "-P",
                "FORWARD",
                "DROP",
            ],
            None,
        );
        let c = in_ns(ns.clone());
        assert_eq!(c.status, CheckStatus::Warn, "{c:?}");
        assert!(
            c.detail
                .contains("iptables-legacy filter FORWARD: policy drop"),
            "{c:?}"
        );
        assert!(
            c.hint
                .unwrap()
                .contains("iptables-legacy -I FORWARD -i bg0 -j ACCEPT")
        );
    }
}
