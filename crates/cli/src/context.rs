//! What every command gets: the global options, the output streams and the
//! way to find the config, the layout and the daemon's socket.

use std::io::Write;
use std::path::{Path, PathBuf};

use banger_config::{Config, Layout, Mode};

use crate::args::GlobalArgs;
use crate::client::Client;
use crate::contexts::{ContextFile, LOCAL, Remote};
use crate::error::CliError;
use crate::output::Term;

/// The config file and the directories derived from it, resolved exactly as
/// `bangerd` resolves them.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Dev or system path.
    pub mode: Mode,
    /// The effective configuration.
    pub config: Config,
    /// The resolved directories.
    pub layout: Layout,
}

/// The state shared by all commands.
pub struct Ctx<'a> {
    /// Global options.
    pub global: GlobalArgs,
    /// Where results go.
    pub out: &'a mut dyn Write,
    /// Where progress and messages go.
    pub err: &'a mut dyn Write,
    /// What the terminal can do.
    pub term: Term,
}

impl Ctx<'_> {
    /// `-q`: print only names or ids (stderr then gets errors only).
    pub fn quiet(&self) -> bool {
        self.global.quiet
    }

    /// The mode the flags ask for.
    pub fn mode(&self) -> Mode {
        if self.global.system {
            Mode::System
        } else {
            Mode::Dev
        }
    }

    /// Load the config file and resolve the layout for `mode`.
    pub fn paths_for(&self, mode: Mode) -> Result<Paths, CliError> {
        let config_file = match &self.global.config {
            Some(f) => std::path::absolute(f).unwrap_or_else(|_| f.clone()),
            None => Layout::default_config_file(mode),
        };
        let config = Config::load(&config_file)?;
        let layout = Layout::resolve(mode, config_file, &config, self.global.state_dir.as_deref())?;
        Ok(Paths {
            mode,
            config,
            layout,
        })
    }

    /// Load the config file and resolve the layout.
    pub fn paths(&self) -> Result<Paths, CliError> {
        self.paths_for(self.mode())
    }

    /// The daemon's socket: `--socket`, else the layout's. When nothing
    /// chose the dev path explicitly and no dev daemon's socket exists but
    /// the system daemon's does, the system daemon is used, so that
    /// `banger` works without flags after `banger system install`.
    pub fn socket(&self) -> Result<PathBuf, CliError> {
        if let Some(s) = &self.global.socket {
            return Ok(s.clone());
        }
        let own = self.paths()?.layout.socket();
        let explicit =
            self.global.system || self.global.state_dir.is_some() || self.global.config.is_some();
        if explicit {
            return Ok(own);
        }
        let system = self.paths_for(Mode::System).ok().map(|p| p.layout.socket());
        Ok(choose_socket(own, system))
    }

    /// Connect to the daemon: the remote one of the context in effect
    /// (over SSH), else this machine's.
    pub fn connect(&self) -> Result<Client, CliError> {
        match self.remote()? {
            Some(r) => Ok(Client::connect_ssh(&r.target, r.ssh_config.as_ref())?),
            None => Ok(Client::connect(&self.socket()?)?),
        }
    }

    /// The remote context in effect, `None` for this machine's daemon:
    /// `--context`, else `$BANGER_CONTEXT`, else the current context of
    /// `contexts.toml`. `--socket`, `--state-dir` and `--system` name this
    /// machine's daemon, so they win over the environment and the current
    /// context, and are refused together with `--context NAME`.
    pub fn remote(&self) -> Result<Option<Remote>, CliError> {
        let env = std::env::var("BANGER_CONTEXT").ok();
        resolve_remote(&self.global, env.as_deref(), ContextFile::default_path)
    }

    /// Refuse `what` when a remote context is in effect: it works on this
    /// machine's files, which would not be the daemon's.
    pub fn local_only(&self, what: &str, instead: &str) -> Result<(), CliError> {
        match self.remote()? {
            None => Ok(()),
            Some(r) => Err(CliError::Usage(format!(
                "`banger {what}` works on this machine, but context {} ({}) is in effect; {instead}, or pass --context local",
                r.name, r.target
            ))),
        }
    }
}

/// [`Ctx::remote`] with `$BANGER_CONTEXT` as `env` and the contexts file
/// at `path()` (read only when needed).
fn resolve_remote(
    g: &GlobalArgs,
    env: Option<&str>,
    path: impl FnOnce() -> Result<PathBuf, crate::contexts::ContextError>,
) -> Result<Option<Remote>, CliError> {
    let chosen = match (&g.context, env.filter(|v| !v.is_empty())) {
        (Some(n), _) => Some((n.as_str(), None)),
        (None, Some(n)) => Some((n, Some("$BANGER_CONTEXT"))),
        (None, None) => None,
    };
    if g.socket.is_some() || g.state_dir.is_some() || g.system {
        return match chosen {
            Some((n, None)) if n != LOCAL => Err(CliError::Usage(format!(
                "--context {n} names a remote daemon, but --socket, --state-dir or --system name this machine's; give one or the other"
            ))),
            _ => Ok(None),
        };
    }
    let path = match path() {
        Ok(p) => p,
        Err(_) if chosen.is_none() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(ContextFile::load(&path)?.select(chosen)?)
}

/// A file argument a remote daemon opens (`--rootfs`, a bundle, a
/// checkout): a path on the remote host, which must be absolute (the
/// daemon has no working directory of ours) and is not checked here.
pub fn remote_path(r: &Remote, flag: &str, path: &Path) -> Result<String, CliError> {
    match path.to_str() {
        Some(p) if path.is_absolute() => Ok(p.to_string()),
        _ => Err(CliError::Usage(format!(
            "{flag} {}: with context {} the daemon opens files on {}; give an absolute (UTF-8) path on that host",
            path.display(),
            r.name,
            r.target
        ))),
    }
}

/// `dev` unless it does not exist and `system` does.
pub fn choose_socket(dev: PathBuf, system: Option<PathBuf>) -> PathBuf {
    match system {
        Some(sys) if !exists(&dev) && exists(&sys) => sys,
        _ => dev,
    }
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_socket_wins_unless_only_the_system_one_exists() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev.sock");
        let sys = dir.path().join("sys.sock");
        assert_eq!(choose_socket(dev.clone(), Some(sys.clone())), dev);
        std::fs::write(&sys, "").unwrap();
        assert_eq!(choose_socket(dev.clone(), Some(sys.clone())), sys);
        std::fs::write(&dev, "").unwrap();
        assert_eq!(choose_socket(dev.clone(), Some(sys)), dev);
        assert_eq!(choose_socket(dev.clone(), None), dev);
    }

    #[test]
    fn context_precedence_flag_env_current_then_local() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("contexts.toml");
        let mut f = ContextFile::default();
        f.add("cur", "ssh://me@cur", None).unwrap();
        f.add("env", "ssh://me@env", None).unwrap();
        f.add("flag", "ssh://me@flag", None).unwrap();
        f.save(&file).unwrap();
        let pick = |g: &GlobalArgs, env: Option<&str>| {
            resolve_remote(g, env, || Ok(file.clone())).map(|r| r.map(|r| r.name))
        };
        let none = GlobalArgs::default();
        let flag = GlobalArgs {
            context: Some("flag".into()),
            ..GlobalArgs::default()
        };
        assert_eq!(pick(&none, None).unwrap(), None, "no current: local");
        f.use_context("cur").unwrap();
        f.save(&file).unwrap();
        assert_eq!(pick(&none, None).unwrap().as_deref(), Some("cur"));
        assert_eq!(pick(&none, Some("")).unwrap().as_deref(), Some("cur"));
        assert_eq!(pick(&none, Some("env")).unwrap().as_deref(), Some("env"));
        assert_eq!(pick(&flag, Some("env")).unwrap().as_deref(), Some("flag"));
        assert_eq!(pick(&none, Some("local")).unwrap(), None);
        // A local socket wins over env and current, and conflicts with the flag.
        let socket = GlobalArgs {
            socket: Some("/s".into()),
            ..GlobalArgs::default()
        };
        assert_eq!(pick(&socket, Some("env")).unwrap(), None);
        let both = GlobalArgs {
            system: true,
            ..flag.clone()
        };
        assert_eq!(pick(&both, None).unwrap_err().exit_code(), 2);
        // No config dir: local unless a context was asked for.
        let no_dir = || Err(crate::contexts::ContextError::NoConfigDir);
        assert_eq!(resolve_remote(&none, None, no_dir).unwrap(), None);
        assert!(resolve_remote(&flag, None, no_dir).is_err());
    }

    #[test]
    fn state_dir_flag_gives_the_daemons_socket() {
        let dir = tempfile::tempdir().unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let ctx = Ctx {
            global: GlobalArgs {
                state_dir: Some(dir.path().join("s")),
                config: Some(dir.path().join("none.toml")),
                ..GlobalArgs::default()
            },
            out: &mut out,
            err: &mut err,
            term: Term::default(),
        };
        assert_eq!(ctx.socket().unwrap(), dir.path().join("s/run/bangerd.sock"));
    }
}
