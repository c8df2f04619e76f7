//! Optional Firecracker jailer configuration and its argument vector.
//!
//! When `[jailer]` is set in the install metadata, a VMM is meant to start
//! as `jailer --id <id> --exec-file <firecracker> --uid <owner> --gid
//! <owner> --chroot-base-dir <dir> -- <firecracker args>`. Only the argument
//! construction lives here (tested); `bangerd-root` refuses to start with a
//! jailer configured until hard-linking the VM's files into the chroot is
//! implemented, so a configured jailer is never silently ignored.

use std::ffi::OsString;

pub use banger_config::JailerConfig;

/// The jailer's argv (without argv\[0\]) for VM `id` running `exec_file`
/// as `uid:gid`, passing `fc_args` through to Firecracker.
pub fn jailer_args(
    cfg: &JailerConfig,
    id: &str,
    exec_file: &std::path::Path,
    uid: u32,
    gid: u32,
    fc_args: &[OsString],
) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        "--id".into(),
        id.into(),
        "--exec-file".into(),
        exec_file.into(),
        "--uid".into(),
        uid.to_string().into(),
        "--gid".into(),
        gid.to_string().into(),
        "--chroot-base-dir".into(),
        cfg.chroot_base.clone().into(),
        "--".into(),
    ];
    v.extend(fc_args.iter().cloned());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_passes_identity_and_firecracker_args() {
        let cfg = JailerConfig {
            binary: "/usr/bin/jailer".into(),
            chroot_base: "/srv/jail".into(),
        };
        let args = jailer_args(
            &cfg,
            "vm-1",
            std::path::Path::new("/usr/bin/firecracker"),
            1000,
            100,
            &["--api-sock".into(), "/run/api.sock".into()],
        );
        let s: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            s,
            [
                "--id",
                "vm-1",
                "--exec-file",
                "/usr/bin/firecracker",
                "--uid",
                "1000",
                "--gid",
                "100",
                "--chroot-base-dir",
                "/srv/jail",
                "--",
                "--api-sock",
                "/run/api.sock"
            ]
        );
    }
}
