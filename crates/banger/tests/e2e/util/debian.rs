//! Shared by the tests that build or boot the Debian image (`image_build`,
//! `guest_e2e`): the test cache of bootstrap tarballs, tool and mirror
//! checks, and the static guest agent.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::list_dir;

/// `$BANGER_TEST_CACHE`, default `/var/tmp/banger-test-cache`: bootstrap
/// tarballs under `bootstrap/`, an exported bundle of the image.
pub fn test_cache() -> PathBuf {
    std::env::var_os("BANGER_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/banger-test-cache"))
}

/// The mirror the daemon will use (the host's Debian mirror, else
/// deb.debian.org) answers on its port.
pub fn mirror_reachable() -> Result<(), String> {
    let sources =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    let url = sources
        .lines()
        .filter_map(|l| l.trim().strip_prefix("URIs:"))
        .flat_map(str::split_whitespace)
        .find(|u| !u.contains("security"))
        .unwrap_or("http://deb.debian.org/debian")
        .to_string();
    let (scheme, rest) = url.split_once("://").ok_or(format!("odd mirror {url}"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let port = if scheme == "https" { 443 } else { 80 };
    let addr = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:{port}")
    };
    let addrs: Vec<_> = addr
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    for a in &addrs {
        if TcpStream::connect_timeout(a, Duration::from_secs(5)).is_ok() {
            return Ok(());
        }
    }
    Err(format!("cannot connect to {addr}"))
}

/// Hard-link (or copy) every file of `from` ending in `suffix` into `to`.
pub fn link_all(from: &Path, to: &Path, suffix: &str) {
    std::fs::create_dir_all(to).unwrap();
    for name in list_dir(from) {
        if !name.ends_with(suffix) {
            continue;
        }
        let (src, dst) = (from.join(&name), to.join(&name));
        if dst.exists() {
            continue;
        }
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Whether the test cache holds a bootstrap tarball (a build then needs no
/// mirror, unless the recipe changed since).
pub fn cached_bootstrap() -> bool {
    list_dir(&test_cache().join("bootstrap"))
        .iter()
        .any(|n| n.ends_with(".tar"))
}

/// Keep `state`'s bootstrap tarballs in the test cache, dropping cached
/// tarballs of other recipes except the newest one (the image with banger's
/// microVM kernel and the one with Debian's kernel are two recipes, and
/// tests build both): the daemon logs the key it used
/// (`image built … bootstrap=<sha256>`).
pub fn keep_bootstrap(state_cache: &Path, daemon_log: &str) {
    let cache = test_cache().join("bootstrap");
    link_all(state_cache, &cache, ".tar");
    let key = daemon_log
        .lines()
        .filter(|l| l.contains("image built"))
        .find_map(|l| l.split("bootstrap=").nth(1))
        .map(|k| {
            k.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        })
        .filter(|k| k.len() == 64)
        .unwrap_or_else(|| {
            panic!(
                "no bootstrap key in the daemon log:\n{}",
                super::tail(daemon_log, 20)
            )
        });
    let mut others: Vec<(std::time::SystemTime, String)> = list_dir(&cache)
        .into_iter()
        .filter(|n| n.ends_with(".tar") && *n != format!("{key}.tar"))
        .filter_map(|n| {
            let m = std::fs::metadata(cache.join(&n)).and_then(|m| m.modified());
            m.ok().map(|m| (m, n))
        })
        .collect();
    others.sort();
    others.pop();
    for (_, name) in others {
        let _ = std::fs::remove_file(cache.join(name));
    }
}

/// The static guest agent: the `make guest-agent` output, or a fresh static
/// build in a separate target dir — the same function `banger-guest`'s own
/// tests use, included from that crate rather than copied.
#[path = "../../../../guest/tests/common/mod.rs"]
mod guest_common;
#[allow(unused_imports)] // the benchmarks that include `util` boot no guest
pub use guest_common::static_agent;
