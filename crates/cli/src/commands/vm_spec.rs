//! `vm create -f FILE.toml`: a VM described in a file.
//!
//! ```toml
//! name = "dev"                     # or on the command line
//! image = "debian-12"
//! vcpus = 2
//! memory = "2G"
//! disk = "20G"
//! work_disk = "20G"
//! workspace = "."                  # a git checkout to prepare after boot
//! provision = ["setup.sh"]         # run in order after the workspace
//! forwards = ["8080:80", "3000"]   # `vm forward` each (127.0.0.1), after the create
//! ```
//!
//! Relative paths are relative to the spec file's directory. Unknown keys
//! are refused, with the line and column.

use std::path::{Path, PathBuf};

use banger_api::ByteSize;
use banger_api::forward::ForwardSpec;
use serde::Deserialize;

use crate::error::CliError;

/// The spec file's contents.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// VM name (the command line's wins).
    pub name: Option<String>,
    /// Image name or id.
    pub image: Option<String>,
    /// vCPUs.
    pub vcpus: Option<u32>,
    /// Guest memory.
    pub memory: Option<ByteSize>,
    /// Root disk size.
    pub disk: Option<ByteSize>,
    /// Work disk size.
    pub work_disk: Option<ByteSize>,
    /// A path inside a git checkout to `workspace prepare` after the boot.
    pub workspace: Option<PathBuf>,
    /// Scripts run in the guest after the workspace, in order.
    #[serde(default)]
    pub provision: Vec<PathBuf>,
    /// Port forwards (`[HOST_PORT:]GUEST_PORT`), added as `vm forward`
    /// adds them (on 127.0.0.1).
    #[serde(default)]
    pub forwards: Vec<String>,
}

impl VmSpec {
    /// Read and check `file`; relative paths in it become relative to its
    /// directory.
    pub fn load(file: &Path) -> Result<VmSpec, CliError> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            CliError::usage(format!("cannot read the VM spec {}: {e}", file.display()))
        })?;
        let mut spec = VmSpec::parse(&text)
            .map_err(|e| CliError::usage(format!("invalid VM spec {}: {e}", file.display())))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        spec.provision.iter_mut().for_each(rebase);
        spec.workspace.iter_mut().for_each(rebase);
        Ok(spec)
    }

    /// Parse spec text; the error names the line and column.
    pub fn parse(text: &str) -> Result<VmSpec, String> {
        let spec: VmSpec = toml::from_str(text).map_err(|e| e.to_string().trim().to_string())?;
        spec.forward_specs()?;
        Ok(spec)
    }

    /// The `forwards`, parsed; the error names the bad entry.
    pub fn forward_specs(&self) -> Result<Vec<ForwardSpec>, String> {
        self.forwards
            .iter()
            .map(|f| ForwardSpec::parse(f).map_err(|e| format!("forwards: {e}")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_spec_parses() {
        let s = VmSpec::parse(
            "name = \"dev\"\nimage = \"base\"\nvcpus = 2\nmemory = \"2G\"\ndisk = \"20G\"\n\
             work_disk = \"10G\"\nworkspace = \".\"\nprovision = [\"a.sh\", \"b.sh\"]\n",
        )
        .unwrap();
        assert_eq!(s.name.as_deref(), Some("dev"));
        assert_eq!(s.memory, Some(ByteSize::gib(2)));
        assert_eq!(s.provision, [PathBuf::from("a.sh"), PathBuf::from("b.sh")]);
        assert_eq!(VmSpec::parse("").unwrap(), VmSpec::default());
    }

    #[test]
    fn unknown_keys_and_bad_values_name_line_and_column() {
        let e = VmSpec::parse("image = \"base\"\ncpus = 2\n").unwrap_err();
        assert!(e.contains("line 2, column 1"), "{e}");
        assert!(e.contains("unknown field `cpus`"), "{e}");
        let e = VmSpec::parse("image = \"base\"\n\nmemory = \"lots\"\n").unwrap_err();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn forwards_parse_and_a_bad_one_is_named() {
        let s = VmSpec::parse("forwards = [\"8080:80\", \"3000\"]\n").unwrap();
        let f = s.forward_specs().unwrap();
        assert_eq!((f[0].host_port, f[0].guest_port), (Some(8080), 80));
        assert_eq!((f[1].host_port, f[1].guest_port), (None, 3000));
        let e = VmSpec::parse("forwards = [\"80:0\"]\n").unwrap_err();
        assert!(e.starts_with("forwards: guest port 0"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_spec_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vm.toml");
        std::fs::write(
            &f,
            "provision = [\"setup.sh\", \"/abs.sh\"]\nworkspace = \"src\"\n",
        )
        .unwrap();
        let s = VmSpec::load(&f).unwrap();
        assert_eq!(s.provision, [dir.path().join("setup.sh"), "/abs.sh".into()]);
        assert_eq!(s.workspace, Some(dir.path().join("src")));
        let e = VmSpec::load(&dir.path().join("none.toml")).unwrap_err();
        assert!(e.to_string().contains("cannot read the VM spec"), "{e}");
    }
}
