//! `IDENTITY`: a restored fork's new identity, applied by the guest agent.
//!
//! A fork is restored from its source's memory, so its guest still has the
//! source's address, MAC, hostname and SSH host key. Before the fork's
//! `.vm` name is published, banger sends one line on the fork's own vsock
//! socket:
//!
//! ```text
//! IDENTITY ip=<client>::<gw>:<mask>:<hostname>:eth0:off[:<dns>] mac=<MAC> [seed=<hex>]
//! ```
//!
//! (`ip=` exactly as a cold boot's kernel argument). The agent replaces
//! the device's MAC and addresses (`ip`, by argv), the default route, the
//! hostname (kernel, `/etc/hostname`, `/etc/hosts`), `resolv.conf`, makes a
//! new SSH host key (sshd re-executes per connection, so it serves the new
//! key at once) and mixes `seed` into the kernel's RNG, then answers
//! `IDENTITY OK`, or `ERR <what failed>`.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use crate::cmdline::{self, IpConfig};

/// A parsed `IDENTITY` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The network and hostname, as from `ip=`.
    pub ip: IpConfig,
    /// The NIC's new MAC (`aa:bb:cc:dd:ee:ff`).
    pub mac: String,
    /// Bytes to mix into the kernel's RNG.
    pub seed: Vec<u8>,
}

/// Parses the words after `IDENTITY`.
pub fn parse(args: &str) -> Result<Identity, String> {
    let ip = cmdline::ip_arg(args).ok_or("no ip= in the request")?;
    let ip = cmdline::parse_ip(ip)
        .map_err(|e| e.to_string())?
        .ok_or("ip= is not a static configuration")?;
    if !ip
        .hostname
        .as_deref()
        .is_some_and(crate::agent::is_dns_label)
    {
        return Err("ip= names no valid hostname".into());
    }
    let word = |key: &str| {
        args.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
    };
    let mac = word("mac=").ok_or("no mac= in the request")?;
    let valid_mac = mac.len() == 17
        && mac.split(':').count() == 6
        && mac
            .split(':')
            .all(|b| b.len() == 2 && b.bytes().all(|c| c.is_ascii_hexdigit()));
    if !valid_mac {
        return Err(format!("invalid MAC {mac:?}"));
    }
    let seed = match word("seed=") {
        None => Vec::new(),
        Some(hex) if hex.len() % 2 == 0 && hex.len() <= 128 => (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<_, _>>()
            .map_err(|_| "seed= is not hex".to_string())?,
        Some(_) => return Err("seed= must be at most 64 bytes of hex".into()),
    };
    Ok(Identity { ip, mac, seed })
}

/// The `ip` commands that move `dev` to the new identity, in order.
pub fn ip_commands(id: &Identity, dev: &str) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut cmds = vec![
        s(&["link", "set", "dev", dev, "down"]),
        s(&["link", "set", "dev", dev, "address", &id.mac]),
        s(&["-4", "addr", "flush", "dev", dev]),
        s(&["link", "set", "dev", dev, "up"]),
        s(&[
            "addr",
            "add",
            &format!("{}/{}", id.ip.client, id.ip.prefix),
            "dev",
            dev,
        ]),
    ];
    if let Some(gw) = id.ip.gateway {
        cmds.push(s(&[
            "route",
            "replace",
            "default",
            "via",
            &gw.to_string(),
            "dev",
            dev,
        ]));
    }
    cmds
}

/// Applies `id` (files under `root`); returns what failed, if anything.
pub fn apply(root: &Path, id: &Identity) -> Result<(), String> {
    let dev = id.ip.device.as_deref().unwrap_or("eth0");
    for args in ip_commands(id, dev) {
        let out = Command::new("ip")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run ip: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "ip {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    if let Some(h) = id.ip.hostname.as_deref() {
        crate::agent::set_hostname(root, h)?;
    }
    if let Err(e) = crate::agent::write_resolv_conf(root, &id.ip) {
        crate::agent::log(format!("cannot write /etc/resolv.conf: {e}"));
    }
    for f in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
        let _ = std::fs::remove_file(root.join("etc/ssh").join(f));
    }
    crate::agent::ensure_host_keys(root);
    if !id.seed.is_empty()
        && let Err(e) = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/urandom")
            .and_then(|mut f| f.write_all(&id.seed))
    {
        crate::agent::log(format!("cannot reseed the RNG: {e}"));
    }
    crate::agent::log(format!(
        "new identity: {}/{} {} {}",
        id.ip.client,
        id.ip.prefix,
        id.mac,
        id.ip.hostname.as_deref().unwrap_or("")
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "ip=172.30.0.7::172.30.0.1:255.255.255.0:fork-1:eth0:off:172.30.0.1 mac=02:42:ac:1e:00:07 seed=00ff10";

    #[test]
    fn parses_a_request_into_the_commands_a_fork_needs() {
        let id = parse(LINE).unwrap();
        assert_eq!(id.ip.client, std::net::Ipv4Addr::new(172, 30, 0, 7));
        assert_eq!(id.ip.hostname.as_deref(), Some("fork-1"));
        assert_eq!(id.seed, vec![0, 255, 16]);
        let cmds: Vec<String> = ip_commands(&id, "eth0")
            .iter()
            .map(|c| c.join(" "))
            .collect();
        assert_eq!(
            cmds,
            [
                "link set dev eth0 down",
                "link set dev eth0 address 02:42:ac:1e:00:07",
                "-4 addr flush dev eth0",
                "link set dev eth0 up",
                "addr add 172.30.0.7/24 dev eth0",
                "route replace default via 172.30.0.1 dev eth0",
            ]
        );
    }

    fn ip(args: &[&str]) -> String {
        let out = Command::new("ip").args(args).output().expect("ip");
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Root: `apply` moves a NIC from the source's identity to the fork's,
    /// in a throwaway network namespace (`eth0` one end of a veth pair) and, for the
    /// hostname, a UTS namespace of the test's own thread.
    #[test]
    fn apply_moves_the_nic_hostname_and_host_key_to_the_new_identity() {
        if !nix_is_root() {
            eprintln!(
                "SKIP identity::apply_moves_the_nic_hostname_and_host_key_to_the_new_identity: needs root"
            );
            return;
        }
        let ns = format!("bgid-{}", std::process::id());
        ip(&["netns", "add", &ns]);
        struct Gone(String);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let _gone = Gone(ns.clone());
        ip(&[
            "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0p", "up"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "addr", "add", "172.30.0.5/24", "dev", "eth0"]);
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc/ssh")).unwrap();
        std::fs::write(root.path().join("etc/ssh/ssh_host_ed25519_key"), "old").unwrap();
        let id = parse(LINE).unwrap();
        let (root_path, ns2) = (root.path().to_path_buf(), ns.clone());
        let hostname = std::thread::spawn(move || {
            let f = std::fs::File::open(format!("/run/netns/{ns2}")).unwrap();
            // SAFETY: plain syscalls on this thread's own namespaces.
            unsafe {
                assert_eq!(libc::unshare(libc::CLONE_NEWUTS), 0);
                assert_eq!(
                    libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET),
                    0
                );
            }
            apply(&root_path, &id).unwrap();
            let mut buf = [0u8; 64];
            // SAFETY: the buffer and its length.
            unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
            String::from_utf8_lossy(&buf)
                .trim_end_matches('\0')
                .to_string()
        })
        .join()
        .unwrap();
        assert_eq!(hostname, "fork-1");
        let addrs = ip(&["-n", &ns, "-4", "-o", "addr", "show", "dev", "eth0"]);
        assert!(
            addrs.contains("172.30.0.7/24") && !addrs.contains("172.30.0.5"),
            "{addrs}"
        );
        let link = ip(&["-n", &ns, "link", "show", "eth0"]);
        assert!(link.contains("02:42:ac:1e:00:07"), "{link}");
        let routes = ip(&["-n", &ns, "route"]);
        assert!(
            routes.contains("default via 172.30.0.1 dev eth0"),
            "{routes}"
        );
        assert_eq!(
            std::fs::read_to_string(root.path().join("etc/hostname")).unwrap(),
            "fork-1\n"
        );
        let key = std::fs::read_to_string(root.path().join("etc/ssh/ssh_host_ed25519_key"))
            .unwrap_or_default();
        let keygen = Command::new("ssh-keygen").arg("-?").output().is_ok();
        assert!(
            key != "old" && (!keygen || key.contains("PRIVATE KEY")),
            "host key replaced"
        );
    }

    fn nix_is_root() -> bool {
        // SAFETY: geteuid cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn refuses_incomplete_or_bad_requests() {
        for bad in [
            "",
            "mac=02:42:ac:1e:00:07",
            "ip=172.30.0.7::172.30.0.1:255.255.255.0:fork-1:eth0:off",
            "ip=172.30.0.7::172.30.0.1:255.255.255.0::eth0:off mac=02:42:ac:1e:00:07",
            "ip=172.30.0.7::172.30.0.1:255.255.255.0:fork-1:eth0:off mac=02:42:ac:1e:00",
            "ip=172.30.0.7::172.30.0.1:255.255.255.0:fork-1:eth0:off mac=02:42:ac:1e:00:07 seed=xyz1",
            "ip=dhcp mac=02:42:ac:1e:00:07",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
