//! Persistent TAP devices through three `/dev/net/tun` ioctls (nix):
//! `TUNSETIFF`, `TUNSETOWNER` (the uid passed as an integer, which the
//! kernel expects — a pointer would make the owner a garbage uid) and
//! `TUNSETPERSIST`.

use std::os::fd::AsRawFd;

use crate::PrivOpsError;

nix::ioctl_write_ptr_bad!(
    tunsetiff,
    nix::request_code_write!(b'T', 202, std::mem::size_of::<libc::c_int>()),
    libc::ifreq
);
nix::ioctl_write_int!(tunsetpersist, b'T', 203);
nix::ioctl_write_int!(tunsetowner, b'T', 204);

/// Flags Firecracker opens its TAP with; a persistent TAP must carry the
/// same ones or Firecracker's `TUNSETIFF` fails.
pub const TAP_FLAGS: libc::c_int = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;

/// Path of the clone device.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// Create the persistent TAP `name`, owned by `owner`. Exclusive
/// (`IFF_TUN_EXCL`): an existing device of that name is never re-opened
/// and taken over (`EBUSY`, refused).
pub(crate) fn create_persistent(name: &str, owner: u32) -> Result<(), PrivOpsError> {
    let tap_err = |what: &'static str| {
        let name = name.to_string();
        move |source: nix::Error| PrivOpsError::Tap { name, what, source }
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(TUN_DEVICE)
        .map_err(|e| {
            tap_err("open /dev/net/tun")(nix::Error::from_raw(
                e.raw_os_error().unwrap_or(libc::EIO),
            ))
        })?;
    let req = ifreq(name, (TAP_FLAGS | libc::IFF_TUN_EXCL) as libc::c_short);
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is an open /dev/net/tun descriptor and `req` a valid,
    // NUL-terminated ifreq living across the call.
    match unsafe { tunsetiff(fd, &req) } {
        Ok(_) => {}
        Err(nix::Error::EBUSY) => {
            return Err(PrivOpsError::Refused {
                op: "create_tap",
                reason: format!("a link named {name} appeared meanwhile; not taking it over"),
            });
        }
        Err(e) => return Err(tap_err("TUNSETIFF")(e)),
    }
    // SAFETY: TUNSETOWNER takes the uid by value.
    unsafe { tunsetowner(fd, owner as nix::sys::ioctl::ioctl_param_type) }
        .map_err(tap_err("TUNSETOWNER"))?;
    // SAFETY: TUNSETPERSIST takes 0/1 by value.
    unsafe { tunsetpersist(fd, 1) }.map_err(tap_err("TUNSETPERSIST"))?;
    Ok(())
}

/// Open the existing TAP `name` the way Firecracker does (test support:
/// proves the owner can attach). The returned file keeps it attached.
pub fn open_tap(name: &str) -> Result<std::fs::File, PrivOpsError> {
    open_tap_at(std::path::Path::new(TUN_DEVICE), name)
}

/// [`open_tap`] through another tun clone node (tests).
pub fn open_tap_at(node: &std::path::Path, name: &str) -> Result<std::fs::File, PrivOpsError> {
    let err = |source| PrivOpsError::Tap {
        name: name.to_string(),
        what: "attach",
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(node)
        .map_err(|e| err(nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))))?;
    let req = ifreq(name, TAP_FLAGS as libc::c_short);
    // SAFETY: as in `create_persistent`.
    unsafe { tunsetiff(file.as_raw_fd(), &req) }.map_err(err)?;
    Ok(file)
}

fn ifreq(name: &str, flags: libc::c_short) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    req
}
