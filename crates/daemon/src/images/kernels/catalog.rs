//! The kernel catalog: which kernels `banger kernel pull NAME` can download.
//!
//! A TOML file of `[[kernel]]` tables with `name`, `version`, `url`,
//! `sha256` (64 lowercase hex digits) and optionally `initrd_url` +
//! `initrd_sha256`. The default is compiled in (`kernel_catalog.toml`); the
//! `kernel_catalog` config key names a file that replaces it.

use std::path::Path;

use serde::Deserialize;

use crate::images::ImageError;

/// The catalog shipped with banger.
pub const DEFAULT_CATALOG: &str = include_str!("catalog.toml");

/// A parsed catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Entries, in file order.
    #[serde(default, rename = "kernel")]
    pub kernels: Vec<CatalogEntry>,
}

/// One downloadable kernel.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// Name it is registered under.
    pub name: String,
    /// Kernel version.
    pub version: String,
    /// Where the vmlinux or bzImage is downloaded from.
    pub url: String,
    /// sha256 of the downloaded file (hex).
    pub sha256: String,
    /// Optional initrd URL.
    #[serde(default)]
    pub initrd_url: Option<String>,
    /// sha256 of the initrd (required with `initrd_url`).
    #[serde(default)]
    pub initrd_sha256: Option<String>,
}

impl Catalog {
    /// Parse and check a catalog; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ImageError> {
        let cat: Catalog = toml::from_str(text).map_err(|e| {
            ImageError::Invalid(format!(
                "kernel catalog {origin} is not valid: {e}; fix the file or unset `kernel_catalog`"
            ))
        })?;
        for e in &cat.kernels {
            banger_api::validate::image_name(&e.name).map_err(|err| {
                ImageError::Invalid(format!(
                    "kernel catalog {origin}: entry {:?}: {err}",
                    e.name
                ))
            })?;
            check_hex(&e.sha256, &e.name, origin)?;
            match (&e.initrd_url, &e.initrd_sha256) {
                (None, None) => {}
                (Some(_), Some(h)) => check_hex(h, &e.name, origin)?,
                _ => {
                    return Err(ImageError::Invalid(format!(
                        "kernel catalog {origin}: entry {:?} needs both initrd_url and initrd_sha256",
                        e.name
                    )));
                }
            }
        }
        Ok(cat)
    }

    /// The configured catalog: `path` when set, else the built-in one.
    pub fn load(path: Option<&Path>) -> Result<Self, ImageError> {
        match path {
            None => Self::parse(DEFAULT_CATALOG, "(built in)"),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ImageError::Invalid(format!(
                        "cannot read kernel catalog {}: {e}; fix `kernel_catalog` in the config",
                        p.display()
                    ))
                })?;
                Self::parse(&text, &p.display().to_string())
            }
        }
    }

    /// The entry named `name`, with the available names when there is none.
    pub fn entry(&self, name: &str) -> Result<&CatalogEntry, ImageError> {
        self.kernels.iter().find(|e| e.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.kernels.iter().map(|e| e.name.as_str()).collect();
            ImageError::NotFound(format!(
                "no kernel {name:?} in the catalog (available: {}); check the name or the `kernel_catalog` config key",
                names.join(", ")
            ))
        })
    }
}

fn check_hex(h: &str, name: &str, origin: &str) -> Result<(), ImageError> {
    if h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(());
    }
    Err(ImageError::Invalid(format!(
        "kernel catalog {origin}: entry {name:?}: sha256 {h:?} is not 64 lowercase hex digits"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_catalog_parses() {
        let c = Catalog::load(None).unwrap();
        assert!(c.entry("fc-6.1").is_err());
    }

    #[test]
    fn entries_parse() {
        let text = format!(
            "[[kernel]]\nname='k1'\nversion='6.1'\nurl='http://127.0.0.1/k'\nsha256='{0}'\n\
             [[kernel]]\nname='k2'\nversion='5.10'\nurl='http://127.0.0.1/k2'\nsha256='{0}'\n\
             initrd_url='http://127.0.0.1/i'\ninitrd_sha256='{0}'\n",
            "b".repeat(64)
        );
        let c = Catalog::parse(&text, "t").unwrap();
        assert_eq!(c.kernels.len(), 2);
        assert_eq!(c.entry("k2").unwrap().version, "5.10");
        assert!(c.entry("k2").unwrap().initrd_url.is_some());
    }

    #[test]
    fn bad_sha_and_half_initrd_refused() {
        let bad = "[[kernel]]\nname='a'\nversion='1'\nurl='http://x'\nsha256='zz'\n";
        let e = Catalog::parse(bad, "t").unwrap_err().to_string();
        assert!(e.contains("64 lowercase hex"), "{e}");
        let half = format!(
            "[[kernel]]\nname='a'\nversion='1'\nurl='http://x'\nsha256='{}'\ninitrd_url='http://y'\n",
            "a".repeat(64)
        );
        let e = Catalog::parse(&half, "t").unwrap_err().to_string();
        assert!(e.contains("initrd_sha256"), "{e}");
    }

    #[test]
    fn unknown_entry_lists_names() {
        let text = format!(
            "[[kernel]]\nname='k1'\nversion='6.1'\nurl='http://127.0.0.1/k'\nsha256='{}'\n",
            "b".repeat(64)
        );
        let c = Catalog::parse(&text, "t").unwrap();
        let e = c.entry("nope").unwrap_err().to_string();
        assert!(e.contains("k1"), "{e}");
    }
}
