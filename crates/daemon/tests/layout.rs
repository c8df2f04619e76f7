//! The daemon's layout rules, checked on its source (issue 16):
//!
//! - `src/<folder>/` is one part: `root` (composition root, RPC, entry),
//!   `common` (shared by all), the services `host_network`, `images`,
//!   `workspace`, `forwards`, `vms`, and `doctor`.
//! - `common/` imports no other part.
//! - A part reaches another only through the items its `mod.rs` states
//!   (`crate::images::ImageService`, never `crate::images::pull::...`).
//! - Of the services only `vms` uses other services; `root` and `doctor`
//!   may use any service; nothing uses `root`.
//!
//! Every `crate::` path in every file under a folder is read (comments
//! skipped, `{...}` groups expanded); a path breaking a rule fails the test
//! with its file and line. The top-level files (`lib.rs`, `config.rs`,
//! `privops_choice.rs`) are shared infrastructure and may be used by all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SERVICES: &[&str] = &["host_network", "images", "workspace", "forwards", "vms"];
const CONSUMERS: &[&str] = &["root", "doctor"];
const COMMON: &str = "common";

/// Known exceptions: (file under src/, target part, why). Keep it empty:
/// move what two parts share into `common/` instead.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source with `//` comments blanked (line numbers kept). Strings are
/// tracked so a `//` inside one (a URL) is kept.
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = '\0';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = if prev == '\\' && c == '\\' { '\0' } else { c };
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level elements of a `{...}` group starting at `s[0] == '{'`.
fn group(s: &str) -> Vec<String> {
    let mut depth = 0;
    let mut items = Vec::new();
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(std::mem::take(&mut cur));
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items
        .into_iter()
        .map(|i| i.split_whitespace().collect::<String>())
        .filter(|i| !i.is_empty())
        .collect()
}

/// Leaf names a use tree brings in (`a::{B, c::D as E}` gives B, E).
fn use_leaves(tree: &str, out: &mut BTreeSet<String>) {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(i) = tree.find('{') {
        for item in group(&tree[i..]) {
            use_leaves(&item, out);
        }
    } else if let Some((_, alias)) = tree.split_once(" as ") {
        out.insert(alias.trim().to_string());
    } else {
        let last = tree.rsplit("::").next().unwrap_or("").trim();
        out.insert(last.to_string());
    }
}

/// What a part's `mod.rs` states: `pub`/`pub(crate)` uses, modules and items.
fn public_items(part: &str) -> BTreeSet<String> {
    let text = strip_comments(&std::fs::read_to_string(src().join(part).join("mod.rs")).unwrap());
    let mut out = BTreeSet::new();
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for vis in ["pub use ", "pub(crate) use "] {
        for (i, _) in flat.match_indices(vis) {
            let rest = &flat[i + vis.len()..];
            let end = rest.find(';').unwrap();
            use_leaves(&rest[..end], &mut out);
        }
    }
    for kw in [
        "mod", "fn", "struct", "enum", "const", "static", "trait", "type",
    ] {
        for vis in ["pub", "pub(crate)"] {
            let pat = format!("{vis} {kw} ");
            for (i, _) in flat.match_indices(&pat) {
                out.insert(ident_at(&flat[i + pat.len()..]).to_string());
            }
        }
    }
    out
}

/// Each `crate::` path of `text` as (line, target part, first item after
/// the part or `None` when the path names the part itself).
fn crate_paths(text: &str) -> Vec<(usize, String, Vec<String>)> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        if i > 0 {
            let before = text[..i].chars().next_back().unwrap();
            if before.is_ascii_alphanumeric() || before == '_' || before == ':' {
                continue;
            }
        }
        let line = text[..i].matches('\n').count() + 1;
        let rest = &text[i + "crate::".len()..];
        if rest.starts_with('{') {
            out.push((line, "{".to_string(), Vec::new()));
            continue;
        }
        let part = ident_at(rest).to_string();
        let after = &rest[part.len()..];
        let items = match after.strip_prefix("::") {
            Some(a) if a.starts_with('{') => {
                group(a).iter().map(|g| ident_at(g).to_string()).collect()
            }
            Some(a) => vec![ident_at(a).to_string()],
            None => Vec::new(),
        };
        out.push((line, part, items));
    }
    out
}

fn violations() -> Vec<String> {
    let root = src();
    let parts: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut bad = Vec::new();
    for part in &parts {
        assert!(
            SERVICES.contains(&part.as_str())
                || CONSUMERS.contains(&part.as_str())
                || part == COMMON,
            "src/{part}/ is not a known part; add it to tests/layout.rs with its rule"
        );
        let mut files = Vec::new();
        rs_files(&root.join(part), &mut files);
        files.sort();
        for file in files {
            let rel = file.strip_prefix(&root).unwrap().display().to_string();
            let text = strip_comments(&std::fs::read_to_string(&file).unwrap());
            if let Some(n) = text.find("super::super") {
                let line = text[..n].matches('\n').count() + 1;
                bad.push(format!(
                    "src/{rel}:{line}: `super::super`; name the path from `crate::`"
                ));
            }
            for (line, target, items) in crate_paths(&text) {
                let at = format!("src/{rel}:{line}");
                if target == "{" {
                    bad.push(format!("{at}: `crate::{{...}}`; name each part's path"));
                    continue;
                }
                if target == *part || !parts.contains(&target) {
                    continue; // own folder, or a top-level file
                }
                if EXCEPTIONS.iter().any(|(f, t, _)| *f == rel && *t == target) {
                    continue;
                }
                if part == COMMON {
                    bad.push(format!(
                        "{at}: common/ imports `crate::{target}`; common imports no other part"
                    ));
                    continue;
                }
                if target == "root" {
                    bad.push(format!(
                        "{at}: `crate::root` is used by nothing; pass what is needed in"
                    ));
                    continue;
                }
                let is_service = SERVICES.contains(&target.as_str()) || target == "doctor";
                if is_service && part != "vms" && !CONSUMERS.contains(&part.as_str()) {
                    bad.push(format!(
                        "{at}: {part}/ uses the service `crate::{target}`; only vms/ uses other services"
                    ));
                    continue;
                }
                let public = public_items(&target);
                for item in items {
                    if !public.contains(&item) {
                        bad.push(format!(
                            "{at}: `crate::{target}::{item}` is not stated in src/{target}/mod.rs; use the part's public items"
                        ));
                    }
                }
            }
        }
    }
    bad
}

#[test]
fn imports_follow_the_layout_rules() {
    let bad = violations();
    assert!(bad.is_empty(), "layout rules broken:\n{}", bad.join("\n"));
}

#[test]
fn the_checker_catches_a_reach_into_a_submodule() {
    let paths = crate_paths(
        "use crate::images::pull::Thing;\nfn f() { crate::vms::{VMService, launcher::X}; }\n",
    );
    assert_eq!(
        paths,
        vec![
            (1, "images".into(), vec!["pull".into()]),
            (2, "vms".into(), vec!["VMService".into(), "launcher".into()]),
        ]
    );
    assert!(!public_items("images").contains("pull"));
    assert!(public_items("images").contains("ImageService"));
    assert!(public_items("vms").contains("VMService"));
}

#[test]
fn comments_are_not_read_as_paths() {
    let text = strip_comments("// crate::images::pull\nlet u = \"https://x\"; // crate::vms::a\n");
    assert!(crate_paths(&text).is_empty());
    assert!(text.contains("https://x"));
}
