//! Contexts: named remote `bangerd`s the CLI can talk to over SSH, kept in
//! `contexts.toml` in the user's banger config directory
//! (`$XDG_CONFIG_HOME/banger`, else `~/.config/banger`):
//!
//! ```toml
//! current = "lab"
//!
//! [contexts.lab]
//! url = "ssh://me@lab.example.com:2222"
//! ssh_config = "/home/me/.ssh/lab.conf"   # optional: `ssh -F FILE`
//! ```
//!
//! Which daemon a command talks to: `--context NAME`, else
//! `$BANGER_CONTEXT`, else `current`, else this machine's daemon. The name
//! `local` always means this machine's daemon. The file is replaced
//! atomically (a temporary file renamed over it), so concurrent `banger
//! context` commands never leave half a file.

use std::collections::BTreeMap;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::remote::{RemoteError, SshTarget};

/// The name that always means this machine's daemon.
pub const LOCAL: &str = "local";

/// Why a context could not be used, added or removed.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The context name is not allowed.
    #[error(
        "context name {0:?} is not allowed: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit (and not `local`, which means this machine)"
    )]
    Name(String),
    /// The address was refused.
    #[error(transparent)]
    Address(#[from] RemoteError),
    /// No such context.
    #[error("no context named {name:?}{}; see `banger context list`", from.map(|f| format!(" (from {f})")).unwrap_or_default())]
    Unknown {
        /// The name.
        name: String,
        /// Where the name came from, when not `--context`.
        from: Option<&'static str>,
    },
    /// The name is taken.
    #[error("a context named {0:?} exists; remove it first with `banger context rm {0}`")]
    Exists(String),
    /// Neither `$XDG_CONFIG_HOME` nor `$HOME` is set.
    #[error("cannot find your config directory: set $HOME (or $XDG_CONFIG_HOME)")]
    NoConfigDir,
    /// The file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// read, write…
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid contexts file.
    #[error("{} is not a valid contexts file: {message}; fix or remove it", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

impl ContextError {
    /// The CLI's exit code: 2 for refused input, 3 for an unknown context,
    /// 4 for a taken name, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContextError::Name(_) | ContextError::Address(_) => crate::error::EXIT_USAGE,
            ContextError::Unknown { .. } => 3,
            ContextError::Exists(_) => 4,
            ContextError::NoConfigDir | ContextError::Io { .. } | ContextError::Parse { .. } => 1,
        }
    }
}

/// One stored context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextEntry {
    /// `ssh://[user@]host[:port]`.
    pub url: String,
    /// An ssh config file for this host (`ssh -F FILE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<PathBuf>,
}

/// `contexts.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextFile {
    /// The context `banger context use` chose; absent: this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// The contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, ContextEntry>,
}

/// A context resolved to a reachable remote daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The context's name.
    pub name: String,
    /// Where its daemon is.
    pub target: SshTarget,
    /// `ssh -F FILE`, when the context has one.
    pub ssh_config: Option<PathBuf>,
}

/// Check a context name (not `local`).
pub fn check_name(name: &str) -> Result<(), ContextError> {
    let ok = name != LOCAL
        && !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ContextError::Name(name.to_string()))
    }
}

impl ContextFile {
    /// Where the file is: `contexts.toml` in the user's banger config
    /// directory.
    pub fn default_path() -> Result<PathBuf, ContextError> {
        banger_config::Layout::user_config_dir()
            .map(|d| d.join("contexts.toml"))
            .ok_or(ContextError::NoConfigDir)
    }

    /// Read `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<ContextFile, ContextError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ContextError::Io {
                    action: "read",
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let parse = |message: String| ContextError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let file: ContextFile = toml::from_str(&text).map_err(|e| parse(e.message().into()))?;
        for (name, c) in &file.contexts {
            check_name(name).map_err(|e| parse(e.to_string()))?;
            SshTarget::parse(&c.url).map_err(|e| parse(format!("context {name}: {e}")))?;
        }
        Ok(file)
    }

    /// Replace `path` with this file: a temporary file in the same
    /// directory (0600), synced, then renamed over it. The directory is
    /// made (0700) when missing.
    pub fn save(&self, path: &Path) -> Result<(), ContextError> {
        use std::io::Write as _;
        let io = |action, source| ContextError::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("create the directory of", e))?;
        let text = toml::to_string(self).map_err(|e| ContextError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".contexts-")
            .tempfile_in(dir)
            .map_err(|e| io("write", e))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|e| io("write", e))?;
        tmp.persist(path).map_err(|e| io("replace", e.error))?;
        Ok(())
    }

    /// Add context `name` (refused when taken or invalid).
    pub fn add(
        &mut self,
        name: &str,
        url: &str,
        ssh_config: Option<PathBuf>,
    ) -> Result<SshTarget, ContextError> {
        check_name(name)?;
        let target = SshTarget::parse(url)?;
        if self.contexts.contains_key(name) {
            return Err(ContextError::Exists(name.to_string()));
        }
        self.contexts.insert(
            name.to_string(),
            ContextEntry {
                url: target.to_string(),
                ssh_config,
            },
        );
        Ok(target)
    }

    /// Remove context `name`; when it was the current one, this machine
    /// becomes current.
    pub fn remove(&mut self, name: &str) -> Result<(), ContextError> {
        if self.contexts.remove(name).is_none() {
            return Err(ContextError::Unknown {
                name: name.to_string(),
                from: None,
            });
        }
        if self.current.as_deref() == Some(name) {
            self.current = None;
        }
        Ok(())
    }

    /// Make `name` current (`local`: this machine).
    pub fn use_context(&mut self, name: &str) -> Result<(), ContextError> {
        if name == LOCAL {
            self.current = None;
            return Ok(());
        }
        self.lookup(name, None)?;
        self.current = Some(name.to_string());
        Ok(())
    }

    fn lookup(&self, name: &str, from: Option<&'static str>) -> Result<Remote, ContextError> {
        let c = self
            .contexts
            .get(name)
            .ok_or_else(|| ContextError::Unknown {
                name: name.to_string(),
                from,
            })?;
        Ok(Remote {
            name: name.to_string(),
            target: SshTarget::parse(&c.url)?,
            ssh_config: c.ssh_config.clone(),
        })
    }

    /// The daemon to talk to: `chosen` (`--context`, or `$BANGER_CONTEXT`
    /// as `from`), else the current context; `None` is this machine.
    pub fn select(
        &self,
        chosen: Option<(&str, Option<&'static str>)>,
    ) -> Result<Option<Remote>, ContextError> {
        let (name, from) = match chosen {
            Some(c) => c,
            None => match &self.current {
                Some(c) => (c.as_str(), Some("`current` in contexts.toml")),
                None => return Ok(None),
            },
        };
        if name == LOCAL {
            return Ok(None);
        }
        self.lookup(name, from).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["lab", "lab-2", "a.b_c", "0"] {
            check_name(good).unwrap();
        }
        for bad in ["", "local", "-x", ".x", "a b", "a/b", &"x".repeat(64)] {
            assert!(
                matches!(check_name(bad), Err(ContextError::Name(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn add_use_select_remove() {
        let mut f = ContextFile::default();
        assert_eq!(f.select(None).unwrap(), None, "no context: this machine");
        let t = f.add("lab", "ssh://me@Lab:2222/", None).unwrap();
        assert_eq!(t.host, "lab");
        assert_eq!(
            f.contexts["lab"].url, "ssh://me@lab:2222",
            "stored canonical"
        );
        assert!(matches!(
            f.add("lab", "ssh://x@y", None),
            Err(ContextError::Exists(_))
        ));
        assert!(matches!(
            f.add("bad", "ssh://x@y z", None),
            Err(ContextError::Address(_))
        ));
        f.add("other", "ssh://o", Some("/cfg".into())).unwrap();

        // Precedence: the chosen name (flag or env), else current, else local.
        assert_eq!(f.select(None).unwrap(), None);
        f.use_context("lab").unwrap();
        assert_eq!(f.select(None).unwrap().unwrap().name, "lab");
        let o = f.select(Some(("other", None))).unwrap().unwrap();
        assert_eq!(o.ssh_config, Some(PathBuf::from("/cfg")));
        assert_eq!(f.select(Some((LOCAL, None))).unwrap(), None);
        let e = f
            .select(Some(("nope", Some("$BANGER_CONTEXT"))))
            .unwrap_err();
        assert!(e.to_string().contains("$BANGER_CONTEXT"), "{e}");
        assert_eq!(e.exit_code(), 3);
        assert!(f.use_context("nope").is_err());
        assert_eq!(
            f.current.as_deref(),
            Some("lab"),
            "a failed use changes nothing"
        );

        f.remove("lab").unwrap();
        assert_eq!(f.current, None, "removing the current context goes local");
        assert!(matches!(f.remove("lab"), Err(ContextError::Unknown { .. })));
        f.use_context("other").unwrap();
        f.use_context(LOCAL).unwrap();
        assert_eq!(f.current, None);
    }

    #[test]
    fn file_round_trips_atomically_and_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfg/banger/contexts.toml");
        assert_eq!(ContextFile::load(&path).unwrap(), ContextFile::default());
        let mut f = ContextFile::default();
        f.add("lab", "ssh://me@lab", Some("/x".into())).unwrap();
        f.use_context("lab").unwrap();
        f.save(&path).unwrap();
        assert_eq!(ContextFile::load(&path).unwrap(), f);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["contexts.toml"], "no temporary file left");

        for bad in [
            "current = 1\n",
            "[contexts.lab]\nurl = \"ssh://me@lab\"\nextra = 1\n",
            "[contexts.lab]\nurl = \"ssh://-oProxyCommand=x\"\n",
            "[contexts.local]\nurl = \"ssh://lab\"\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let e = ContextFile::load(&path).unwrap_err();
            assert!(matches!(e, ContextError::Parse { .. }), "{bad}: {e}");
        }
    }
}
