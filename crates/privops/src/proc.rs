//! Minimal `/proc` reads the adapter needs to check a PID before touching it.

use std::path::Path;

/// Whether `pid` is alive (not a zombie) and was started with
/// `--api-sock <api_sock>`: the identity check done before any signal.
pub fn vmm_matches(proc_root: &Path, pid: u32, api_sock: &Path) -> bool {
    let dir = proc_root.join(pid.to_string());
    let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may contain spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, None | Some('Z') | Some('X')) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
        return false;
    };
    let want = api_sock.as_os_str().as_encoded_bytes();
    let mut args = cmdline.split(|b| *b == 0);
    while let Some(arg) = args.next() {
        if arg == b"--api-sock" {
            return args.next() == Some(want);
        }
        if let Some(v) = arg.strip_prefix(b"--api-sock=") {
            return v == want;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(root: &Path, pid: u32, state: char, cmdline: &[&str]) {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("stat"),
            format!("{pid} (fire cracker) {state} 1 2 3"),
        )
        .unwrap();
        std::fs::write(d.join("cmdline"), cmdline.join("\0") + "\0").unwrap();
    }

    #[test]
    fn matches_only_our_live_vmm() {
        let t = tempfile::tempdir().unwrap();
        fake(
            t.path(),
            10,
            'S',
            &["fc", "--api-sock", "/run/b/a.sock", "--id", "x"],
        );
        fake(t.path(), 11, 'Z', &["fc", "--api-sock", "/run/b/a.sock"]);
        fake(
            t.path(),
            12,
            'R',
            &["fc", "--api-sock", "/run/b/other.sock"],
        );
        fake(t.path(), 13, 'R', &["fc", "--api-sock=/run/b/a.sock"]);
        let s = Path::new("/run/b/a.sock");
        assert!(vmm_matches(t.path(), 10, s));
        assert!(!vmm_matches(t.path(), 11, s), "zombie");
        assert!(!vmm_matches(t.path(), 12, s), "other socket");
        assert!(vmm_matches(t.path(), 13, s));
        assert!(!vmm_matches(t.path(), 99, s), "absent");
    }
}
