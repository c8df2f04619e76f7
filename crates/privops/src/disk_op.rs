//! Loop devices and device-mapper snapshots: validation of the disk
//! variants of [`PrivOp`] and their in-process implementation.
//!
//! Backing files must lie inside banger's directories (`check_path`), loop
//! devices are exactly `/dev/loopN`, dm names carry banger's prefix, and a
//! dm table is never taken from a request: it is built here from typed
//! fields by [`snapshot_table`]. Programs run by argv (`losetup`,
//! `dmsetup`), never through a shell.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::op::{PrivOp, PrivReply};
use crate::{Policy, PrivOpsError};

/// Longest device-mapper name (DM_NAME_LEN - 1).
pub const MAX_DM_NAME: usize = 127;

/// The device-mapper control node; its absence means no device-mapper.
pub const DM_CONTROL: &str = "/dev/mapper/control";

/// One attached loop device whose backing file is inside banger's
/// directories, as [`PrivOp::ListDisks`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopInfo {
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// The file behind it.
    pub backing_file: PathBuf,
}

/// The `dm-snapshot` table line for a persistent snapshot of `base` with
/// exceptions stored on `cow` in chunks of `chunk_sectors` 512-byte sectors.
pub fn snapshot_table(sectors: u64, base: &Path, cow: &Path, chunk_sectors: u32) -> String {
    format!(
        "0 {sectors} snapshot {} {} P {chunk_sectors}",
        base.display(),
        cow.display()
    )
}

/// Whether `p` is exactly `/dev/loopN`.
pub fn is_loop_device(p: &Path) -> bool {
    p.to_str()
        .and_then(|s| s.strip_prefix("/dev/loop"))
        .is_some_and(|n| !n.is_empty() && n.len() <= 6 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether `name` is a banger dm name: the prefix, then 1+ of `[a-z0-9-]`,
/// at most [`MAX_DM_NAME`] in all.
pub fn dm_name_ok(policy: &Policy, name: &str) -> bool {
    let p = &policy.device_prefix;
    name.starts_with(p.as_str())
        && name.len() > p.len()
        && name.len() <= MAX_DM_NAME
        && name[p.len()..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn refused(op: &'static str, reason: String) -> PrivOpsError {
    PrivOpsError::Refused { op, reason }
}

fn check_loop(op: &'static str, p: &Path) -> Result<(), PrivOpsError> {
    if is_loop_device(p) {
        Ok(())
    } else {
        Err(refused(
            op,
            format!("{} is not a loop device (/dev/loopN)", p.display()),
        ))
    }
}

fn check_dm(op: &'static str, policy: &Policy, name: &str) -> Result<(), PrivOpsError> {
    if dm_name_ok(policy, name) {
        Ok(())
    } else {
        Err(refused(
            op,
            format!(
                "dm name {name:?} must start with {:?}, be at most {MAX_DM_NAME} characters and use only a-z, 0-9 and '-'",
                policy.device_prefix
            ),
        ))
    }
}

/// Validate a disk variant.
pub(crate) fn validate(op: PrivOp, policy: &Policy) -> Result<PrivOp, PrivOpsError> {
    let name = op.name();
    match op {
        PrivOp::LoopAttach { file, read_only } => Ok(PrivOp::LoopAttach {
            file: policy.check_path(name, &file)?,
            read_only,
        }),
        PrivOp::LoopDetach { device } => {
            check_loop(name, &device)?;
            Ok(PrivOp::LoopDetach { device })
        }
        PrivOp::DmCreateSnapshot {
            name: dm,
            sectors,
            base,
            cow,
            chunk_sectors,
        } => {
            check_dm(name, policy, &dm)?;
            check_loop(name, &base)?;
            check_loop(name, &cow)?;
            if base == cow {
                return Err(refused(name, "base and COW are the same device".into()));
            }
            if sectors == 0 || sectors > (1 << 40) {
                return Err(refused(name, format!("invalid size of {sectors} sectors")));
            }
            if !chunk_sectors.is_power_of_two() || !(8..=2048).contains(&chunk_sectors) {
                return Err(refused(
                    name,
                    format!("chunk size {chunk_sectors} must be a power of two in 8..=2048"),
                ));
            }
            Ok(PrivOp::DmCreateSnapshot {
                name: dm,
                sectors,
                base,
                cow,
                chunk_sectors,
            })
        }
        PrivOp::DmRemove { name: dm } => {
            check_dm(name, policy, &dm)?;
            Ok(PrivOp::DmRemove { name: dm })
        }
        PrivOp::ListDisks => Ok(PrivOp::ListDisks),
        other => Err(refused(
            name,
            format!("{} is not a disk operation", other.name()),
        )),
    }
}

fn run(program: &'static str, args: &[&std::ffi::OsStr]) -> Result<String, PrivOpsError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| PrivOpsError::Command {
            program,
            message: format!("cannot run it ({e}); install it (util-linux / dmsetup)"),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(PrivOpsError::Command {
            program,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Perform a validated disk variant.
pub(crate) fn execute(op: PrivOp, policy: &Policy) -> Result<PrivReply, PrivOpsError> {
    match op {
        PrivOp::LoopAttach { file, read_only } => {
            let mut args: Vec<&std::ffi::OsStr> = vec!["--find".as_ref(), "--show".as_ref()];
            if read_only {
                args.push("--read-only".as_ref());
            }
            args.push(file.as_os_str());
            let out = run("losetup", &args)?;
            let device = PathBuf::from(out.trim());
            if !is_loop_device(&device) {
                return Err(PrivOpsError::Command {
                    program: "losetup",
                    message: format!("unexpected device name {:?}", out.trim()),
                });
            }
            Ok(PrivReply::LoopAttached { device })
        }
        PrivOp::LoopDetach { device } => {
            if backing_file(&device).is_none() {
                return Ok(PrivReply::Removed { existed: false });
            }
            run("losetup", &["--detach".as_ref(), device.as_os_str()])?;
            Ok(PrivReply::Removed { existed: true })
        }
        PrivOp::DmCreateSnapshot {
            name,
            sectors,
            base,
            cow,
            chunk_sectors,
        } => {
            let table = snapshot_table(sectors, &base, &cow, chunk_sectors);
            run(
                "dmsetup",
                &[
                    "create".as_ref(),
                    name.as_ref(),
                    "--table".as_ref(),
                    table.as_ref(),
                ],
            )?;
            Ok(PrivReply::Done)
        }
        PrivOp::DmRemove { name } => {
            if !Path::new("/dev/mapper").join(&name).exists() {
                return Ok(PrivReply::Removed { existed: false });
            }
            run("dmsetup", &["remove".as_ref(), name.as_ref()])?;
            Ok(PrivReply::Removed { existed: true })
        }
        PrivOp::ListDisks => Ok(PrivReply::Disks {
            dm: list_dm(policy)?,
            loops: list_loops(policy),
        }),
        other => Err(refused(other.name(), "not a disk operation".into())),
    }
}

/// The backing file of `/dev/loopN`, from sysfs; `None` when detached.
fn backing_file(device: &Path) -> Option<PathBuf> {
    let n = device.file_name()?.to_str()?;
    let s = std::fs::read_to_string(format!("/sys/block/{n}/loop/backing_file")).ok()?;
    Some(PathBuf::from(s.trim_end_matches('\n')))
}

fn list_loops(policy: &Policy) -> Vec<LoopInfo> {
    let Ok(rd) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut out: Vec<LoopInfo> = rd
        .flatten()
        .filter_map(|e| {
            let device = Path::new("/dev").join(e.file_name());
            if !is_loop_device(&device) {
                return None;
            }
            let backing_file = backing_file(&device)?;
            policy
                .check_path("list_disks", &backing_file)
                .ok()
                .map(|_| LoopInfo {
                    device,
                    backing_file,
                })
        })
        .collect();
    out.sort_by(|a, b| a.device.cmp(&b.device));
    out
}

fn list_dm(policy: &Policy) -> Result<Vec<String>, PrivOpsError> {
    if !Path::new(DM_CONTROL).exists() {
        return Ok(Vec::new());
    }
    let out = run("dmsetup", &["ls".as_ref()])?;
    Ok(parse_dmsetup_ls(&out, policy))
}

/// banger's names in `dmsetup ls` output (`name\t(maj:min)` lines).
pub(crate) fn parse_dmsetup_ls(out: &str, policy: &Policy) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| dm_name_ok(policy, n))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn policy(root: &Path) -> Policy {
        Policy {
            device_prefix: "bg".into(),
            state_dir: root.join("state"),
            runtime_dir: root.join("run"),
            subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
            owner_uid: 1000,
            vmm_binary: PathBuf::from("/usr/bin/firecracker"),
        }
    }

    #[test]
    fn table_is_exact() {
        assert_eq!(
            snapshot_table(
                4_194_304,
                Path::new("/dev/loop3"),
                Path::new("/dev/loop4"),
                8
            ),
            "0 4194304 snapshot /dev/loop3 /dev/loop4 P 8"
        );
    }

    #[test]
    fn loop_devices() {
        assert!(is_loop_device(Path::new("/dev/loop0")));
        assert!(is_loop_device(Path::new("/dev/loop123")));
        for bad in [
            "/dev/loop",
            "/dev/sda",
            "/dev/loop1/../sda",
            "/dev/loopx",
            "loop0",
        ] {
            assert!(!is_loop_device(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn validation_refuses_outside_the_rules() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("state/images")).unwrap();
        std::fs::create_dir_all(t.path().join("run")).unwrap();
        let p = policy(t.path());
        let snap = |name: &str, base: &str, cow: &str, chunk| PrivOp::DmCreateSnapshot {
            name: name.into(),
            sectors: 2048,
            base: base.into(),
            cow: cow.into(),
            chunk_sectors: chunk,
        };
        assert!(
            snap("bgroot-a1", "/dev/loop1", "/dev/loop2", 8)
                .validate(&p)
                .is_ok()
        );
        assert!(
            snap("root-a1", "/dev/loop1", "/dev/loop2", 8)
                .validate(&p)
                .is_err()
        );
        assert!(
            snap("bgroot-a1", "/dev/sda", "/dev/loop2", 8)
                .validate(&p)
                .is_err()
        );
        assert!(
            snap("bgroot-a1", "/dev/loop2", "/dev/loop2", 8)
                .validate(&p)
                .is_err()
        );
        assert!(
            snap("bgroot-a1", "/dev/loop1", "/dev/loop2", 12)
                .validate(&p)
                .is_err()
        );
        assert!(
            snap("bg/../x", "/dev/loop1", "/dev/loop2", 8)
                .validate(&p)
                .is_err()
        );
        let attach = |f: PathBuf| PrivOp::LoopAttach {
            file: f,
            read_only: true,
        };
        assert!(
            attach(t.path().join("state/images/a.ext4"))
                .validate(&p)
                .is_ok()
        );
        assert!(attach("/etc/shadow".into()).validate(&p).is_err());
        assert!(
            PrivOp::LoopDetach {
                device: "/dev/sda".into()
            }
            .validate(&p)
            .is_err()
        );
        assert!(
            PrivOp::DmRemove {
                name: "vg0-root".into()
            }
            .validate(&p)
            .is_err()
        );
    }

    #[test]
    fn dmsetup_ls_keeps_only_banger_names() {
        let p = policy(Path::new("/x"));
        let out = "bgroot-1a\t(253:0)\nvg0-root\t(253:1)\nbgcow-2\t(253:2)\n";
        assert_eq!(parse_dmsetup_ls(out, &p), vec!["bgroot-1a", "bgcow-2"]);
        assert!(parse_dmsetup_ls("No devices found\n", &p).is_empty());
    }
}
