//! banger's guest bits.
//!
//! The library half describes what image seeding installs into a guest
//! root filesystem ([`payload`]); the binary half (`banger-guest`) is the
//! agent those files start inside the guest. The daemon depends on this
//! crate only for [`payload`] and the protocol constants; it never runs
//! the agent on the host.
//!
//! - [`payload`]: the agent and its two systemd units (`init`, `serve`).
//! - [`cmdline`]: the kernel's `ip=` argument, applied by `init`.
//! - [`proto`]: the vsock line protocol (`PING`, `PORTS`), both sides.
//! - [`procnet`]: listening sockets from `/proc`, answered to `PORTS`.

pub mod agent;
pub mod cmdline;
pub mod identity;
pub mod netlink;
pub mod procnet;
pub mod proto;

/// Where the agent binary lives inside the guest.
pub const AGENT_PATH: &str = "/usr/local/lib/banger/banger-guest";

/// The hybrid-vsock port the agent listens on (Firecracker `CONNECT <port>`).
pub const VSOCK_PORT: u32 = 52;

/// What a seeded file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedContent {
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
    /// A directory.
    Dir,
}

/// One entry seeding writes into an image (owned by root:root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFile {
    /// Absolute path inside the guest.
    pub path: String,
    /// Permission bits (ignored for symlinks).
    pub mode: u32,
    /// Content.
    pub content: SeedContent,
}

/// The oneshot that applies `ip=`, the hostname and SSH host keys.
pub const INIT_UNIT_PATH: &str = "/etc/systemd/system/banger-guest-init.service";

/// The long-running agent.
pub const SERVE_UNIT_PATH: &str = "/etc/systemd/system/banger-guest.service";

/// `banger-guest init`: early (in `sysinit.target`, so no default
/// dependencies), after the local file systems, before the network is
/// configured and before sshd reads its host keys.
const INIT_UNIT: &str = "[Unit]\n\
Description=banger guest init (ip= network, hostname, SSH host keys)\n\
DefaultDependencies=no\n\
After=local-fs.target systemd-remount-fs.service systemd-udev-trigger.service\n\
Wants=network-pre.target\n\
Before=network-pre.target ssh.service sshd.service sysinit.target shutdown.target\n\
Conflicts=shutdown.target\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStart=/usr/local/lib/banger/banger-guest init\n\
StandardOutput=journal+console\n\
StandardError=journal+console\n\
TimeoutStartSec=90\n\
\n\
[Install]\n\
WantedBy=sysinit.target\n";

/// `banger-guest serve`: the vsock listener.
const SERVE_UNIT: &str = "[Unit]\n\
Description=banger guest agent (vsock port 52: readiness, listening ports)\n\
After=local-fs.target banger-guest-init.service\n\
\n\
[Service]\n\
ExecStart=/usr/local/lib/banger/banger-guest serve\n\
Restart=on-failure\n\
RestartSec=1\n\
StandardError=journal+console\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";

/// The files seeding installs, parents before children. `agent` is the
/// `banger-guest` executable built for the guest (static, see
/// [`is_static_elf`]).
pub fn payload(agent: &[u8]) -> Vec<SeedFile> {
    let dir = |p: &str| SeedFile {
        path: p.into(),
        mode: 0o755,
        content: SeedContent::Dir,
    };
    let file = |p: &str, mode: u32, bytes: &[u8]| SeedFile {
        path: p.into(),
        mode,
        content: SeedContent::File(bytes.to_vec()),
    };
    let link = |p: &str, target: &str| SeedFile {
        path: p.into(),
        mode: 0o777,
        content: SeedContent::Symlink(target.into()),
    };
    vec![
        dir("/usr/local/lib/banger"),
        file(AGENT_PATH, 0o755, agent),
        dir("/etc/systemd/system/multi-user.target.wants"),
        file(SERVE_UNIT_PATH, 0o644, SERVE_UNIT.as_bytes()),
        link(
            "/etc/systemd/system/multi-user.target.wants/banger-guest.service",
            SERVE_UNIT_PATH,
        ),
        dir("/etc/systemd/system/sysinit.target.wants"),
        file(INIT_UNIT_PATH, 0o644, INIT_UNIT.as_bytes()),
        link(
            "/etc/systemd/system/sysinit.target.wants/banger-guest-init.service",
            INIT_UNIT_PATH,
        ),
    ]
}

/// Whether `bytes` is an x86_64 ELF executable that needs no dynamic
/// loader (no `PT_INTERP`): what runs in any distribution's guest.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    const EM_X86_64: u16 = 62;
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    // Magic, ELFCLASS64, little-endian, ET_EXEC or ET_DYN (static-pie), x86_64.
    if bytes.get(..6) != Some(&b"\x7fELF\x02\x01"[..]) || !matches!(u16_at(16), Some(2 | 3)) {
        return false;
    }
    if u16_at(18) != Some(EM_X86_64) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    if phnum == 0 || phentsize < 56 {
        return false;
    }
    (0..phnum as usize).all(|i| {
        let off = usize::try_from(phoff)
            .ok()
            .and_then(|p| p.checked_add(i * phentsize as usize));
        match off.and_then(u32_at) {
            Some(t) => t != PT_INTERP,
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_come_before_children() {
        let p = payload(b"\x7fELF");
        for (i, f) in p.iter().enumerate() {
            let parent = std::path::Path::new(&f.path).parent().unwrap();
            if let Some(j) = p
                .iter()
                .position(|g| std::path::Path::new(&g.path) == parent)
            {
                assert!(j < i, "{} before its parent", f.path);
            }
        }
        assert!(p.iter().any(|f| f.path == AGENT_PATH));
    }

    #[test]
    fn every_unit_is_enabled_by_a_symlink_to_it() {
        let p = payload(b"");
        for unit in [INIT_UNIT_PATH, SERVE_UNIT_PATH] {
            let body = p.iter().find(|f| f.path == unit).expect(unit);
            let SeedContent::File(text) = &body.content else {
                panic!("{unit} is not a file")
            };
            let text = String::from_utf8(text.clone()).unwrap();
            assert!(text.contains(AGENT_PATH), "{text}");
            let wanted_by = text
                .lines()
                .find_map(|l| l.strip_prefix("WantedBy="))
                .unwrap();
            let name = unit.rsplit('/').next().unwrap();
            let link = format!("/etc/systemd/system/{wanted_by}.wants/{name}");
            assert!(
                p.iter()
                    .any(|f| f.path == link && f.content == SeedContent::Symlink(unit.into())),
                "{link} missing"
            );
        }
        let SeedContent::File(init) = &p.iter().find(|f| f.path == INIT_UNIT_PATH).unwrap().content
        else {
            unreachable!()
        };
        let init = String::from_utf8_lossy(init);
        assert!(
            init.contains("DefaultDependencies=no"),
            "sysinit.target would cycle"
        );
        assert!(init.contains("Before=network-pre.target ssh.service"));
    }

    /// A minimal ELF64 header plus program headers of the given types.
    fn elf(machine: u16, types: &[u32]) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56 * types.len()];
        b[..6].copy_from_slice(b"\x7fELF\x02\x01");
        b[16..18].copy_from_slice(&3u16.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(types.len() as u16).to_le_bytes());
        for (i, t) in types.iter().enumerate() {
            b[64 + 56 * i..68 + 56 * i].copy_from_slice(&t.to_le_bytes());
        }
        b
    }

    #[test]
    fn static_elf_detection() {
        assert!(is_static_elf(&elf(62, &[6, 1, 2])));
        assert!(!is_static_elf(&elf(62, &[6, 3, 1])), "PT_INTERP");
        assert!(!is_static_elf(&elf(183, &[1])), "aarch64");
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        let mut truncated = elf(62, &[1, 1]);
        truncated.truncate(100);
        assert!(!is_static_elf(&truncated));
        // The test binary itself is dynamically linked.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static_elf(&me), "the test binary has PT_INTERP");
    }
}
