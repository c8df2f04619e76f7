//! A remote `bangerd` reached over SSH: the `ssh://[user@]host[:port]`
//! address of a context, checked before it is ever put on an OpenSSH
//! command line, and the argv that runs `banger system dial-stdio` on that
//! host.
//!
//! Nothing here builds a local shell string: OpenSSH gets an argv, the
//! destination comes after `--`, and the user and host are limited to
//! characters that cannot be read as an option or by the remote shell.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

/// The remote command that bridges the SSH session to the remote daemon's
/// socket (see `banger system dial-stdio`).
pub const DIAL_STDIO: [&str; 3] = ["banger", "system", "dial-stdio"];

/// The OpenSSH client banger runs (from `$PATH`).
pub const SSH: &str = "ssh";

/// Why an `ssh://` address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// Not an `ssh://` URL.
    #[error(
        "{0:?} is not an ssh:// address; write ssh://[user@]host[:port], e.g. ssh://me@lab.example.com"
    )]
    Scheme(String),
    /// The user part is not a plain login name.
    #[error(
        "user {0:?} is not a login name: use letters, digits, '.', '_' and '-' (not first), at most 32 characters"
    )]
    User(String),
    /// A password in the URL.
    #[error("ssh:// addresses must not carry a password; use a key (ssh-agent) or your ssh config")]
    Password,
    /// The host is not a DNS name or an IP address.
    #[error(
        "host {0:?} is not a host name or an IP address (IPv6 in brackets: ssh://[2001:db8::1]:22)"
    )]
    Host(String),
    /// The port is not 1 to 65535.
    #[error("port {0:?} is not a number from 1 to 65535")]
    Port(String),
    /// A path, query or fragment after the host.
    #[error(
        "{0:?}: an ssh:// address has no path, query or fragment; write ssh://[user@]host[:port]"
    )]
    Trailing(String),
}

/// A checked `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// Login name; `None`: OpenSSH's default (your ssh config, else your name).
    pub user: Option<String>,
    /// DNS name, IPv4 address or IPv6 address (without brackets).
    pub host: String,
    /// Port; `None`: OpenSSH's default.
    pub port: Option<u16>,
}

impl SshTarget {
    /// Parse and check `url`.
    pub fn parse(url: &str) -> Result<SshTarget, RemoteError> {
        let rest = url
            .strip_prefix("ssh://")
            .ok_or_else(|| RemoteError::Scheme(url.to_string()))?;
        if let Some(i) = rest.find(['/', '?', '#'])
            && &rest[i..] != "/"
        {
            return Err(RemoteError::Trailing(url.to_string()));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => {
                if u.contains(':') {
                    return Err(RemoteError::Password);
                }
                check_user(u)?;
                (Some(u.to_string()), h)
            }
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport)?;
        Ok(SshTarget { user, host, port })
    }

    /// `[user@]host[:port]`, IPv6 in brackets: OpenSSH's `ProxyJump` form.
    pub fn jump(&self) -> String {
        let mut s = String::new();
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        if self.host.contains(':') {
            s.push_str(&format!("[{}]", self.host));
        } else {
            s.push_str(&self.host);
        }
        if let Some(p) = self.port {
            s.push_str(&format!(":{p}"));
        }
        s
    }

    /// The OpenSSH options that reach this host: `[-F FILE] [-p PORT] [-l
    /// USER] -- HOST`, to be followed by the remote command.
    pub fn ssh_args(&self, ssh_config: Option<&PathBuf>, tty: bool) -> Vec<OsString> {
        let mut a: Vec<OsString> = Vec::new();
        if let Some(f) = ssh_config {
            a.push("-F".into());
            a.push(f.into());
        }
        a.push(if tty { "-t" } else { "-T" }.into());
        if let Some(p) = self.port {
            a.push("-p".into());
            a.push(p.to_string().into());
        }
        if let Some(u) = &self.user {
            a.push("-l".into());
            a.push(u.into());
        }
        a.push("--".into());
        a.push(self.host.clone().into());
        a
    }
}

impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ssh://{}", self.jump())
    }
}

fn check_user(u: &str) -> Result<(), RemoteError> {
    let ok = !u.is_empty()
        && u.len() <= 32
        && !u.starts_with('-')
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(RemoteError::User(u.to_string()))
    }
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), RemoteError> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| RemoteError::Host(s.to_string()))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(RemoteError::Host(h.to_string()));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| RemoteError::Host(s.to_string()))?,
            ),
        };
        (h.to_string(), port)
    } else {
        let (h, p) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if !is_host_name(h) {
            return Err(RemoteError::Host(h.to_string()));
        }
        (h.to_ascii_lowercase(), p)
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&n| n != 0 && !p.starts_with('+'))
                .ok_or_else(|| RemoteError::Port(p.to_string()))?,
        ),
    };
    Ok((host, port))
}

/// A DNS name (labels of letters, digits and inner '-') or an IPv4 address.
fn is_host_name(h: &str) -> bool {
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    let h = h.strip_suffix('.').unwrap_or(h);
    h.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// Quote `arg` for the remote login shell, which OpenSSH hands the remote
/// command as one string: `'…'` with each `'` written `'\''`.
pub fn sh_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./_-".contains(&b))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(user: Option<&str>, host: &str, port: Option<u16>) -> SshTarget {
        SshTarget {
            user: user.map(str::to_string),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn good_addresses_parse() {
        let cases = [
            (
                "ssh://me@lab.example.com",
                t(Some("me"), "lab.example.com", None),
            ),
            ("ssh://me@Lab:2222", t(Some("me"), "lab", Some(2222))),
            ("ssh://lab/", t(None, "lab", None)),
            (
                "ssh://root@192.0.2.2:22",
                t(Some("root"), "192.0.2.2", Some(22)),
            ),
            (
                "ssh://a_b.c-d@[2001:db8::1]:2200",
                t(Some("a_b.c-d"), "2001:db8::1", Some(2200)),
            ),
            ("ssh://[::1]", t(None, "::1", None)),
        ];
        for (url, want) in cases {
            assert_eq!(SshTarget::parse(url).as_ref(), Ok(&want), "{url}");
            // Display gives an address that parses back to the same target.
            assert_eq!(SshTarget::parse(&want.to_string()), Ok(want), "{url}");
        }
    }

    #[test]
    fn bad_addresses_are_refused_with_the_reason() {
        use RemoteError as E;
        type Case = (&'static str, fn(&RemoteError) -> bool);
        let cases: [Case; 16] = [
            ("me@lab", |e| matches!(e, E::Scheme(_))),
            ("http://lab", |e| matches!(e, E::Scheme(_))),
            ("ssh://", |e| matches!(e, E::Host(_))),
            ("ssh://-oProxyCommand=x", |e| matches!(e, E::Host(_))),
            ("ssh://-l@lab", |e| matches!(e, E::User(_))),
            ("ssh://me;rm@lab", |e| matches!(e, E::User(_))),
            ("ssh://me:secret@lab", |e| matches!(e, E::Password)),
            ("ssh://@lab", |e| matches!(e, E::User(_))),
            ("ssh://me@la b", |e| matches!(e, E::Host(_))),
            ("ssh://me@lab:0", |e| matches!(e, E::Port(_))),
            ("ssh://me@lab:65536", |e| matches!(e, E::Port(_))),
            ("ssh://me@lab:+22", |e| matches!(e, E::Port(_))),
            ("ssh://me@lab:", |e| matches!(e, E::Port(_))),
            ("ssh://me@lab/path", |e| matches!(e, E::Trailing(_))),
            ("ssh://me@[fe80::1", |e| matches!(e, E::Host(_))),
            ("ssh://me@[not-v6]:22", |e| matches!(e, E::Host(_))),
        ];
        for (url, ok) in cases {
            let e = SshTarget::parse(url).expect_err(url);
            assert!(ok(&e), "{url}: {e:?}");
        }
    }

    #[test]
    fn ssh_args_put_the_host_after_the_option_end() {
        let a = t(Some("me"), "lab", Some(2222));
        let cfg = PathBuf::from("/tmp/cfg");
        let args: Vec<String> = a
            .ssh_args(Some(&cfg), false)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "-F", "/tmp/cfg", "-T", "-p", "2222", "-l", "me", "--", "lab"
            ]
        );
        let args = t(None, "lab", None).ssh_args(None, true);
        assert_eq!(args, ["-t", "--", "lab"].map(OsString::from));
        assert_eq!(a.jump(), "me@lab:2222");
        assert_eq!(t(None, "::1", Some(22)).jump(), "[::1]:22");
    }

    #[test]
    fn quoting_survives_the_remote_shell() {
        assert_eq!(sh_quote("web-1"), "web-1");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's; $(x)"), r"'it'\''s; $(x)'");
        // What sh makes of the quoted words is the original argv.
        let args = ["echo", "it's", "$HOME", "a  b", ";", ""];
        let line = args.map(sh_quote).join(" ");
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("for a in {line}; do printf '<%s>' \"$a\"; done"),
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "<echo><it's><$HOME><a  b><;><>"
        );
    }
}
