//! Listening sockets from `/proc`: `/proc/net/{tcp,tcp6,udp,udp6}` give
//! the TCP sockets in `LISTEN` and the unconnected UDP sockets with their
//! inode; `/proc/<pid>/fd/*` → `socket:[inode]` maps them to a process,
//! named by `/proc/<pid>/comm`. The root is a parameter so tests run on
//! fixture trees.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::proto::ListenSocket;

/// `st` of a listening TCP socket.
const TCP_LISTEN: u8 = 0x0A;
/// `st` of an unconnected UDP socket (`TCP_CLOSE`).
const UDP_UNCONN: u8 = 0x07;

/// A `/proc/net` table could not be read.
#[derive(Debug)]
pub struct ProcNetError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

impl fmt::Display for ProcNetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for ProcNetError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// One row of a `/proc/net/{tcp,udp}[6]` table that is listening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSocket {
    /// `tcp` or `udp`.
    pub proto: &'static str,
    /// Local address, IPv6 in brackets.
    pub address: String,
    /// Local port.
    pub port: u16,
    /// Socket inode (0 for sockets without one, e.g. in `TIME_WAIT`).
    pub inode: u64,
}

/// Decode `/proc/net` hex: 8 digits for IPv4, 32 for IPv6, each group of
/// 8 a 32-bit word in host byte order.
fn decode_addr(hex: &str) -> Option<String> {
    let word = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::to_ne_bytes);
    match hex.len() {
        8 => Some(Ipv4Addr::from(word(hex)?).to_string()),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(hex.get(i * 8..i * 8 + 8)?)?);
            }
            Some(format!("[{}]", Ipv6Addr::from(b)))
        }
        _ => None,
    }
}

/// Parse one table. `proto` is `tcp` or `udp`; rows that do not listen
/// (or do not parse) are skipped.
pub fn parse_table(proto: &'static str, text: &str) -> Vec<ProcSocket> {
    let want = if proto == "tcp" {
        TCP_LISTEN
    } else {
        UDP_UNCONN
    };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 {
            continue;
        }
        let Ok(st) = u8::from_str_radix(f[3], 16) else {
            continue;
        };
        if st != want {
            continue;
        }
        let Some((addr, port)) = f[1].split_once(':') else {
            continue;
        };
        let (Some(address), Ok(port), Ok(inode)) = (
            decode_addr(addr),
            u16::from_str_radix(port, 16),
            f[9].parse::<u64>(),
        ) else {
            continue;
        };
        out.push(ProcSocket {
            proto,
            address,
            port,
            inode,
        });
    }
    out
}

/// Socket inode → process name, from `<proc_root>/<pid>/fd`. Processes
/// that vanish or cannot be read are skipped.
pub fn socket_owners(proc_root: &Path) -> HashMap<u64, String> {
    let mut owners = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return owners;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let pid_dir = proc_root.join(pid);
        let Ok(fds) = std::fs::read_dir(pid_dir.join("fd")) else {
            continue;
        };
        let mut comm: Option<String> = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            else {
                continue;
            };
            if owners.contains_key(&inode) {
                continue;
            }
            let c = comm.get_or_insert_with(|| {
                std::fs::read_to_string(pid_dir.join("comm"))
                    .map(|s| s.trim_end_matches('\n').to_string())
                    .unwrap_or_default()
            });
            if !c.is_empty() {
                owners.insert(inode, c.clone());
            }
        }
    }
    owners
}

/// Every listening TCP socket and unconnected UDP socket, v4 and v6, with
/// its process, sorted by port, protocol and address. A missing `tcp6` or
/// `udp6` table (IPv6 disabled) is not an error; a missing `tcp` is.
pub fn listening(proc_root: &Path) -> Result<Vec<ListenSocket>, ProcNetError> {
    let mut rows = Vec::new();
    for (file, proto, required) in [
        ("tcp", "tcp", true),
        ("tcp6", "tcp", false),
        ("udp", "udp", true),
        ("udp6", "udp", false),
    ] {
        let path = proc_root.join("net").join(file);
        match std::fs::read_to_string(&path) {
            Ok(text) => rows.extend(parse_table(proto, &text)),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ProcNetError { path, source }),
        }
    }
    let owners = socket_owners(proc_root);
    let mut out: Vec<ListenSocket> = rows
        .into_iter()
        .map(|r| ListenSocket {
            proto: r.proto.to_string(),
            address: r.address,
            port: r.port,
            process: owners.get(&r.inode).cloned(),
        })
        .collect();
    out.sort_by(|a, b| (a.port, &a.proto, &a.address).cmp(&(b.port, &b.proto, &b.address)));
    out.dedup();
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    // Captured from a Debian guest (x86_64, so words are little-endian).
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11623 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 20001 1 0000000000000000 100 0 0 10 0
   2: 02001EAC:0016 01001EAC:C350 01 00000000:00000000 02:000A7F2B 00000000     0        0 20002 2 0000000000000000 20 4 29 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11625 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:0CEA 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 20003 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  512: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 9001 2 0000000000000000 0
  700: 02001EAC:A001 08080808:0035 01 00000000:00000000 00:00000000 00000000     0        0 9002 2 0000000000000000 0
";

    /// A fixture `/proc`: the tables above, sshd (pid 81) owning inodes
    /// 11623 and 11625, systemd-resolve (pid 9) owning 9001; the inodes
    /// 20001 and 20003 have no owner.
    pub(crate) fn fixture_proc() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let net = t.path().join("net");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("tcp"), TCP).unwrap();
        std::fs::write(net.join("tcp6"), TCP6).unwrap();
        std::fs::write(net.join("udp"), UDP).unwrap();
        for (pid, comm, inodes) in [
            ("81", "sshd", &["11623", "11625"][..]),
            ("9", "systemd-resolve", &["9001"][..]),
        ] {
            let fd = t.path().join(pid).join("fd");
            std::fs::create_dir_all(&fd).unwrap();
            std::fs::write(t.path().join(pid).join("comm"), format!("{comm}\n")).unwrap();
            std::os::unix::fs::symlink("/dev/null", fd.join("0")).unwrap();
            for (i, ino) in inodes.iter().enumerate() {
                std::os::unix::fs::symlink(
                    format!("socket:[{ino}]"),
                    fd.join(format!("{}", i + 3)),
                )
                .unwrap();
            }
        }
        std::fs::create_dir_all(t.path().join("self")).unwrap();
        t
    }

    #[test]
    fn parses_fixture_tables() {
        let tcp = parse_table("tcp", TCP);
        assert_eq!(tcp.len(), 2, "the ESTABLISHED row is not listening");
        assert_eq!(tcp[0].address, "0.0.0.0");
        assert_eq!(tcp[0].port, 22);
        assert_eq!(tcp[1].address, "127.0.0.1");
        assert_eq!(tcp[1].port, 8080);
        let tcp6 = parse_table("tcp", TCP6);
        assert_eq!(tcp6[0].address, "[::]");
        assert_eq!(tcp6[1].address, "[::1]");
        assert_eq!(tcp6[1].port, 3306);
        let udp = parse_table("udp", UDP);
        assert_eq!(udp.len(), 1, "the connected UDP socket is not listed");
        assert_eq!((udp[0].address.as_str(), udp[0].port), ("127.0.0.53", 53));
        assert_eq!(udp[0].inode, 9001);
        assert!(parse_table("tcp", "header\ngarbage row\n").is_empty());
    }

    #[test]
    fn fixture_tree_maps_processes_and_tolerates_missing_udp6() {
        let t = fixture_proc();
        let l = listening(t.path()).unwrap();
        let view: Vec<(u16, &str, &str, Option<&str>)> = l
            .iter()
            .map(|s| {
                (
                    s.port,
                    s.proto.as_str(),
                    s.address.as_str(),
                    s.process.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            view,
            vec![
                (22, "tcp", "0.0.0.0", Some("sshd")),
                (22, "tcp", "[::]", Some("sshd")),
                (53, "udp", "127.0.0.53", Some("systemd-resolve")),
                (3306, "tcp", "[::1]", None),
                (8080, "tcp", "127.0.0.1", None),
            ]
        );
        std::fs::remove_file(t.path().join("net/tcp")).unwrap();
        let e = listening(t.path()).unwrap_err();
        assert!(e.to_string().contains("net/tcp"), "{e}");
    }

    #[test]
    fn the_hosts_own_proc_shows_a_fresh_listener_with_our_name() {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let udp = std::net::UdpSocket::bind("[::1]:0");
        let port = tcp.local_addr().unwrap().port();
        let l = listening(Path::new("/proc")).unwrap();
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let me = me.trim_end();
        let hit = l
            .iter()
            .find(|s| s.port == port && s.proto == "tcp")
            .unwrap_or_else(|| panic!("port {port} missing from {l:?}"));
        assert_eq!(hit.address, "127.0.0.1");
        assert_eq!(hit.process.as_deref(), Some(me));
        if let Ok(udp) = udp {
            let uport = udp.local_addr().unwrap().port();
            assert!(
                l.iter()
                    .any(|s| s.port == uport && s.proto == "udp" && s.address == "[::1]"),
                "udp [::1]:{uport} missing from {l:?}"
            );
        }
    }
}
