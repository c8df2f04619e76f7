//! Loop devices and device-mapper snapshots: validation of the disk
//! variants of [`PrivOp`] and their in-process implementation.
//!
//! Confinement by construction, not by string checks: a backing file is
//! opened by the helper itself beneath the state directory (see
//! [`crate::beneath`]: `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`, with the owner's filesystem identity), must be a
//! regular file owned by the owner uid, and the fd is what is attached; a
//! loop device is banger's only while its `(lo_device, lo_inode)` is
//! `(st_dev, st_ino)` of such a file, checked on the helper's own fd of
//! the device; a dm device is banger's only when its name carries the
//! prefix and its table is one `snapshot` over two such loops. Tables are
//! built here from the `major:minor` of the device fds, never taken from
//! a request. Loop devices go through the `loopdev` crate (loopdev-3) and
//! device-mapper through the `devicemapper` crate: ioctls, no helper
//! programs.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::{FileStat, Mode};
use serde::{Deserialize, Serialize};

use crate::beneath::{
    BeneathPath, is_block, is_regular, open_beneath, open_error, owned_by, stat_fd,
};
use crate::local::as_owner;
use crate::op::{PrivOp, PrivReply};
use crate::{Policy, PrivOpsError};

/// Longest device-mapper name (DM_NAME_LEN - 1).
pub const MAX_DM_NAME: usize = 127;

/// The device-mapper control node; its absence means no device-mapper.
pub const DM_CONTROL: &str = "/dev/mapper/control";

/// Major number of loop block devices.
pub const LOOP_MAJOR: u32 = 7;

/// One attached loop device backed by a banger file, as
/// [`PrivOp::ListDisks`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopInfo {
    /// `/dev/loopN`.
    pub device: PathBuf,
    /// The file behind it, below the state directory as configured.
    pub backing_file: PathBuf,
}

/// A block device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevNum {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
}

impl DevNum {
    fn of(rdev: u64) -> Self {
        DevNum {
            major: libc::major(rdev),
            minor: libc::minor(rdev),
        }
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// The `dm-snapshot` table line for a persistent snapshot of the block
/// device `base` with exceptions stored on `cow` in chunks of
/// `chunk_sectors` 512-byte sectors.
pub fn snapshot_table(sectors: u64, base: DevNum, cow: DevNum, chunk_sectors: u32) -> String {
    format!(
        "0 {sectors} snapshot {}",
        snapshot_params(base, cow, chunk_sectors)
    )
}

/// The parameters of the `snapshot` target (the table line after
/// `<start> <length> snapshot`): origin, COW store, persistent, chunk size.
pub fn snapshot_params(base: DevNum, cow: DevNum, chunk_sectors: u32) -> String {
    format!("{base} {cow} P {chunk_sectors}")
}

/// The two devices of a table that is exactly one `snapshot` target
/// (`<origin> <cow> P|N <chunk>`, devices as `major:minor`); `None` for
/// any other table.
pub fn parse_snapshot_table(targets: &[(u64, u64, String, String)]) -> Option<[DevNum; 2]> {
    let [(0, len, kind, params)] = targets else {
        return None;
    };
    if *len == 0 || kind != "snapshot" {
        return None;
    }
    let f: Vec<&str> = params.split_ascii_whitespace().collect();
    let [origin, cow, mode, chunk] = f.as_slice() else {
        return None;
    };
    if !matches!(*mode, "P" | "N" | "p" | "n") || chunk.parse::<u32>().is_err() {
        return None;
    }
    let dev = |s: &str| {
        let (ma, mi) = s.split_once(':')?;
        let all_digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        (all_digits(ma) && all_digits(mi)).then_some(())?;
        Some(DevNum {
            major: ma.parse().ok()?,
            minor: mi.parse().ok()?,
        })
    };
    Some([dev(origin)?, dev(cow)?])
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
        PrivOp::LoopAttach { file, read_only } => {
            policy.beneath_state(name, &file)?;
            Ok(PrivOp::LoopAttach { file, read_only })
        }
        PrivOp::LoopDetach {
            device,
            backing_file,
        } => {
            check_loop(name, &device)?;
            policy.beneath_state(name, &backing_file)?;
            Ok(PrivOp::LoopDetach {
                device,
                backing_file,
            })
        }
        PrivOp::DmCreateSnapshot {
            name: dm,
            sectors,
            base,
            base_file,
            cow,
            cow_file,
            chunk_sectors,
        } => {
            check_dm(name, policy, &dm)?;
            check_loop(name, &base)?;
            check_loop(name, &cow)?;
            policy.beneath_state(name, &base_file)?;
            policy.beneath_state(name, &cow_file)?;
            if base == cow {
                return Err(refused(name, "base and COW are the same device".into()));
            }
            if base_file == cow_file {
                return Err(refused(name, "base and COW are the same file".into()));
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
                base_file,
                cow,
                cow_file,
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

/// Who performs an operation: the policy and the owner's filesystem
/// identity (`None`: ours, when we are not root or the owner is root).
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub(crate) policy: &'a Policy,
    pub(crate) run_as: Option<(u32, u32)>,
}

/// A banger file opened by the helper: the fd and its stat.
pub(crate) struct BangerFile {
    pub(crate) fd: OwnedFd,
    pub(crate) st: FileStat,
    pub(crate) path: BeneathPath,
}

impl BangerFile {
    fn id(&self) -> (u64, u64) {
        (self.st.st_dev, self.st.st_ino)
    }
}

/// Open `path` beneath the state directory with the owner's filesystem
/// identity and no symlinks (`flags` plus `O_NONBLOCK | O_NOCTTY`, so a
/// FIFO or terminal planted there cannot block or become our terminal);
/// refused unless it is a regular file owned by the owner uid.
pub(crate) fn open_banger_file(
    op: &'static str,
    cx: Ctx<'_>,
    path: &Path,
    flags: OFlag,
) -> Result<BangerFile, PrivOpsError> {
    let b = cx.policy.beneath_state(op, path)?;
    open_banger_beneath(op, cx, b, flags)
}

fn open_banger_beneath(
    op: &'static str,
    cx: Ctx<'_>,
    b: BeneathPath,
    flags: OFlag,
) -> Result<BangerFile, PrivOpsError> {
    // openat2 allows no other flag with O_PATH (which blocks on nothing).
    let flags = if flags.contains(OFlag::O_PATH) {
        flags
    } else {
        flags | OFlag::O_NONBLOCK | OFlag::O_NOCTTY
    };
    let fd = as_owner(cx.run_as, || {
        open_beneath(&b, flags, Mode::empty()).map_err(|e| open_error(op, &b, e))
    })?;
    let st = stat_fd(&fd).map_err(|source| PrivOpsError::File {
        path: b.display_path(),
        source,
    })?;
    if !is_regular(&st) {
        return Err(refused(
            op,
            format!(
                "{} is not a regular file (mode {:o}, dev:ino {}:{})",
                b.display_path().display(),
                st.st_mode,
                st.st_dev,
                st.st_ino
            ),
        ));
    }
    if !owned_by(&st, cx.policy.owner_uid) {
        return Err(refused(
            op,
            format!(
                "{} (dev:ino {}:{}) is owned by uid {}, not by the owner uid {}",
                b.display_path().display(),
                st.st_dev,
                st.st_ino,
                st.st_uid,
                cx.policy.owner_uid
            ),
        ));
    }
    Ok(BangerFile { fd, st, path: b })
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

fn attach(cx: Ctx<'_>, file: &Path, read_only: bool) -> Result<PathBuf, PrivOpsError> {
    let op = "loop_attach";
    let mode = if read_only {
        OFlag::O_RDONLY
    } else {
        OFlag::O_RDWR
    };
    let f = open_banger_file(op, cx, file, mode)?;
    // Back to blocking I/O for the loop driver (O_NONBLOCK only guarded
    // the open against a FIFO).
    nix::fcntl::fcntl(&f.fd, nix::fcntl::FcntlArg::F_SETFL(mode))
        .map_err(|e| loop_err("prepare", file)(e.into()))?;
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
        match dev.with().read_only(read_only).attach_fd(f.fd.as_raw_fd()) {
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
                tracing::info!(device = %device.display(), file = %f.path.display_path().display(),
                    dev = f.st.st_dev, ino = f.st.st_ino, uid = f.st.st_uid, read_only,
                    "attached a banger file by fd");
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
nix::ioctl_none_bad!(loop_clr_fd, 0x4C01);

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// A loop device opened by the helper: while this fd is open the device
/// cannot be detached and bound to another file (a detach by someone else
/// is deferred to the last close).
struct LoopFd {
    file: File,
    dev: DevNum,
    path: PathBuf,
}

/// What backs an attached loop device.
struct Backing {
    id: (u64, u64),
    flags: u32,
}

impl LoopFd {
    /// Open `/dev/loopN` read-only (no side effect on the device) and
    /// check it is a loop block device.
    fn open(op: &'static str, device: &Path) -> Result<LoopFd, PrivOpsError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(device)
            .map_err(loop_err("open", device))?;
        let st = stat_fd(file.as_fd()).map_err(loop_err("stat", device))?;
        let dev = DevNum::of(st.st_rdev);
        if !is_block(&st) || dev.major != LOOP_MAJOR {
            return Err(refused(
                op,
                format!(
                    "{} is not a loop block device (mode {:o}, {dev})",
                    device.display(),
                    st.st_mode
                ),
            ));
        }
        Ok(LoopFd {
            file,
            dev,
            path: device.to_path_buf(),
        })
    }

    fn status(&self) -> Result<Option<(LoopInfo64, Backing)>, PrivOpsError> {
        // SAFETY: LoopInfo64 is plain old data; an all-zero value is valid.
        let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is open for the call; the kernel fills `info`.
        match unsafe { loop_get_status64(self.file.as_raw_fd(), &mut info) } {
            Ok(_) => {
                let b = Backing {
                    id: (info.lo_device, info.lo_inode),
                    flags: info.lo_flags,
                };
                Ok(Some((info, b)))
            }
            Err(nix::Error::ENXIO) => Ok(None),
            Err(e) => Err(loop_err("read the status of", &self.path)(e.into())),
        }
    }

    /// The backing file's name as the kernel reports it (logs, listing).
    fn reported_backing(&self) -> Option<PathBuf> {
        let s = std::fs::read_to_string(format!("/sys/dev/block/{}/loop/backing_file", self.dev))
            .ok()?;
        Some(PathBuf::from(s.trim_end_matches('\n')))
    }

    fn describe_backing(&self, b: &Backing) -> String {
        format!(
            "{} (dev:ino {}:{})",
            self.reported_backing()
                .map_or_else(|| "an unnamed file".into(), |p| p.display().to_string()),
            b.id.0,
            b.id.1
        )
    }

    fn set_autoclear(&self) -> Result<(), PrivOpsError> {
        let Some((mut info, b)) = self.status()? else {
            return Err(loop_err("set autoclear on", &self.path)(
                std::io::Error::from_raw_os_error(libc::ENXIO),
            ));
        };
        if b.flags & LO_FLAGS_AUTOCLEAR != 0 {
            return Ok(());
        }
        info.lo_flags |= LO_FLAGS_AUTOCLEAR;
        // SAFETY: as in `status`; the kernel reads `info`.
        unsafe { loop_set_status64(self.file.as_raw_fd(), &info) }
            .map_err(|e| loop_err("set autoclear on", &self.path)(e.into()))?;
        Ok(())
    }
}

/// Mark an attached loop device autoclear: the kernel detaches it when its
/// last opener closes it. Only safe while something else holds it open
/// (a dm table): with no other opener it detaches on our own close.
pub fn loop_set_autoclear(device: &Path) -> Result<(), PrivOpsError> {
    LoopFd::open("loop_set_autoclear", device)?.set_autoclear()
}

/// Check that the loop device `l` is backed by the banger file `f`.
fn check_backed_by(op: &'static str, l: &LoopFd, f: &BangerFile) -> Result<Backing, PrivOpsError> {
    let Some((_, b)) = l.status()? else {
        return Err(refused(op, format!("{} is not attached", l.path.display())));
    };
    if b.id != f.id() {
        return Err(refused(
            op,
            format!(
                "{} is backed by {}, not by {} (dev:ino {}:{})",
                l.path.display(),
                l.describe_backing(&b),
                f.path.display_path().display(),
                f.st.st_dev,
                f.st.st_ino
            ),
        ));
    }
    Ok(b)
}

fn detach(cx: Ctx<'_>, device: &Path, file: &Path) -> Result<PrivReply, PrivOpsError> {
    let op = "loop_detach";
    let f = match open_banger_file(op, cx, file, OFlag::O_PATH) {
        Ok(f) => f,
        // The file is gone: the device cannot be shown to be ours, and
        // there is nothing of ours to detach.
        Err(PrivOpsError::File { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            return Ok(PrivReply::Removed { existed: false });
        }
        Err(e) => return Err(e),
    };
    let l = LoopFd::open(op, device)?;
    let Some((_, b)) = l.status()? else {
        return Ok(PrivReply::Removed { existed: false });
    };
    if b.id != f.id() {
        return Err(refused(
            op,
            format!(
                "{} is backed by {}, not by {} (dev:ino {}:{}); left alone",
                device.display(),
                l.describe_backing(&b),
                file.display(),
                f.st.st_dev,
                f.st.st_ino
            ),
        ));
    }
    // On our own fd: the binding checked above cannot have changed.
    // SAFETY: LOOP_CLR_FD takes no argument; the fd is open.
    match unsafe { loop_clr_fd(l.file.as_raw_fd()) } {
        Ok(_) => {
            tracing::info!(device = %device.display(), file = %file.display(),
                dev = f.st.st_dev, ino = f.st.st_ino, "detached a loop device backed by a banger file");
            Ok(PrivReply::Removed { existed: true })
        }
        // Detached by someone else (or autoclear) in between.
        Err(nix::Error::ENXIO) => Ok(PrivReply::Removed { existed: false }),
        Err(e) => Err(loop_err("detach", device)(e.into())),
    }
}

/// A loop device given by number, checked to be backed by a banger file:
/// `Ok((device, file))` or `Err(why not)`.
fn banger_loop_by_num(cx: Ctx<'_>, dev: DevNum) -> Result<(PathBuf, BeneathPath), String> {
    if dev.major != LOOP_MAJOR {
        return Err(format!("{dev} is not a loop device"));
    }
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{dev}/uevent"))
        .map_err(|e| format!("{dev}: no such block device ({e})"))?;
    let name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .ok_or_else(|| format!("{dev}: no device name"))?;
    let path = Path::new("/dev").join(name);
    if !is_loop_device(&path) {
        return Err(format!("{dev} is {}, not /dev/loopN", path.display()));
    }
    let l = LoopFd::open("check", &path).map_err(|e| e.to_string())?;
    if l.dev != dev {
        return Err(format!("{} is {}, not {dev}", path.display(), l.dev));
    }
    banger_loop(cx, &l).map(|b| (path, b))
}

/// Whether the opened loop device is backed by a banger file; the file
/// below the state directory as configured.
fn banger_loop(cx: Ctx<'_>, l: &LoopFd) -> Result<BeneathPath, String> {
    let Some((_, b)) = l.status().map_err(|e| e.to_string())? else {
        return Err(format!("{} is not attached", l.path.display()));
    };
    let reported = l
        .reported_backing()
        .ok_or_else(|| format!("{}: no backing file name", l.path.display()))?;
    let candidate = cx.policy.beneath_state_reported(&reported).ok_or_else(|| {
        format!(
            "{} is backed by {}, outside the state directory",
            l.path.display(),
            l.describe_backing(&b)
        )
    })?;
    let f = open_banger_beneath("check", cx, candidate, OFlag::O_PATH).map_err(|e| {
        format!(
            "{} is backed by {}: {e}",
            l.path.display(),
            l.describe_backing(&b)
        )
    })?;
    if b.id != f.id() {
        return Err(format!(
            "{} is backed by {}, not by the banger file of that name (dev:ino {}:{})",
            l.path.display(),
            l.describe_backing(&b),
            f.st.st_dev,
            f.st.st_ino
        ));
    }
    Ok(f.path)
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

/// The fields of [`PrivOp::DmCreateSnapshot`].
pub(crate) struct SnapshotRequest<'a> {
    pub(crate) name: &'a str,
    pub(crate) sectors: u64,
    pub(crate) base: &'a Path,
    pub(crate) base_file: &'a Path,
    pub(crate) cow: &'a Path,
    pub(crate) cow_file: &'a Path,
    pub(crate) chunk_sectors: u32,
}

/// The checked devices of a snapshot to create: the loop fds (held open
/// until the dm table holds the devices) and the table's parameters.
struct CheckedSnapshot {
    loops: [LoopFd; 2],
    params: String,
}

/// Every check of [`PrivOp::DmCreateSnapshot`] that needs no
/// device-mapper: both loops backed by their banger files, the base
/// read-only, and the parameters built from the device fds' numbers.
fn check_snapshot(cx: Ctx<'_>, r: &SnapshotRequest<'_>) -> Result<CheckedSnapshot, PrivOpsError> {
    let op = "dm_create_snapshot";
    let base_file = open_banger_file(op, cx, r.base_file, OFlag::O_PATH)?;
    let cow_file = open_banger_file(op, cx, r.cow_file, OFlag::O_PATH)?;
    if base_file.id() == cow_file.id() {
        return Err(refused(op, "base and COW are the same file".into()));
    }
    let base = LoopFd::open(op, r.base)?;
    let cow = LoopFd::open(op, r.cow)?;
    if base.dev == cow.dev {
        return Err(refused(op, "base and COW are the same device".into()));
    }
    let b = check_backed_by(op, &base, &base_file)?;
    check_backed_by(op, &cow, &cow_file)?;
    if b.flags & LO_FLAGS_READ_ONLY == 0 {
        return Err(refused(
            op,
            format!(
                "the base {} must be attached read-only (it is shared between VMs)",
                r.base.display()
            ),
        ));
    }
    let params = snapshot_params(base.dev, cow.dev, r.chunk_sectors);
    Ok(CheckedSnapshot {
        loops: [base, cow],
        params,
    })
}

fn create_snapshot(cx: Ctx<'_>, r: &SnapshotRequest<'_>) -> Result<PrivReply, PrivOpsError> {
    use devicemapper::{DevId, DmOptions};
    let name = r.name;
    // The checks first: a request outside the rules is refused as such,
    // with or without device-mapper on this host.
    let checked = check_snapshot(cx, r)?;
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
        let table = [(0, r.sectors, "snapshot".to_string(), checked.params.clone())];
        dm.table_load(&id, &table, DmOptions::default())
            .map_err(dm_err("load the snapshot table into", name))?;
        // Resume: moves the loaded table into the active slot.
        dm.device_suspend(&id, DmOptions::default())
            .map_err(dm_err("resume", name))?;
        for l in &checked.loops {
            l.set_autoclear()?;
        }
        let dev = info.device();
        let node = PathBuf::from(format!("/dev/dm-{}", dev.minor));
        give_node_to_owner(
            cx.policy,
            &node,
            DevNum {
                major: dev.major,
                minor: dev.minor,
            },
        )?;
        ensure_mapper_link(name, &node)?;
        tracing::info!(dm = name, table = %checked.params, node = %node.display(),
            "created a snapshot over banger's loop devices");
        Ok(())
    })();
    if let Err(e) = made {
        let _ = dm.device_remove(&id, DmOptions::default());
        remove_mapper_link(name);
        return Err(e);
    }
    Ok(PrivReply::Done)
}

/// Give the dm node to the owner, only once it is shown to be the block
/// device `dev` (opened without following a symlink, changed through that
/// fd).
fn give_node_to_owner(policy: &Policy, node: &Path, dev: DevNum) -> Result<(), PrivOpsError> {
    if policy.owner_uid == 0 {
        return Ok(());
    }
    let err = |source: std::io::Error| PrivOpsError::File {
        path: node.to_path_buf(),
        source,
    };
    let fd = nix::fcntl::open(
        node,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.into()))?;
    let st = stat_fd(&fd).map_err(err)?;
    if !is_block(&st) || DevNum::of(st.st_rdev) != dev {
        return Err(refused(
            "dm_create_snapshot",
            format!("{} is not the new dm device {dev}", node.display()),
        ));
    }
    nix::unistd::fchownat(
        &fd,
        "",
        Some(nix::unistd::Uid::from_raw(policy.owner_uid)),
        None,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| err(e.into()))
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

/// Whether the live table of dm device `name` is banger's: one `snapshot`
/// over two loops backed by banger files. `Err(why not)`.
fn dm_is_bangers(
    cx: Ctx<'_>,
    dm: &devicemapper::DM,
    name: &devicemapper::DmName,
) -> Result<(), String> {
    use devicemapper::{DevId, DmFlags, DmOptions};
    let (_, table) = dm
        .table_status(
            &DevId::Name(name),
            DmOptions::default().set_flags(DmFlags::DM_STATUS_TABLE),
        )
        .map_err(|e| format!("cannot read its table: {e}"))?;
    let [a, b] = parse_snapshot_table(&table)
        .ok_or_else(|| format!("its table {table:?} is not one snapshot target"))?;
    for d in [a, b] {
        banger_loop_by_num(cx, d)?;
    }
    Ok(())
}

fn remove_dm(cx: Ctx<'_>, name: &str) -> Result<PrivReply, PrivOpsError> {
    use devicemapper::{DevId, DmOptions};
    let Some(dm) = dm_context()? else {
        return Ok(PrivReply::Removed { existed: false });
    };
    let dm_name = dm_name(name)?;
    if !dm_exists(&dm, dm_name) {
        remove_mapper_link(name);
        return Ok(PrivReply::Removed { existed: false });
    }
    dm_is_bangers(cx, &dm, dm_name).map_err(|why| {
        refused(
            "dm_remove",
            format!("dm device {name} is not banger's: {why}"),
        )
    })?;
    dm.device_remove(&DevId::Name(dm_name), DmOptions::default())
        .map_err(|e| PrivOpsError::DeviceMapper {
            what: "remove",
            name: name.into(),
            message: format!("{e}; is a VM still using it? stop the VM and retry"),
        })?;
    remove_mapper_link(name);
    tracing::info!(dm = name, "removed a banger snapshot");
    Ok(PrivReply::Removed { existed: true })
}

/// Perform a validated disk variant as the helper (`run_as`: the owner's
/// filesystem identity for opening banger's files).
pub(crate) fn execute(
    op: PrivOp,
    policy: &Policy,
    run_as: Option<(u32, u32)>,
) -> Result<PrivReply, PrivOpsError> {
    let cx = Ctx { policy, run_as };
    match op {
        PrivOp::LoopAttach { file, read_only } => Ok(PrivReply::LoopAttached {
            device: attach(cx, &file, read_only)?,
        }),
        PrivOp::LoopDetach {
            device,
            backing_file,
        } => detach(cx, &device, &backing_file),
        PrivOp::DmCreateSnapshot {
            name,
            sectors,
            base,
            base_file,
            cow,
            cow_file,
            chunk_sectors,
        } => create_snapshot(
            cx,
            &SnapshotRequest {
                name: &name,
                sectors,
                base: &base,
                base_file: &base_file,
                cow: &cow,
                cow_file: &cow_file,
                chunk_sectors,
            },
        ),
        PrivOp::DmRemove { name } => remove_dm(cx, &name),
        PrivOp::ListDisks => Ok(PrivReply::Disks {
            dm: list_dm(cx)?,
            loops: list_loops(cx),
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

fn list_loops(cx: Ctx<'_>) -> Vec<LoopInfo> {
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
            // Cheap name check first; then the device and file themselves.
            cx.policy
                .beneath_state_reported(&loop_backing_file(&device)?)?;
            let l = LoopFd::open("list_disks", &device).ok()?;
            let file = banger_loop(cx, &l).ok()?;
            Some(LoopInfo {
                device,
                backing_file: file.display_path(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.device.cmp(&b.device));
    out
}

fn list_dm(cx: Ctx<'_>) -> Result<Vec<String>, PrivOpsError> {
    let Some(dm) = dm_context()? else {
        return Ok(Vec::new());
    };
    let devices = dm.list_devices().map_err(dm_err("list devices", "(all)"))?;
    let names = banger_names(devices.iter().map(|(n, _, _)| n.to_string()), cx.policy);
    Ok(names
        .into_iter()
        .filter(|n| devicemapper::DmName::new(n).is_ok_and(|dn| dm_is_bangers(cx, &dm, dn).is_ok()))
        .collect())
}

/// The names among `names` that are banger's (prefix and charset).
pub(crate) fn banger_names(names: impl Iterator<Item = String>, policy: &Policy) -> Vec<String> {
    let mut out: Vec<String> = names.filter(|n| dm_name_ok(policy, n)).collect();
    out.sort();
    out
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

    fn dn(major: u32, minor: u32) -> DevNum {
        DevNum { major, minor }
    }

    #[test]
    fn table_is_built_from_device_numbers_and_parsed_back() {
        let line = snapshot_table(4_194_304, dn(7, 3), dn(7, 4), 8);
        assert_eq!(line, "0 4194304 snapshot 7:3 7:4 P 8");
        let t =
            |kind: &str, params: &str| vec![(0u64, 2048u64, kind.to_string(), params.to_string())];
        assert_eq!(
            parse_snapshot_table(&t("snapshot", &snapshot_params(dn(7, 3), dn(7, 4), 8))),
            Some([dn(7, 3), dn(7, 4)])
        );
        for (kind, params) in [
            ("linear", "7:3 0"),
            ("snapshot-origin", "7:3"),
            ("snapshot", "/dev/loop3 /dev/loop4 P 8"),
            ("snapshot", "7:3 7:4 P"),
            ("snapshot", "7:3 7:4 X 8"),
            ("snapshot", "7:3 7:4 P 8 extra"),
            ("snapshot", "7:-3 7:4 P 8"),
            ("snapshot", "7:3 :4 P 8"),
        ] {
            assert_eq!(
                parse_snapshot_table(&t(kind, params)),
                None,
                "{kind} {params}"
            );
        }
        // Two targets, or one not starting at sector 0: not ours.
        let mut two = t("snapshot", "7:3 7:4 P 8");
        two.push((2048, 8, "linear".into(), "8:0 0".into()));
        assert_eq!(parse_snapshot_table(&two), None);
        assert_eq!(
            parse_snapshot_table(&[(8, 8, "snapshot".into(), "7:3 7:4 P 8".into())]),
            None
        );
        assert_eq!(parse_snapshot_table(&[]), None);
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
        let root = t.path().to_path_buf();
        let snap = |name: &str, base: &str, cow: &str, chunk| PrivOp::DmCreateSnapshot {
            name: name.into(),
            sectors: 2048,
            base: base.into(),
            base_file: root.join("state/images/a.ext4"),
            cow: cow.into(),
            cow_file: root.join("state/vms/a/root.cow"),
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
        assert!(attach(t.path().join("state/../etc")).validate(&p).is_err());
        assert!(attach(t.path().join("run/a.ext4")).validate(&p).is_err());
        assert!(
            PrivOp::LoopDetach {
                device: "/dev/sda".into(),
                backing_file: t.path().join("state/images/a.ext4"),
            }
            .validate(&p)
            .is_err()
        );
        let foreign_file = |base_file: PathBuf, cow_file: PathBuf| PrivOp::DmCreateSnapshot {
            name: "bgroot-a1".into(),
            sectors: 2048,
            base: "/dev/loop1".into(),
            base_file,
            cow: "/dev/loop2".into(),
            cow_file,
            chunk_sectors: 8,
        };
        let inside = t.path().join("state/images/a.ext4");
        assert!(
            foreign_file("/etc/shadow".into(), inside.clone())
                .validate(&p)
                .is_err()
        );
        assert!(
            foreign_file(inside.clone(), inside.clone())
                .validate(&p)
                .is_err(),
            "the same file twice"
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
            backing_file: f.into(),
        };
        assert!(op("/etc/passwd").validate(&p).is_err());
        let inside = t.path().join("state/vms/a/root.cow");
        assert!(op(inside.to_str().unwrap()).validate(&p).is_ok());
    }

    #[test]
    fn without_device_mapper_removal_is_a_no_op_and_listing_empty() {
        if Path::new(DM_CONTROL).exists() {
            banger_testsupport::skip!(
                "without_device_mapper_removal_is_a_no_op_and_listing_empty",
                "this host has device-mapper"
            );
        }
        let p = policy(Path::new("/x"));
        let cx = Ctx {
            policy: &p,
            run_as: None,
        };
        assert_eq!(
            remove_dm(cx, "bgroot-a").unwrap(),
            PrivReply::Removed { existed: false }
        );
        assert!(list_dm(cx).unwrap().is_empty());
        // (A create over real banger loops says "no device-mapper": see
        // tests/loop_real.rs; here its files do not exist.)
        let err = create_snapshot(
            cx,
            &SnapshotRequest {
                name: "bgroot-a",
                sectors: 8,
                base: Path::new("/dev/loop1"),
                base_file: Path::new("/x/state/a"),
                cow: Path::new("/dev/loop2"),
                cow_file: Path::new("/x/state/b"),
                chunk_sectors: 8,
            },
        );
        assert!(err.is_err());
    }
}

/// The checks of `DmRemove`/`ListDisks` and of the node handed to the
/// owner, on real loop devices (root only; device-mapper itself is not
/// available on the machines these were written on).
#[cfg(test)]
mod real_loop_tests {
    use std::net::Ipv4Addr;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    const OWNER: u32 = 64_321;

    fn skip(test: &str) -> bool {
        if !nix::unistd::geteuid().is_root() || !Path::new("/dev/loop-control").exists() {
            banger_testsupport::skip!(return true; test, "needs root and /dev/loop-control");
        }
        false
    }

    struct Attached(PathBuf);
    impl Drop for Attached {
        fn drop(&mut self) {
            let _ = loopdev::LoopDevice::open(&self.0).and_then(|d| d.detach());
        }
    }

    /// Attach as root, not through the checks (another test may take the
    /// free device first: retry on EBUSY).
    fn attach_direct(file: &Path) -> Attached {
        let ctl = loopdev::LoopControl::open().unwrap();
        for _ in 0..20 {
            let dev = ctl.next_free().unwrap();
            match dev.attach_file(file) {
                Ok(()) => return Attached(dev.path().unwrap()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free loop device")
    }

    fn setup() -> (tempfile::TempDir, PathBuf, Policy) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().canonicalize().unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(root.join("state/vms")).unwrap();
        for d in ["state", "state/vms"] {
            std::os::unix::fs::chown(root.join(d), Some(OWNER), Some(OWNER)).unwrap();
        }
        let policy = Policy {
            device_prefix: "bg".into(),
            state_dir: root.join("state"),
            runtime_dir: root.join("run"),
            subnet: (Ipv4Addr::new(172, 30, 0, 0), 24),
            owner_uid: OWNER,
            vmm_binary: PathBuf::from("/bin/true"),
        };
        (t, root, policy)
    }

    fn file(p: &Path, owner: u32) {
        std::fs::File::create(p).unwrap().set_len(1 << 20).unwrap();
        std::os::unix::fs::chown(p, Some(owner), Some(owner)).unwrap();
    }

    fn num(dev: &Path) -> DevNum {
        DevNum::of(std::fs::metadata(dev).unwrap().rdev())
    }

    #[test]
    fn dm_tables_may_name_only_loops_backed_by_banger_files() {
        if skip("dm_tables_may_name_only_loops_backed_by_banger_files") {
            return;
        }
        let (_t, root, policy) = setup();
        let cx = Ctx {
            policy: &policy,
            run_as: Some((OWNER, OWNER)),
        };
        let ours = root.join("state/vms/root.cow");
        let roots = root.join("state/vms/roots.img");
        let outside = root.join("outside.img");
        file(&ours, OWNER);
        file(&roots, 0);
        file(&outside, OWNER);
        let (a, b, c) = (
            attach_direct(&ours),
            attach_direct(&roots),
            attach_direct(&outside),
        );
        let got = banger_loop_by_num(cx, num(&a.0));
        assert_eq!(
            got.as_ref().map(|(d, f)| (d.clone(), f.display_path())),
            Ok((a.0.clone(), ours.clone()))
        );
        for (what, dev) in [
            ("root's file", num(&b.0)),
            ("outside the state dir", num(&c.0)),
            ("not a loop", DevNum { major: 1, minor: 3 }),
            (
                "no such loop",
                DevNum {
                    major: LOOP_MAJOR,
                    minor: 1_048_000,
                },
            ),
        ] {
            assert!(banger_loop_by_num(cx, dev).is_err(), "{what}");
        }
        // The file moved out of the state dir and another put at its name:
        // the loop follows its inode out, and is not banger's any more.
        std::fs::rename(&ours, root.join("moved")).unwrap();
        file(&ours, OWNER);
        let swapped = banger_loop_by_num(cx, num(&a.0));
        assert!(swapped.is_err(), "{swapped:?}");
        // Listing agrees: none of these loops is banger's now.
        let listed = list_loops(cx);
        assert!(
            !listed
                .iter()
                .any(|l| [&a.0, &b.0, &c.0].contains(&&l.device)),
            "{listed:?}"
        );
    }

    #[test]
    fn the_node_given_to_the_owner_must_be_that_block_device() {
        if skip("the_node_given_to_the_owner_must_be_that_block_device") {
            return;
        }
        let (_t, root, policy) = setup();
        let img = root.join("state/vms/a.img");
        file(&img, OWNER);
        let l = attach_direct(&img);
        let meta = std::fs::metadata(&l.0).unwrap();
        let dev = num(&l.0);
        let restore = || {
            std::os::unix::fs::chown(&l.0, Some(meta.uid()), Some(meta.gid())).unwrap();
        };
        // A symlink to the node, and the node with another number: refused,
        // the node untouched.
        let link = root.join("link");
        std::os::unix::fs::symlink(&l.0, &link).unwrap();
        let via_link = give_node_to_owner(&policy, &link, dev);
        let other = give_node_to_owner(
            &policy,
            &l.0,
            DevNum {
                major: dev.major,
                minor: dev.minor + 1,
            },
        );
        let untouched = std::fs::metadata(&l.0).unwrap().uid();
        let given = give_node_to_owner(&policy, &l.0, dev);
        let now = std::fs::metadata(&l.0).unwrap().uid();
        restore();
        assert!(
            matches!(via_link, Err(PrivOpsError::Refused { .. })),
            "{via_link:?}"
        );
        assert!(
            matches!(other, Err(PrivOpsError::Refused { .. })),
            "{other:?}"
        );
        assert_eq!(untouched, meta.uid());
        given.unwrap();
        assert_eq!(now, OWNER);
    }
}
