//! `docs/configuration.md` is checked against the code: its TOML block is
//! the default configuration (`Config::default()`), it names every key the
//! configuration has and no other, its table lists the same keys with the
//! same defaults, and the ranges the table gives are the ones
//! `Config::load` enforces. Drift in either direction fails here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use banger_config::{Config, EXAMPLE};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md")
}

fn doc() -> String {
    let p = doc_path();
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// The first ```toml block of the page.
fn defaults_block(doc: &str) -> String {
    let mut lines = doc.lines();
    lines
        .by_ref()
        .find(|l| l.trim() == "```toml")
        .expect("docs/configuration.md has no ```toml block");
    let body: Vec<&str> = lines.take_while(|l| l.trim() != "```").collect();
    body.join("\n") + "\n"
}

/// `block` with commented-out assignments (`# key = value`) made real;
/// prose comments stay comments.
fn uncommented(block: &str) -> String {
    block
        .lines()
        .map(|l| {
            let Some(rest) = l.trim_start().strip_prefix('#') else {
                return l.to_string();
            };
            let rest = rest.trim_start();
            let is_assignment = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
            }) && toml::from_str::<toml::Table>(rest).is_ok();
            if is_assignment {
                rest.to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Dotted paths of every leaf of a TOML table (sub-tables are walked).
fn toml_keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => toml_keys(t, &path, out),
            _ => {
                out.insert(path);
            }
        }
    }
}

/// Every key the configuration has, read from `Config`'s own
/// `Deserialize` implementation (struct field lists, nested structs
/// walked), so a new field shows up here without anyone listing it.
fn config_keys() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let _ = <Config as serde::Deserialize>::deserialize(Tracer {
        path: String::new(),
        out: &mut out,
    });
    // A struct field whose type is itself a struct is a table, not a key.
    let tables: BTreeSet<String> = out
        .iter()
        .filter(|k| out.iter().any(|o| o.starts_with(&format!("{k}."))))
        .cloned()
        .collect();
    out.retain(|k| !tables.contains(k));
    out
}

#[derive(Debug)]
struct TraceError(String);
impl std::fmt::Display for TraceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for TraceError {}
impl de::Error for TraceError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        TraceError(msg.to_string())
    }
}

/// A deserializer that records the fields of every struct it is asked for
/// and hands out plausible leaf values (0, false, an IPv4 network string,
/// empty sequences, `None`, an enum's first variant).
struct Tracer<'a> {
    path: String,
    out: &'a mut BTreeSet<String>,
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = TraceError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_u64(0)
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_bool(false)
    }
    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_str("172.30.0.0/24")
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        self.deserialize_str(v)
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_none()
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, TraceError> {
        v.visit_seq(de::value::SeqDeserializer::<_, TraceError>::new(
            std::iter::empty::<u64>(),
        ))
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TraceError> {
        let first = variants.first().copied().unwrap_or_default();
        v.visit_enum(first.into_deserializer())
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, TraceError> {
        let prefix = if self.path.is_empty() {
            String::new()
        } else {
            format!("{}.", self.path)
        };
        for f in fields {
            self.out.insert(format!("{prefix}{f}"));
        }
        v.visit_map(Fields {
            prefix,
            fields: fields.iter(),
            out: self.out,
        })
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char bytes byte_buf
        unit unit_struct newtype_struct tuple tuple_struct map identifier
        ignored_any
    }
}

struct Fields<'a> {
    prefix: String,
    fields: std::slice::Iter<'static, &'static str>,
    out: &'a mut BTreeSet<String>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = TraceError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, TraceError> {
        match self.fields.as_slice().first() {
            None => Ok(None),
            Some(f) => seed.deserialize((*f).into_deserializer()).map(Some),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, TraceError> {
        let f = self.fields.next().expect("a value follows its key");
        seed.deserialize(Tracer {
            path: format!("{}{f}", self.prefix),
            out: self.out,
        })
    }
}

/// Rows of the table under "What each key means": key → (default, range).
fn table(doc: &str) -> BTreeMap<String, (String, String)> {
    let mut rows = BTreeMap::new();
    for line in doc.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| `key` | default | range | meaning |" splits into 6 cells.
        if cells.len() < 6 || !cells[1].starts_with('`') {
            continue;
        }
        let key = cells[1].trim_matches('`').to_string();
        let dup = rows.insert(key.clone(), (cells[2].to_string(), cells[3].to_string()));
        assert!(dup.is_none(), "table lists {key} twice");
    }
    rows
}

/// A TOML document that sets the dotted `key` to the TOML literal `value`.
fn setting(key: &str, value: &str) -> String {
    match key.split_once('.') {
        Some((section, k)) => format!("[{section}]\n{k} = {value}\n"),
        None => format!("{key} = {value}\n"),
    }
}

fn diff(what: &str, documented: &BTreeSet<String>, code: &BTreeSet<String>) {
    let missing: Vec<_> = code.difference(documented).collect();
    let unknown: Vec<_> = documented.difference(code).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "{what} of docs/configuration.md disagree with the code: keys missing {missing:?}, keys the code does not have {unknown:?}"
    );
}

#[test]
fn tracer_sees_every_section_and_option_key() {
    let keys = config_keys();
    // Sanity of the tracer itself: nested tables and Option fields appear.
    for k in [
        "firecracker_bin",
        "state_dir",
        "vm.disk",
        "network.guest_dns",
        "daemon.idle_cpu_ms",
        "guest.agent",
    ] {
        assert!(keys.contains(k), "tracer missed {k}: {keys:?}");
    }
    assert!(!keys.contains("vm"), "tables are not keys: {keys:?}");
}

#[test]
fn documented_block_is_the_default_config() {
    let block = defaults_block(&doc());
    let parsed: Config = toml::from_str(&block).unwrap_or_else(|e| {
        panic!("the TOML block of docs/configuration.md does not parse as a Config: {e}")
    });
    assert_eq!(
        parsed,
        Config::default(),
        "the TOML block of docs/configuration.md is not Config::default()"
    );
}

#[test]
fn documented_block_names_every_key_and_no_other() {
    let block = uncommented(&defaults_block(&doc()));
    // Commented-out keys must exist too (deny_unknown_fields) and pass the
    // range checks with their example values.
    let parsed: Config = toml::from_str(&block)
        .unwrap_or_else(|e| panic!("the block with its commented keys does not parse: {e}"));
    parsed
        .check()
        .expect("example values in the block are valid");
    let table: toml::Table = toml::from_str(&block).unwrap();
    let mut documented = BTreeSet::new();
    toml_keys(&table, "", &mut documented);
    diff("the TOML block's keys", &documented, &config_keys());
}

#[test]
fn table_lists_every_key_with_its_default() {
    let doc = doc();
    let rows = table(&doc);
    let keys: BTreeSet<String> = rows.keys().cloned().collect();
    diff("the table's keys", &keys, &config_keys());
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    let mut with_default = BTreeSet::new();
    toml_keys(&defaults, "", &mut with_default);
    for (key, (default, _)) in &rows {
        if default.starts_with("unset") {
            assert!(
                !with_default.contains(key),
                "{key}: the table says unset, but Config::default() sets it"
            );
            continue;
        }
        let literal = default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
            .filter(|d| !d.contains('`'))
            .unwrap_or_else(|| {
                panic!("{key}: default cell {default:?} is neither `<TOML value>` nor 'unset…'")
            });
        let parsed: Config = toml::from_str(&setting(key, literal))
            .unwrap_or_else(|e| panic!("{key}: default {literal} does not parse: {e}"));
        assert_eq!(
            parsed,
            Config::default(),
            "{key}: the table's default {literal} is not the code's"
        );
    }
}

#[test]
fn table_ranges_are_the_enforced_ones() {
    let doc = doc();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    let load = |text: String| {
        std::fs::write(&file, &text).unwrap();
        Config::load(&file).map_err(|e| e.to_string())
    };
    let mut checked = 0;
    for (key, (_, range)) in table(&doc) {
        let Some((lo, hi)) = range.split_once('–') else {
            continue;
        };
        let (Ok(lo), Ok(hi)) = (lo.parse::<u64>(), hi.parse::<u64>()) else {
            continue;
        };
        for ok in [lo, hi] {
            load(setting(&key, &ok.to_string())).unwrap_or_else(|e| {
                panic!("{key} = {ok} is inside the documented range {range} but refused: {e}")
            });
        }
        let mut outside = vec![hi + 1];
        if lo > 0 {
            outside.push(lo - 1);
        }
        for bad in outside {
            let err = load(setting(&key, &bad.to_string()))
                .err()
                .unwrap_or_else(|| {
                    panic!("{key} = {bad} is outside the documented range {range} but accepted")
                });
            assert!(
                err.contains(&key),
                "{key} = {bad}: the error does not name the key: {err}"
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 10,
        "only {checked} integer ranges found in the table"
    );
}

#[test]
fn example_of_config_default_agrees_with_the_docs() {
    // `banger config default` prints EXAMPLE: whatever it sets is set to
    // the same value on the page, it names every key of `Config` (set or
    // commented out) and no other.
    let example: toml::Table = toml::from_str(&uncommented(EXAMPLE)).unwrap();
    let mut named = BTreeSet::new();
    toml_keys(&example, "", &mut named);
    let keys = config_keys();
    let stray: Vec<_> = named.difference(&keys).collect();
    assert!(
        stray.is_empty(),
        "EXAMPLE names keys the code does not have: {stray:?}"
    );
    let missing: Vec<_> = keys.difference(&named).collect();
    assert!(
        missing.is_empty(),
        "EXAMPLE (`banger config default`) lacks keys of Config, set or commented: {missing:?}"
    );
    let set: Config = toml::from_str(EXAMPLE).unwrap();
    let documented: Config = toml::from_str(&defaults_block(&doc())).unwrap();
    assert_eq!(
        set, documented,
        "EXAMPLE and docs/configuration.md disagree on a default"
    );
}
