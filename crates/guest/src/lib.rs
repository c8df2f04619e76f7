//! banger's guest bits.
//!
//! The library half describes what image seeding installs into a guest
//! root filesystem ([`payload`]); the binary half (`banger-guest`) is the
//! agent those files start inside the guest. The daemon depends on this
//! crate only for [`payload`] and the protocol constants; it never runs
//! the agent on the host.

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

const UNIT: &str = "[Unit]\n\
Description=banger guest agent\n\
After=local-fs.target\n\
\n\
[Service]\n\
ExecStart=/usr/local/lib/banger/banger-guest serve\n\
Restart=always\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n";

/// The files seeding installs, parents before children. `agent` is the
/// `banger-guest` executable built for the guest.
pub fn payload(agent: &[u8]) -> Vec<SeedFile> {
    let dir = |p: &str| SeedFile {
        path: p.into(),
        mode: 0o755,
        content: SeedContent::Dir,
    };
    vec![
        dir("/usr/local/lib/banger"),
        SeedFile {
            path: AGENT_PATH.into(),
            mode: 0o755,
            content: SeedContent::File(agent.to_vec()),
        },
        dir("/etc/systemd/system/multi-user.target.wants"),
        SeedFile {
            path: "/etc/systemd/system/banger-guest.service".into(),
            mode: 0o644,
            content: SeedContent::File(UNIT.as_bytes().to_vec()),
        },
        SeedFile {
            path: "/etc/systemd/system/multi-user.target.wants/banger-guest.service".into(),
            mode: 0o777,
            content: SeedContent::Symlink("/etc/systemd/system/banger-guest.service".into()),
        },
    ]
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
}
