//! Loop devices and device-mapper snapshots: validation of the disk
//! variants of [`PrivOp`] and their in-process implementation.
//!
//! Backing files must lie inside banger's directories (`check_path`), loop
//! devices are exactly `/dev/loopN`, dm names carry banger's prefix, and a
//! dm table is never taken from a request: it is built here from typed
//! fields by [`snapshot_table`]. Loop devices go through the `loopdev`
//! crate (loopdev-3) and device-mapper through the `devicemapper` crate:
//! ioctls, no helper programs.

use std::path::{Path, PathBuf};

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
        "0 {sectors} snapshot {}",
        snapshot_params(base, cow, chunk_sectors)
    )
}

/// The parameters of the `snapshot` target (the table line after
/// `<start> <length> snapshot`): origin, COW store, persistent, chunk size.
pub fn snapshot_params(base: &Path, cow: &Path, chunk_sectors: u32) -> String {
    format!("{} {} P {chunk_sectors}", base.display(), cow.display())
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
        PrivOp::LoopDetach {
            device,
            backing_file,
        } => {
            check_loop(name, &device)?;
            let backing_file = backing_file
                .map(|f| policy.check_path(name, &f))
                .transpose()?;
            Ok(PrivOp::LoopDetach {
                device,
                backing_file,
            })
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

/// Attempts at grabbing a free loop device: another process may take the
/// one `LOOP_CTL_GET_FREE` named before we bind it (EBUSY).
const ATTACH_ATTEMPTS: u32 = 8;

fn loop_err<'a>(
    what: &'static str,
    target: &'a Path,
) -> impl FnOnce(std::io::Error) -> PrivOpsError + 'a {
    move |source| PrivOpsError::Loop {
        what,
        target: target.to_path_buf(),
        source,
    }
}

fn attach(file: &Path, read_only: bool) -> Result<PathBuf, PrivOpsError> {
    let control =
        loopdev::LoopControl::open().map_err(loop_err("open", Path::new("/dev/loop-control")))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let dev = control
            .next_free()
            .map_err(loop_err("find a free loop device for", file))?;
        let device = dev.path().ok_or_else(|| PrivOpsError::Loop {
            what: "name the loop device of",
            target: file.to_path_buf(),
            source: std::io::Error::other("no /dev path for the free loop device"),
        })?;
        // No autoclear here: the device must outlive this call (the next
        // operation uses it). DmCreateSnapshot sets it once dm holds it.
        match dev.with().read_only(read_only).attach(file) {
            Ok(()) => {
                if !is_loop_device(&device) {
                    let _ = dev.detach();
                    return Err(PrivOpsError::Loop {
                        what: "attach",
                        target: file.to_path_buf(),
                        source: std::io::Error::other(format!(
                            "unexpected loop device name {}",
                            device.display()
                        )),
                    });
                }
                return Ok(device);
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < ATTACH_ATTEMPTS => {
                continue;
            }
            Err(e) => return Err(loop_err("attach", file)(e)),
        }
    }
}

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

nix::ioctl_read_bad!(loop_get_status64, 0x4C05, LoopInfo64);
nix::ioctl_write_ptr_bad!(loop_set_status64, 0x4C04, LoopInfo64);

const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// Mark an attached loop device autoclear: the kernel detaches it when its
/// last opener closes it. Only safe while something else holds it open
/// (a dm table): with no other opener it detaches on our own close.
pub fn loop_set_autoclear(device: &Path) -> Result<(), PrivOpsError> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(device).map_err(loop_err("open", device))?;
    // SAFETY: LoopInfo64 is plain old data; an all-zero value is valid.
    let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the call; the kernel fills `info`.
    unsafe { loop_get_status64(f.as_raw_fd(), &mut info) }
        .map_err(|e| loop_err("read the status of", device)(e.into()))?;
    if info.lo_flags & LO_FLAGS_AUTOCLEAR != 0 {
        return Ok(());
    }
    info.lo_flags |= LO_FLAGS_AUTOCLEAR;
    // SAFETY: as above; the kernel reads `info`.
    unsafe { loop_set_status64(f.as_raw_fd(), &info) }
        .map_err(|e| loop_err("set autoclear on", device)(e.into()))?;
    Ok(())
}

fn detach(device: &Path, expect: Option<&Path>) -> Result<PrivReply, PrivOpsError> {
    let Some(current) = loop_backing_file(device) else {
        return Ok(PrivReply::Removed { existed: false });
    };
    if let Some(want) = expect
        && current != want
    {
        tracing::debug!(device = %device.display(), now = %current.display(), want = %want.display(),
            "loop device is backed by another file now; left alone");
        return Ok(PrivReply::Removed { existed: false });
    }
    let dev = loopdev::LoopDevice::open(device).map_err(loop_err("open", device))?;
    match dev.detach() {
        Ok(()) => Ok(PrivReply::Removed { existed: true }),
        // Detached by someone else (or autoclear) in between.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            Ok(PrivReply::Removed { existed: false })
        }
        Err(e) => Err(loop_err("detach", device)(e)),
    }
}

fn dm_err(what: &'static str, name: &str) -> impl FnOnce(devicemapper::DmError) -> PrivOpsError {
    let name = name.to_string();
    move |e| PrivOpsError::DeviceMapper {
        what,
        name,
        message: e.to_string(),
    }
}

/// Open `/dev/mapper/control`; `None` when this host has no device-mapper.
fn dm_context() -> Result<Option<devicemapper::DM>, PrivOpsError> {
    if !Path::new(DM_CONTROL).exists() {
        return Ok(None);
    }
    devicemapper::DM::new()
        .map(Some)
        .map_err(|e| PrivOpsError::DeviceMapper {
            what: "open",
            name: DM_CONTROL.into(),
            message: format!("{e}; is the dm_mod module loaded, and do we run as root?"),
        })
}

fn dm_name(name: &str) -> Result<&devicemapper::DmName, PrivOpsError> {
    devicemapper::DmName::new(name).map_err(dm_err("use the name", name))
}

fn dm_exists(dm: &devicemapper::DM, name: &devicemapper::DmName) -> bool {
    dm.device_info(&devicemapper::DevId::Name(name)).is_ok()
}

fn create_snapshot(
    policy: &Policy,
    name: &str,
    sectors: u64,
    base: &Path,
    cow: &Path,
    chunk_sectors: u32,
) -> Result<PrivReply, PrivOpsError> {
    use devicemapper::{DevId, DmOptions};
    let dm = dm_context()?.ok_or_else(|| PrivOpsError::DeviceMapper {
        what: "create",
        name: name.into(),
        message: format!(
            "{DM_CONTROL} is missing: this host has no device-mapper (banger uses the copy strategy there)"
        ),
    })?;
    let dm_name = dm_name(name)?;
    let id = DevId::Name(dm_name);
    let info = dm
        .device_create(dm_name, None, DmOptions::default())
        .map_err(dm_err("create", name))?;
    let made = (|| {
        let table = [(
            0,
            sectors,
            "snapshot".to_string(),
            snapshot_params(base, cow, chunk_sectors),
        )];
        dm.table_load(&id, &table, DmOptions::default())
            .map_err(dm_err("load the snapshot table into", name))?;
        // Resume: moves the loaded table into the active slot.
        dm.device_suspend(&id, DmOptions::default())
            .map_err(dm_err("resume", name))?;
        for l in [base, cow] {
            loop_set_autoclear(l)?;
        }
        let dev = info.device();
        let node = PathBuf::from(format!("/dev/dm-{}", dev.minor));
        ensure_mapper_link(name, &node)?;
        if policy.owner_uid != 0 {
            std::os::unix::fs::chown(&node, Some(policy.owner_uid), None).map_err(|source| {
                PrivOpsError::File {
                    path: node.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    })();
    if let Err(e) = made {
        let _ = dm.device_remove(&id, DmOptions::default());
        remove_mapper_link(name);
        return Err(e);
    }
    Ok(PrivReply::Done)
}

/// `/dev/mapper/<name>` → `../dm-N`, as udev makes it; made here when
/// udev did not (no udev, or not yet) within a short wait.
fn ensure_mapper_link(name: &str, node: &Path) -> Result<(), PrivOpsError> {
    let link = Path::new("/dev/mapper").join(name);
    for _ in 0..20 {
        if link.exists() {
            return Ok(());
        }
        if !Path::new("/run/udev/control").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let target = Path::new("..").join(node.file_name().unwrap_or_default());
    match std::os::unix::fs::symlink(&target, &link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(PrivOpsError::File { path: link, source }),
    }
}

/// Remove `/dev/mapper/<name>` when it is a symlink that no longer leads
/// to a device (ours, after the dm device went).
fn remove_mapper_link(name: &str) {
    let link = Path::new("/dev/mapper").join(name);
    if link
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
        && !link.exists()
    {
        let _ = std::fs::remove_file(&link);
    }
}

fn remove_dm(name: &str) -> Result<PrivReply, PrivOpsError> {
    use devicemapper::{DevId, DmOptions};
    let Some(dm) = dm_context()? else {
        return Ok(PrivReply::Removed { existed: false });
    };
    let dm_name = dm_name(name)?;
    if !dm_exists(&dm, dm_name) {
        remove_mapper_link(name);
        return Ok(PrivReply::Removed { existed: false });
    }
    dm.device_remove(&DevId::Name(dm_name), DmOptions::default())
        .map_err(|e| PrivOpsError::DeviceMapper {
            what: "remove",
            name: name.into(),
            message: format!("{e}; is a VM still using it? stop the VM and retry"),
        })?;
    remove_mapper_link(name);
    Ok(PrivReply::Removed { existed: true })
}

/// Perform a validated disk variant.
pub(crate) fn execute(op: PrivOp, policy: &Policy) -> Result<PrivReply, PrivOpsError> {
    match op {
        PrivOp::LoopAttach { file, read_only } => Ok(PrivReply::LoopAttached {
            device: attach(&file, read_only)?,
        }),
        PrivOp::LoopDetach {
            device,
            backing_file,
        } => detach(&device, backing_file.as_deref()),
        PrivOp::DmCreateSnapshot {
            name,
            sectors,
            base,
            cow,
            chunk_sectors,
        } => create_snapshot(policy, &name, sectors, &base, &cow, chunk_sectors),
        PrivOp::DmRemove { name } => remove_dm(&name),
        PrivOp::ListDisks => Ok(PrivReply::Disks {
            dm: list_dm(policy)?,
            loops: list_loops(policy),
        }),
        other => Err(refused(other.name(), "not a disk operation".into())),
    }
}

/// The backing file of `/dev/loopN`, from sysfs; `None` when detached.
pub fn loop_backing_file(device: &Path) -> Option<PathBuf> {
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
            let backing_file = loop_backing_file(&device)?;
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
    let Some(dm) = dm_context()? else {
        return Ok(Vec::new());
    };
    let devices = dm.list_devices().map_err(dm_err("list devices", "(all)"))?;
    Ok(banger_names(
        devices.iter().map(|(n, _, _)| n.to_string()),
        policy,
    ))
}

/// The names among `names` that are banger's (prefix and charset).
pub(crate) fn banger_names(names: impl Iterator<Item = String>, policy: &Policy) -> Vec<String> {
    let mut out: Vec<String> = names.filter(|n| dm_name_ok(policy, n)).collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;
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
                device: "/dev/sda".into(),
                backing_file: None,
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
    fn dm_listing_keeps_only_banger_names() {
        let p = policy(Path::new("/x"));
        let names = ["bgroot-1a", "vg0-root", "bgcow-2", "bg", "bgRoot-x"];
        assert_eq!(
            banger_names(names.iter().map(|s| s.to_string()), &p),
            vec!["bgcow-2", "bgroot-1a"]
        );
    }

    #[test]
    fn loop_info64_matches_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
    }

    #[test]
    fn detach_validation_checks_the_expected_backing_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("state/vms")).unwrap();
        std::fs::create_dir_all(t.path().join("run")).unwrap();
        let p = policy(t.path());
        let op = |f: &str| PrivOp::LoopDetach {
            device: "/dev/loop3".into(),
            backing_file: Some(f.into()),
        };
        assert!(op("/etc/passwd").validate(&p).is_err());
        let inside = t.path().join("state/vms/a/root.cow");
        assert!(op(inside.to_str().unwrap()).validate(&p).is_ok());
    }

    #[test]
    fn without_device_mapper_removal_is_a_no_op_and_create_says_why() {
        if Path::new(DM_CONTROL).exists() {
            writeln!(
                std::io::stderr(),
                "SKIP without_device_mapper...: this host has device-mapper"
            )
            .unwrap();
            return;
        }
        let p = policy(Path::new("/x"));
        assert_eq!(
            remove_dm("bgroot-a").unwrap(),
            PrivReply::Removed { existed: false }
        );
        assert!(list_dm(&p).unwrap().is_empty());
        let err = create_snapshot(
            &p,
            "bgroot-a",
            8,
            Path::new("/dev/loop1"),
            Path::new("/dev/loop2"),
            8,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no device-mapper"), "{err}");
    }
}
