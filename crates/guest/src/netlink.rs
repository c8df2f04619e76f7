//! Just enough rtnetlink for `banger-guest init`: set a link up, add an
//! IPv4 address, add a default route. Messages are built by hand (the
//! agent links nothing but libc); every request asks for an ACK and a
//! kernel error comes back as the errno it carries.

use std::fmt;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

/// A netlink request failed.
#[derive(Debug)]
pub struct NetlinkError {
    /// What was asked (`set eth0 up`).
    pub what: String,
    /// Why.
    pub source: io::Error,
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "netlink: cannot {}: {}", self.what, self.source)
    }
}

impl std::error::Error for NetlinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether an add failed only because the thing is already there.
pub fn already_exists(e: &NetlinkError) -> bool {
    e.source.raw_os_error() == Some(libc::EEXIST)
}

/// The index of interface `name`, if it exists.
pub fn link_index(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the call's duration.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Whether interface `name` has an IPv4 address.
pub fn has_ipv4(name: &str) -> io::Result<bool> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = false;
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*cur };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let n = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
        if n.to_bytes() == name.as_bytes()
            && !ifa.ifa_addr.is_null()
            // SAFETY: a non-null ifa_addr points to a sockaddr.
            && i32::from(unsafe { (*ifa.ifa_addr).sa_family }) == libc::AF_INET
        {
            found = true;
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(found)
}

/// A route netlink socket.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

impl Netlink {
    /// Open a `NETLINK_ROUTE` socket in the caller's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd, seq: 1 })
    }

    /// Send one request (`body` after the netlink header) and wait for its ACK.
    fn request(
        &mut self,
        kind: u16,
        flags: u16,
        body: &[u8],
        what: String,
    ) -> Result<(), NetlinkError> {
        let fail = |source| NetlinkError {
            what: what.clone(),
            source,
        };
        self.seq += 1;
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        // SAFETY: zeroed sockaddr_nl addresses the kernel (pid 0).
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `msg` and `kernel` are valid for the lengths given.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: `buf` is valid for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(fail(io::Error::last_os_error()));
            }
            let mut off = 0usize;
            let n = n as usize;
            while off + 16 <= n {
                let u32_at = |o: usize| u32::from_ne_bytes(buf[o..o + 4].try_into().expect("4"));
                let len = u32_at(off) as usize;
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let seq = u32_at(off + 8);
                if len < 16 || off + len > n {
                    return Err(fail(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "truncated netlink reply",
                    )));
                }
                if kind == NLMSG_ERROR && seq == self.seq && len >= 20 {
                    let code = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().expect("4"));
                    return if code == 0 {
                        Ok(())
                    } else {
                        Err(fail(io::Error::from_raw_os_error(-code)))
                    };
                }
                off += len.next_multiple_of(4);
            }
        }
    }

    /// Set link `index` (named `name`, for messages) up.
    pub fn set_up(&mut self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let mut b = Vec::with_capacity(16);
        b.push(libc::AF_UNSPEC as u8);
        b.push(0);
        b.extend_from_slice(&0u16.to_ne_bytes());
        b.extend_from_slice(&(index as i32).to_ne_bytes());
        b.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        b.extend_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        self.request(RTM_NEWLINK, 0, &b, format!("set {name} up"))
    }

    /// Add `addr/prefix` to link `index`.
    pub fn add_address(
        &mut self,
        index: u32,
        name: &str,
        addr: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let mut b = vec![libc::AF_INET as u8, prefix, 0, RT_SCOPE_UNIVERSE];
        b.extend_from_slice(&index.to_ne_bytes());
        attr(&mut b, IFA_LOCAL, &addr.octets());
        attr(&mut b, IFA_ADDRESS, &addr.octets());
        self.request(
            RTM_NEWADDR,
            NLM_F_CREATE | NLM_F_EXCL,
            &b,
            format!("add {addr}/{prefix} to {name}"),
        )
    }

    /// Add the default route via `gateway` on link `index`.
    pub fn add_default_route(
        &mut self,
        index: u32,
        name: &str,
        gateway: Ipv4Addr,
    ) -> Result<(), NetlinkError> {
        let mut b = vec![
            libc::AF_INET as u8,
            0,
            0,
            0,
            RT_TABLE_MAIN,
            RTPROT_BOOT,
            RT_SCOPE_UNIVERSE,
            RTN_UNICAST,
        ];
        b.extend_from_slice(&0u32.to_ne_bytes());
        attr(&mut b, RTA_GATEWAY, &gateway.octets());
        attr(&mut b, RTA_OIF, &index.to_ne_bytes());
        self.request(
            RTM_NEWROUTE,
            NLM_F_CREATE | NLM_F_EXCL,
            &b,
            format!("add default route via {gateway} dev {name}"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// In a throwaway network namespace (this thread only): a veth link
    /// gets up, an address and a default route, and `ip` sees them.
    #[test]
    fn configures_a_veth_link_in_a_throwaway_netns() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            banger_testsupport::skip!(
                "configures_a_veth_link_in_a_throwaway_netns",
                "needs root for a network namespace"
            );
        }
        let t = std::thread::spawn(|| -> Result<String, String> {
            // SAFETY: unshare of the net namespace affects this thread only.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return Err(format!(
                    "unshare(CLONE_NEWNET): {}",
                    io::Error::last_os_error()
                ));
            }
            let ip = |args: &[&str]| Command::new("ip").args(args).output();
            match ip(&["link", "add", "bg0", "type", "veth", "peer", "name", "bg1"]) {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    return Err(format!(
                        "no veth links: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ));
                }
                Err(e) => return Err(format!("cannot run ip: {e}")),
            }
            let index = link_index("bg0").expect("bg0 exists");
            assert!(!has_ipv4("bg0").unwrap());
            let mut nl = Netlink::open().unwrap();
            nl.set_up(index, "bg0").unwrap();
            nl.add_address(index, "bg0", Ipv4Addr::new(10, 77, 0, 2), 24)
                .unwrap();
            let again = nl
                .add_address(index, "bg0", Ipv4Addr::new(10, 77, 0, 2), 24)
                .unwrap_err();
            assert!(already_exists(&again), "{again}");
            nl.add_default_route(index, "bg0", Ipv4Addr::new(10, 77, 0, 1))
                .unwrap();
            let e = nl.set_up(9999, "nope").unwrap_err();
            assert!(e.to_string().contains("set nope up"), "{e}");
            assert!(has_ipv4("bg0").unwrap());
            let addr = ip(&["-4", "-o", "addr", "show", "dev", "bg0"]).unwrap();
            let route = ip(&["-4", "route", "show", "default"]).unwrap();
            Ok(format!(
                "{}{}",
                String::from_utf8_lossy(&addr.stdout),
                String::from_utf8_lossy(&route.stdout)
            ))
        });
        match t.join().unwrap() {
            Ok(out) => {
                assert!(out.contains("10.77.0.2/24"), "{out}");
                assert!(out.contains("default via 10.77.0.1 dev bg0"), "{out}");
            }
            Err(why) => {
                banger_testsupport::skip!("configures_a_veth_link_in_a_throwaway_netns", "{why}")
            }
        }
    }
}
