//! Building banger's microVM guest kernel from Debian's `linux-source`
//! package (`banger kernel build`, and CI's kernel cache).
//!
//! The recipe: unpack `/usr/src/linux-source-<series>.tar.xz`, then in the
//! tree `make ARCH=x86_64 tinyconfig`, merge the fragment kept in the
//! repository (`crates/imagemgr/kernel/microvm.config`, [`MICROVM_FRAGMENT`])
//! with `scripts/kconfig/merge_config.sh -m`, `make ARCH=x86_64 olddefconfig`,
//! check that every fragment line survived (a line olddefconfig dropped
//! means a dependency is missing from the fragment: the build fails, naming
//! it), then `make ARCH=x86_64 -jN bzImage`. Every step is an argv, run in
//! the unpacked tree; nothing from the input reaches a shell.
//!
//! Results are cached under `<cache>/<key>/` (`bzImage`, `config`,
//! `version`), `key` being `<Debian package version>-<16 hex digits of
//! sha256(recipe version, package, fragment)>` ([`KernelSource::cache_key`]),
//! so a second build of the same source and fragment is a lookup.

use std::ffi::OsString;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::kconfig::{KernelConfig, OptionValue};

/// The config fragment of banger's microVM kernel.
pub const MICROVM_FRAGMENT: &str = include_str!("../kernel/microvm.config");

/// Where Debian's `linux-source` package puts its tarball.
pub const DEBIAN_SOURCE_DIR: &str = "/usr/src";

/// dpkg's package database (for the source package's version).
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Bump when the steps change in a way the fragment does not show.
const RECIPE_VERSION: &str = "1";

/// The kernel architecture built.
const ARCH: &str = "ARCH=x86_64";

/// Lines of a failed step's log quoted in its error.
const TAIL_LINES: usize = 20;

/// Why a kernel build failed.
#[derive(Debug, thiserror::Error)]
pub enum KbuildError {
    /// A fragment line is neither an assignment nor a `not set` comment.
    #[error(
        "kernel config fragment, line {line}: {text:?} is neither `CONFIG_X=value` nor `# CONFIG_X is not set`"
    )]
    BadFragment {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// No usable kernel source.
    #[error("{0}")]
    NoSource(String),
    /// Fragment items that olddefconfig changed or dropped.
    #[error(
        "the kernel config lost {} fragment item(s) after olddefconfig: {}; add the options they depend on to the fragment",
        .0.len(),
        .0.iter().map(|l| format!("{} (wanted {}, got {})", l.option, l.wanted, l.got)).collect::<Vec<_>>().join(", ")
    )]
    Lost(Vec<Lost>),
    /// A build step exited unsuccessfully or could not run.
    #[error("kernel build step `{step}` failed ({status}); its last output:\n{tail}")]
    StepFailed {
        /// The command, as text.
        step: String,
        /// Exit status or spawn error.
        status: String,
        /// The end of its output.
        tail: String,
    },
    /// A file could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KbuildError + '_ {
    move |source| KbuildError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One fragment item that did not survive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// `CONFIG_…`.
    pub option: String,
    /// What the fragment asks for.
    pub wanted: String,
    /// What the final config has.
    pub got: String,
}

/// A parsed config fragment, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    items: Vec<(String, OptionValue)>,
}

impl Fragment {
    /// Parse a fragment strictly: blank lines and `#` comments are skipped,
    /// `# CONFIG_X is not set` is an item, `CONFIG_X=value` is an item;
    /// anything else is an error (a typo must not silently do nothing).
    pub fn parse(text: &str) -> Result<Fragment, KbuildError> {
        let mut items = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let parsed = KernelConfig::parse(line);
            let bad = || KbuildError::BadFragment {
                line: i + 1,
                text: raw.to_string(),
            };
            if line.starts_with('#') && !line.starts_with("# CONFIG_") {
                continue;
            }
            let name = line
                .trim_start_matches("# ")
                .strip_prefix("CONFIG_")
                .and_then(|r| r.split([' ', '=']).next())
                .filter(|n| {
                    !n.is_empty()
                        && n.chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                })
                .ok_or_else(bad)?;
            let value = parsed.get(name).cloned().ok_or_else(bad)?;
            items.push((name.to_string(), value));
        }
        Ok(Fragment { items })
    }

    /// The items, in file order (names without `CONFIG_`).
    pub fn items(&self) -> &[(String, OptionValue)] {
        &self.items
    }

    /// Every item as the final `config` has it; a `not set` item may also
    /// be absent. The error lists every item that differs.
    pub fn verify(&self, config: &KernelConfig) -> Result<(), KbuildError> {
        let lost: Vec<Lost> = self
            .items
            .iter()
            .filter(|(name, want)| {
                let got = config.get(name);
                match want {
                    OptionValue::NotSet => !matches!(got, None | Some(OptionValue::NotSet)),
                    w => got != Some(w),
                }
            })
            .map(|(name, want)| Lost {
                option: format!("CONFIG_{name}"),
                wanted: render(Some(want)),
                got: render(config.get(name)),
            })
            .collect();
        if lost.is_empty() {
            Ok(())
        } else {
            Err(KbuildError::Lost(lost))
        }
    }
}

fn render(v: Option<&OptionValue>) -> String {
    match v {
        Some(OptionValue::Builtin) => "y".into(),
        Some(OptionValue::Module) => "m".into(),
        Some(OptionValue::NotSet) => "not set".into(),
        Some(OptionValue::Other(s)) => s.clone(),
        None => "absent".into(),
    }
}

/// The kernel source a build starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSource {
    /// `<dir>/linux-source-<series>.tar.xz`.
    pub tarball: PathBuf,
    /// The package that installed it (`linux-source-<series>`).
    pub package: String,
    /// Its Debian version (`6.1.192-3`); `unpackaged` when dpkg does not know it.
    pub version: String,
}

impl KernelSource {
    /// The newest `linux-source-*.tar.xz` in `dir`, with the version dpkg's
    /// `status` text records for its package.
    pub fn find(dir: &Path, dpkg_status: &str) -> Result<KernelSource, KbuildError> {
        let missing = || {
            KbuildError::NoSource(format!(
                "no linux-source-*.tar.xz in {}; install Debian's kernel source and the build tools (`apt install linux-source bc bison flex libelf-dev libssl-dev build-essential`)",
                dir.display()
            ))
        };
        let mut found: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
            .map_err(|_| missing())?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let series = name
                    .strip_prefix("linux-source-")?
                    .strip_suffix(".tar.xz")?
                    .to_string();
                e.path().is_file().then_some((series, e.path()))
            })
            .collect();
        found.sort_by_key(|a| version_key(&a.0));
        let (series, tarball) = found.pop().ok_or_else(missing)?;
        let package = format!("linux-source-{series}");
        let version =
            dpkg_version(dpkg_status, &package).unwrap_or_else(|| "unpackaged".to_string());
        Ok(KernelSource {
            tarball,
            package,
            version,
        })
    }

    /// `<version>-<16 hex digits>`: the Debian version (characters outside
    /// `[A-Za-z0-9.+-]` replaced by `_`) and a hash of the recipe, the
    /// package and the fragment's config lines (comments and blank lines
    /// do not change the kernel, so they do not change the key). With
    /// `unpackaged` sources the tarball's size and mtime stand in for the
    /// version.
    pub fn cache_key(&self, fragment: &str) -> String {
        let config_lines: String = fragment
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("CONFIG_") || l.starts_with("# CONFIG_"))
            .flat_map(|l| [l, "\n"])
            .collect();
        let mut h = Sha256::new();
        let mut stamp = String::new();
        if self.version == "unpackaged"
            && let Ok(m) = std::fs::metadata(&self.tarball)
        {
            use std::os::unix::fs::MetadataExt;
            stamp = format!("{}:{}", m.size(), m.mtime());
        }
        for part in [
            "banger-kernel-build",
            RECIPE_VERSION,
            &self.package,
            &stamp,
            &config_lines,
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let hex: String = h.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let version: String = self
            .version
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || ".+-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{version}-{hex}")
    }
}

/// The `Version:` of `package` in dpkg's status text, when it is installed.
pub fn dpkg_version(status: &str, package: &str) -> Option<String> {
    status.split("\n\n").find_map(|stanza| {
        let mut is_it = false;
        let mut installed = false;
        let mut version = None;
        for line in stanza.lines() {
            if let Some(p) = line.strip_prefix("Package: ") {
                is_it = p.trim() == package;
            } else if let Some(s) = line.strip_prefix("Status: ") {
                installed = s.trim().ends_with(" installed");
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim().to_string());
            }
        }
        (is_it && installed).then_some(version).flatten()
    })
}

fn version_key(s: &str) -> Vec<(u64, String)> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .map(|p| (p.parse::<u64>().unwrap_or(0), p.to_string()))
        .collect()
}

/// One build step: a program and its arguments, run in the source tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// What it does, for progress messages.
    pub what: &'static str,
    /// The program.
    pub program: OsString,
    /// Its arguments.
    pub args: Vec<OsString>,
}

impl Step {
    fn new(what: &'static str, program: &str, args: &[&str]) -> Step {
        Step {
            what,
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
        }
    }

    fn text(&self) -> String {
        let mut s = self.program.to_string_lossy().into_owned();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }
}

/// The programs the build runs (the standard tools; tests substitute fakes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `make`.
    pub make: OsString,
    /// `tar` (unpacks the `.tar.xz`).
    pub tar: OsString,
}

impl Default for Tools {
    fn default() -> Self {
        Tools {
            make: "make".into(),
            tar: "tar".into(),
        }
    }
}

/// The configuration steps (before the check), then the build step.
pub fn steps(tools: &Tools, fragment_file: &str, jobs: usize) -> (Vec<Step>, Step) {
    let make = tools.make.to_string_lossy();
    let jobs = format!("-j{}", jobs.max(1));
    (
        vec![
            Step::new("make tinyconfig", &make, &[ARCH, "tinyconfig"]),
            Step::new(
                "merging the fragment",
                "scripts/kconfig/merge_config.sh",
                &["-m", ".config", fragment_file],
            ),
            Step::new("make olddefconfig", &make, &[ARCH, "olddefconfig"]),
        ],
        Step::new("make bzImage", &make, &[ARCH, &jobs, "bzImage"]),
    )
}

/// Files of a cached build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltKernel {
    /// The cache entry's directory.
    pub dir: PathBuf,
    /// `<dir>/bzImage`.
    pub bzimage: PathBuf,
    /// `<dir>/config`: the final `.config`.
    pub config: PathBuf,
    /// The kernel release (`make kernelrelease`'s value, from
    /// `include/config/kernel.release`).
    pub release: String,
    /// Whether it came from the cache.
    pub cached: bool,
}

impl BuiltKernel {
    fn at(dir: &Path, cached: bool) -> Option<BuiltKernel> {
        let bzimage = dir.join("bzImage");
        let config = dir.join("config");
        let release = std::fs::read_to_string(dir.join("release")).ok()?;
        (bzimage.is_file() && config.is_file()).then(|| BuiltKernel {
            dir: dir.to_path_buf(),
            bzimage,
            config,
            release: release.trim().to_string(),
            cached,
        })
    }
}

/// The cached build of `source` + `fragment` under `cache`, if any.
pub fn cached(cache: &Path, source: &KernelSource, fragment: &str) -> Option<BuiltKernel> {
    BuiltKernel::at(&cache.join(source.cache_key(fragment)), true)
}

/// What a build needs.
#[derive(Debug, Clone)]
pub struct BuildRequest<'a> {
    /// The source.
    pub source: &'a KernelSource,
    /// The config fragment text.
    pub fragment: &'a str,
    /// The cache root (`<cache>/<key>/`).
    pub cache: &'a Path,
    /// `make -j` jobs.
    pub jobs: usize,
    /// Build even when the cache has the key.
    pub no_cache: bool,
    /// The programs.
    pub tools: Tools,
}

/// The cached kernel, or a fresh build stored in the cache. The source is
/// unpacked in a temporary directory inside `cache` (removed afterwards);
/// the entry appears by a rename, so a failed or interrupted build leaves
/// no entry. `progress` gets each step's description.
pub fn build(
    req: &BuildRequest<'_>,
    progress: &mut dyn FnMut(&str),
) -> Result<BuiltKernel, KbuildError> {
    let fragment = Fragment::parse(req.fragment)?;
    let key = req.source.cache_key(req.fragment);
    let dir = req.cache.join(&key);
    if !req.no_cache
        && let Some(k) = BuiltKernel::at(&dir, true)
    {
        return Ok(k);
    }
    std::fs::create_dir_all(req.cache).map_err(io(req.cache))?;
    let work = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(req.cache)
        .map_err(io(req.cache))?;
    let log_path = work.path().join("build.log");
    progress(&format!(
        "unpacking {} ({} {})",
        req.source.tarball.display(),
        req.source.package,
        req.source.version
    ));
    let src = work.path().join("src");
    std::fs::create_dir(&src).map_err(io(&src))?;
    let mut unpack = Command::new(&req.tools.tar);
    unpack
        .arg("-xf")
        .arg(&req.source.tarball)
        .arg("-C")
        .arg(&src)
        .arg("--strip-components=1");
    run(&mut unpack, "tar -xf", &log_path)?;
    let fragment_file = work.path().join("microvm.config");
    std::fs::write(&fragment_file, req.fragment).map_err(io(&fragment_file))?;
    let (configure, make) = steps(&req.tools, &fragment_file.to_string_lossy(), req.jobs);
    for step in &configure {
        progress(step.what);
        run(
            Command::new(&step.program)
                .args(&step.args)
                .current_dir(&src),
            &step.text(),
            &log_path,
        )?;
    }
    let dot_config = src.join(".config");
    let text = std::fs::read_to_string(&dot_config).map_err(io(&dot_config))?;
    fragment.verify(&KernelConfig::parse(&text))?;
    progress(&format!("{} (the long step)", make.what));
    run(
        Command::new(&make.program)
            .args(&make.args)
            .current_dir(&src),
        &make.text(),
        &log_path,
    )?;
    let release_file = src.join("include/config/kernel.release");
    let release = std::fs::read_to_string(&release_file).map_err(io(&release_file))?;
    let staged = work.path().join("out");
    std::fs::create_dir(&staged).map_err(io(&staged))?;
    for (from, to) in [
        (src.join("arch/x86/boot/bzImage"), "bzImage"),
        (dot_config, "config"),
    ] {
        std::fs::copy(&from, staged.join(to)).map_err(io(&from))?;
    }
    std::fs::write(staged.join("release"), release.trim()).map_err(io(&staged))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&staged, &dir).map_err(io(&dir))?;
    BuiltKernel::at(&dir, false).ok_or_else(|| KbuildError::Io {
        path: dir.clone(),
        source: std::io::Error::other("the stored build is incomplete"),
    })
}

/// Run `cmd` with stdin closed and stdout + stderr appended to `log`.
fn run(cmd: &mut Command, step: &str, log: &Path) -> Result<(), KbuildError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io(log))?;
    let err = out.try_clone().map_err(io(log))?;
    let start = out.metadata().map(|m| m.len()).unwrap_or(0);
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .env("LC_ALL", "C")
        .status();
    let failed = |status: String| KbuildError::StepFailed {
        step: step.to_string(),
        status,
        tail: tail(log, start),
    };
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(failed(s.to_string())),
        Err(e) => Err(failed(format!("cannot run: {e}"))),
    }
}

/// The last [`TAIL_LINES`] lines written to `log` after offset `start`.
fn tail(log: &Path, start: u64) -> String {
    let Ok(mut f) = std::fs::File::open(log) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let from = start.max(len.saturating_sub(64 << 10));
    if f.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut buf = Vec::new();
    let _ = f.take(64 << 10).read_to_end(&mut buf);
    let lines: Vec<String> = buf.lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_fragment_parses_and_has_what_firecracker_needs() {
        let f = Fragment::parse(MICROVM_FRAGMENT).unwrap();
        let has = |n: &str| {
            f.items()
                .iter()
                .any(|(name, v)| name == n && *v == OptionValue::Builtin)
        };
        for name in crate::kconfig::required_options() {
            assert!(has(name), "fragment lacks CONFIG_{name}=y");
        }
        assert!(
            f.items()
                .iter()
                .any(|(n, v)| n == "MODULES" && *v == OptionValue::NotSet)
        );
        // Built from its own items, a config passes the check.
        let cfg: String = f
            .items()
            .iter()
            .map(|(n, v)| match v {
                OptionValue::NotSet => format!("# CONFIG_{n} is not set\n"),
                v => format!("CONFIG_{n}={}\n", render(Some(v))),
            })
            .collect();
        let parsed = KernelConfig::parse(&cfg);
        f.verify(&parsed).unwrap();
        assert!(crate::kconfig::check(&parsed).bootable);
    }

    #[test]
    fn fragment_parsing_is_strict() {
        let f = Fragment::parse(
            "# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_D=64\n",
        )
        .unwrap();
        assert_eq!(
            f.items(),
            [
                ("A".to_string(), OptionValue::Builtin),
                ("B".to_string(), OptionValue::NotSet),
                ("C".to_string(), OptionValue::Other("\"x y\"".into())),
                ("D".to_string(), OptionValue::Other("64".into())),
            ]
        );
        for bad in [
            "CONFIG_A y",
            "A=y",
            "CONFIG_=y",
            "CONFIG_a=y",
            "# CONFIG_B is set",
            "garbage",
        ] {
            let e = Fragment::parse(&format!("CONFIG_OK=y\n{bad}\n")).unwrap_err();
            assert!(
                matches!(&e, KbuildError::BadFragment { line: 2, .. }),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn verify_names_every_lost_item() {
        let f = Fragment::parse(
            "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n# CONFIG_D is not set\nCONFIG_E=\"s\"\n",
        )
        .unwrap();
        let good = KernelConfig::parse(
            "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_E=\"s\"\nCONFIG_X=y\n",
        );
        f.verify(&good).unwrap();
        let bad =
            KernelConfig::parse("CONFIG_A=m\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_E=\"t\"\n");
        let KbuildError::Lost(lost) = f.verify(&bad).unwrap_err() else {
            panic!("not Lost")
        };
        let summary: Vec<(&str, &str, &str)> = lost
            .iter()
            .map(|l| (l.option.as_str(), l.wanted.as_str(), l.got.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("CONFIG_A", "y", "m"),
                ("CONFIG_B", "y", "not set"),
                ("CONFIG_C", "not set", "y"),
                ("CONFIG_E", "\"s\"", "\"t\""),
            ]
        );
        let msg = f.verify(&KernelConfig::parse("")).unwrap_err().to_string();
        assert!(msg.contains("lost 3 fragment item(s)"), "{msg}");
        assert!(msg.contains("CONFIG_A (wanted y, got absent)"), "{msg}");
    }

    const STATUS: &str = "Package: bc\nStatus: install ok installed\nVersion: 1.07\n\nPackage: linux-source-6.1\nStatus: install ok installed\nVersion: 6.1.192-3\n\nPackage: linux-source-5.10\nStatus: deinstall ok config-files\nVersion: 5.10.1-1\n";

    #[test]
    fn source_discovery_and_dpkg_version() {
        assert_eq!(
            dpkg_version(STATUS, "linux-source-6.1").as_deref(),
            Some("6.1.192-3")
        );
        assert_eq!(dpkg_version(STATUS, "linux-source-5.10"), None);
        assert_eq!(dpkg_version(STATUS, "linux-source"), None);

        let dir = tempfile::tempdir().unwrap();
        let e = KernelSource::find(dir.path(), STATUS).unwrap_err();
        assert!(e.to_string().contains("apt install linux-source"), "{e}");
        for f in [
            "linux-source-5.10.tar.xz",
            "linux-source-6.1.tar.xz",
            "linux-source-6.12.tar.bz2",
            "linux-patch-6.1-rt.patch.xz",
        ] {
            std::fs::write(dir.path().join(f), b"x").unwrap();
        }
        let s = KernelSource::find(dir.path(), STATUS).unwrap();
        assert_eq!(s.package, "linux-source-6.1");
        assert_eq!(s.version, "6.1.192-3");
        std::fs::write(dir.path().join("linux-source-6.12.tar.xz"), b"x").unwrap();
        let s = KernelSource::find(dir.path(), STATUS).unwrap();
        assert_eq!(
            (s.package.as_str(), s.version.as_str()),
            ("linux-source-6.12", "unpackaged"),
            "6.12 sorts after 6.1; dpkg does not know it"
        );
    }

    #[test]
    fn cache_key_follows_version_package_and_fragment() {
        let s = KernelSource {
            tarball: "/usr/src/linux-source-6.1.tar.xz".into(),
            package: "linux-source-6.1".into(),
            version: "1:6.1.192-3~bpo".into(),
        };
        let k = s.cache_key("CONFIG_A=y\n");
        let (v, hash) = k.rsplit_once('-').unwrap();
        assert_eq!(v, "1_6.1.192-3_bpo", "epoch and tilde are made path-safe");
        assert_eq!(hash.len(), 16);
        assert_eq!(k, s.cache_key("CONFIG_A=y\n"), "stable");
        assert_ne!(k, s.cache_key("CONFIG_A=y\nCONFIG_B=y\n"));
        assert_ne!(k, s.cache_key("# CONFIG_A is not set\n"));
        assert_eq!(
            k,
            s.cache_key("# the fragment\n\n  CONFIG_A=y\n# another comment\n"),
            "comments and blank lines do not change the kernel"
        );
        let newer = KernelSource {
            version: "6.1.193-1".into(),
            ..s.clone()
        };
        assert_ne!(k, newer.cache_key("CONFIG_A=y\n"));
        let other = KernelSource {
            package: "linux-source-6.12".into(),
            ..s.clone()
        };
        assert_ne!(
            k.rsplit_once('-').unwrap().1,
            other.cache_key("CONFIG_A=y\n").rsplit_once('-').unwrap().1
        );
    }

    #[test]
    fn steps_are_argv() {
        let (conf, make) = steps(&Tools::default(), "/w/microvm.config", 3);
        let text: Vec<String> = conf.iter().map(Step::text).collect();
        assert_eq!(
            text,
            [
                "make ARCH=x86_64 tinyconfig",
                "scripts/kconfig/merge_config.sh -m .config /w/microvm.config",
                "make ARCH=x86_64 olddefconfig",
            ]
        );
        assert_eq!(make.text(), "make ARCH=x86_64 -j3 bzImage");
        assert_eq!(
            steps(&Tools::default(), "f", 0).1.text(),
            "make ARCH=x86_64 -j1 bzImage"
        );
    }

    /// A fake source tree and `make`: tinyconfig writes a base config,
    /// olddefconfig drops what `DROP` names, bzImage writes a file.
    fn fake_tree(root: &Path, drop: &str) -> (KernelSource, Tools) {
        let tree = root.join("tree/linux-source-6.1");
        std::fs::create_dir_all(tree.join("scripts/kconfig")).unwrap();
        let merge = tree.join("scripts/kconfig/merge_config.sh");
        std::fs::write(
            &merge,
            "#!/bin/sh\n[ \"$1\" = -m ] || exit 9\ncat \"$3\" >>\"$2\"\n",
        )
        .unwrap();
        let make = root.join("make");
        std::fs::write(
            &make,
            format!(
                "#!/bin/sh\necho \"fake make $*\"\n[ \"$1\" = ARCH=x86_64 ] || exit 7\ncase \"$2\" in\n tinyconfig) printf 'CONFIG_BASE=y\\n' >.config ;;\n olddefconfig) grep -v '{drop}' .config >.c2; mv .c2 .config ;;\n -j*) [ \"$3\" = bzImage ] || exit 8; mkdir -p arch/x86/boot include/config; echo kernel >arch/x86/boot/bzImage; echo 6.1.192 >include/config/kernel.release ;;\n *) exit 6 ;;\nesac\n"
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        for f in [&merge, &make] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let src_dir = root.join("src");
        std::fs::create_dir(&src_dir).unwrap();
        let tarball = src_dir.join("linux-source-6.1.tar.xz");
        let ok = Command::new("tar")
            .arg("-cJf")
            .arg(&tarball)
            .arg("-C")
            .arg(root.join("tree"))
            .arg("linux-source-6.1")
            .status()
            .unwrap();
        assert!(ok.success());
        let source = KernelSource::find(&src_dir, STATUS).unwrap();
        (
            source,
            Tools {
                make: make.into_os_string(),
                tar: "tar".into(),
            },
        )
    }

    #[test]
    fn build_runs_the_steps_verifies_and_caches() {
        let root = tempfile::tempdir().unwrap();
        let (source, tools) = fake_tree(root.path(), "NOTHING");
        let cache = root.path().join("cache");
        let fragment = "CONFIG_A=y\n# CONFIG_MODULES is not set\n";
        let req = BuildRequest {
            source: &source,
            fragment,
            cache: &cache,
            jobs: 2,
            no_cache: false,
            tools: tools.clone(),
        };
        assert!(cached(&cache, &source, fragment).is_none());
        let mut seen = Vec::new();
        let k = build(&req, &mut |s| seen.push(s.to_string())).unwrap();
        assert!(!k.cached);
        assert_eq!(k.dir, cache.join(source.cache_key(fragment)));
        assert_eq!(std::fs::read_to_string(&k.bzimage).unwrap(), "kernel\n");
        assert_eq!(k.release, "6.1.192");
        let cfg = std::fs::read_to_string(&k.config).unwrap();
        assert!(
            cfg.contains("CONFIG_BASE=y") && cfg.contains("CONFIG_A=y"),
            "{cfg}"
        );
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(seen[4].contains("make bzImage"));
        // Only the entry is left in the cache: the work tree is gone.
        let left: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);

        // A second build is a cache hit that runs nothing.
        let broken = BuildRequest {
            tools: Tools {
                make: "/nonexistent/make".into(),
                tar: "/nonexistent/tar".into(),
            },
            ..req.clone()
        };
        let again = build(&broken, &mut |_| panic!("no step runs")).unwrap();
        assert!(again.cached);
        assert_eq!(again.bzimage, k.bzimage);
        assert_eq!(cached(&cache, &source, fragment), Some(again));
        // A different fragment is a different key: not cached.
        assert!(cached(&cache, &source, "CONFIG_B=y\n").is_none());
        // no_cache rebuilds (and fails here, with the broken tools).
        let e = build(
            &BuildRequest {
                no_cache: true,
                ..broken
            },
            &mut |_| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("tar -xf"), "{e}");
    }

    #[test]
    fn a_dropped_item_fails_the_build_and_caches_nothing() {
        let root = tempfile::tempdir().unwrap();
        let (source, tools) = fake_tree(root.path(), "CONFIG_VIRTIO_MMIO=y");
        let cache = root.path().join("cache");
        let fragment = "CONFIG_A=y\nCONFIG_VIRTIO_MMIO=y\n";
        let req = BuildRequest {
            source: &source,
            fragment,
            cache: &cache,
            jobs: 1,
            no_cache: false,
            tools,
        };
        let e = build(&req, &mut |_| {}).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(&e, KbuildError::Lost(l) if l.len() == 1 && l[0].option == "CONFIG_VIRTIO_MMIO"),
            "{msg}"
        );
        assert!(cached(&cache, &source, fragment).is_none());
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
    }

    #[test]
    fn a_failing_step_reports_its_output() {
        let root = tempfile::tempdir().unwrap();
        let (source, mut tools) = fake_tree(root.path(), "NOTHING");
        let failing = root.path().join("failmake");
        std::fs::write(
            &failing,
            "#!/bin/sh\necho 'no rule to make target'\nexit 2\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
        tools.make = failing.into_os_string();
        let cache = root.path().join("cache");
        let e = build(
            &BuildRequest {
                source: &source,
                fragment: "CONFIG_A=y\n",
                cache: &cache,
                jobs: 1,
                no_cache: false,
                tools,
            },
            &mut |_| {},
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("tinyconfig` failed"), "{msg}");
        assert!(msg.contains("no rule to make target"), "{msg}");
    }
}
