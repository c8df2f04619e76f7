//! What every command gets: the global options, the output streams and the
//! way to find the config, the layout and the daemon's socket.

use std::io::Write;
use std::path::{Path, PathBuf};

use banger_config::{Config, Layout, Mode};

use crate::args::GlobalArgs;
use crate::client::Client;
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

    /// Connect to the daemon.
    pub fn connect(&self) -> Result<Client, CliError> {
        Ok(Client::connect(&self.socket()?)?)
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
