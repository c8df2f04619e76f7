//! `/proc` reads that identify a VMM process by what its owner cannot
//! forge: real and effective uid, start time (clock ticks since boot,
//! field 22 of `/proc/<pid>/stat`) and executable (the `(st_dev, st_ino)`
//! of `/proc/<pid>/exe`). The command line is only used to *find* a VMM
//! by its `--id` ([`scan_vmms`]), never as authority to act on it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// `(st_dev, st_ino)` of a file, following symlinks.
pub type FileId = (u64, u64);

/// What `/proc/<pid>` says about a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcIdentity {
    /// Real uid (`Uid:` line of `status`, first field).
    pub uid: u32,
    /// Effective uid (second field).
    pub euid: u32,
    /// Start time in clock ticks since boot (`stat` field 22).
    pub start_time: u64,
    /// State `Z`/`X`: exited, only waiting to be reaped.
    pub zombie: bool,
    /// `(st_dev, st_ino)` of its executable, when readable.
    pub exe: Option<FileId>,
    /// The executable's path as `/proc/<pid>/exe` names it (with
    /// ` (deleted)` appended once the file was removed or replaced).
    pub exe_path: Option<PathBuf>,
}

impl ProcIdentity {
    /// Whether the process runs `binary`: the same `(st_dev, st_ino)`, or
    /// the file that was at `binary`'s (canonical) path before it was
    /// replaced (an upgrade of the VMM binary; the kernel names it
    /// `<path> (deleted)`). `binary` is the helper's own configuration,
    /// a root-owned path the owner cannot create files at.
    pub fn runs(&self, binary: &Path) -> bool {
        if let (Some(exe), Some(id)) = (self.exe, file_id(binary))
            && exe == id
        {
            return true;
        }
        let Some(path) = &self.exe_path else {
            return false;
        };
        let canonical = std::fs::canonicalize(binary).unwrap_or_else(|_| binary.to_path_buf());
        [binary, canonical.as_path()].iter().any(|b| {
            let mut deleted = b.as_os_str().to_owned();
            deleted.push(" (deleted)");
            path.as_os_str() == deleted
        })
    }
}

/// `(st_dev, st_ino)` of `path` (symlinks followed), if it exists.
pub fn file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Parse the state and start time out of a `/proc/<pid>/stat` line. The
/// command name (field 2) is parenthesised and may contain anything, so
/// fields are counted after its last `)`.
pub fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); field 22 is 19 further.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Start time (clock ticks since boot) of `pid`, if it exists.
pub fn start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&stat).map(|(_, t)| t)
}

/// Read the identity of `pid` from `proc_root`; `None` when it is gone
/// (or `/proc` does not describe it completely).
pub fn read_identity(proc_root: &Path, pid: u32) -> Option<ProcIdentity> {
    let dir = proc_root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let (state, start_time) = parse_stat(&stat)?;
    let status = std::fs::read_to_string(dir.join("status")).ok()?;
    let mut uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .map(|f| f.parse::<u32>());
    let uid = uids.next()?.ok()?;
    let euid = uids.next()?.ok()?;
    Some(ProcIdentity {
        uid,
        euid,
        start_time,
        zombie: matches!(state, 'Z' | 'X' | 'x'),
        exe: file_id(&dir.join("exe")),
        exe_path: std::fs::read_link(dir.join("exe")).ok(),
    })
}

/// The value of `flag` (`--flag value` or `--flag=value`) in a NUL-separated
/// command line.
pub fn cmdline_flag<'a>(cmdline: &'a [u8], flag: &str) -> Option<&'a [u8]> {
    let flag = flag.as_bytes();
    let mut args = cmdline.split(|b| *b == 0);
    while let Some(arg) = args.next() {
        if arg == flag {
            return args.next();
        }
        if let Some(v) = arg.strip_prefix(flag).and_then(|v| v.strip_prefix(b"=")) {
            return Some(v);
        }
    }
    None
}

/// A live process that looks like one of banger's VMMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundVmm {
    /// Its pid.
    pub pid: u32,
    /// Its start time (clock ticks since boot).
    pub start_time: u64,
    /// Its `--id`.
    pub id: String,
    /// Its `--api-sock`, when given.
    pub api_sock: Option<PathBuf>,
}

/// One pass over `proc_root`: every live (non-zombie) process whose real
/// uid is `uid`, which runs `binary` ([`ProcIdentity::runs`]) and whose
/// command line carries
/// an `--id`. This is how reconcile finds VMMs that no record names (a
/// daemon killed between spawn and its handles write); acting on one still
/// goes through `SignalVmm`, which checks uid, start time and executable
/// itself.
pub fn scan_vmms(proc_root: &Path, uid: u32, binary: &Path) -> Vec<FoundVmm> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Cheap filters first: the owner of the directory is the real uid.
        if e.metadata().map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        let Some(ident) = read_identity(proc_root, pid) else {
            continue;
        };
        if ident.uid != uid || ident.zombie || !ident.runs(binary) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let Some(id) = cmdline_flag(&cmdline, "--id") else {
            continue;
        };
        out.push(FoundVmm {
            pid,
            start_time: ident.start_time,
            id: String::from_utf8_lossy(id).into_owned(),
            api_sock: cmdline_flag(&cmdline, "--api-sock")
                .map(|p| PathBuf::from(OsStr::from_bytes(p))),
        });
    }
    out
}

/// Whether `pid` is alive (not a zombie) and started at `start_time`: the
/// recorded VMM is still the process behind that pid.
pub fn is_same_process(proc_root: &Path, pid: u32, start_time: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")) else {
        return false;
    };
    matches!(parse_stat(&stat), Some((s, t)) if t == start_time && !matches!(s, 'Z' | 'X' | 'x'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_line(pid: u32, comm: &str, state: char, start: u64) -> String {
        // Fields 4..=21 are filler; 22 is the start time.
        let filler: Vec<String> = (4..=21).map(|i| i.to_string()).collect();
        format!("{pid} ({comm}) {state} {} {start} 23 24", filler.join(" "))
    }

    #[test]
    fn parses_stat_with_hostile_names() {
        assert_eq!(
            parse_stat(&stat_line(7, "fire) R 1 2 (cracker", 'S', 4242)),
            Some(('S', 4242))
        );
        assert_eq!(parse_stat("7 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_stat(&own).is_some(), "{own}");
    }

    #[test]
    fn identity_of_this_process() {
        let me = std::process::id();
        let id = read_identity(Path::new("/proc"), me).unwrap();
        assert_eq!(id.uid, nix::unistd::getuid().as_raw());
        assert!(!id.zombie);
        assert_eq!(id.exe, file_id(&std::env::current_exe().unwrap()));
        assert!(is_same_process(Path::new("/proc"), me, id.start_time));
        assert!(!is_same_process(Path::new("/proc"), me, id.start_time + 1));
        assert_eq!(start_time(Path::new("/proc"), me), Some(id.start_time));
    }

    #[test]
    fn flags_in_command_lines() {
        let c = b"fc\0--api-sock\0/run/a.sock\0--id=banger-x\0";
        assert_eq!(cmdline_flag(c, "--api-sock"), Some(&b"/run/a.sock"[..]));
        assert_eq!(cmdline_flag(c, "--id"), Some(&b"banger-x"[..]));
        assert_eq!(cmdline_flag(c, "--idx"), None);
        assert_eq!(cmdline_flag(b"fc\0--id", "--id"), None);
    }

    #[test]
    fn scan_finds_only_matching_executables() {
        let sleep = Path::new("/bin/true");
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30; true", "sh", "--id", "banger-fake"])
            .spawn()
            .unwrap();
        let uid = nix::unistd::getuid().as_raw();
        // `sh` carries the --id but is not the executable we ask for.
        let found = scan_vmms(Path::new("/proc"), uid, sleep);
        assert!(!found.iter().any(|f| f.pid == child.id()), "{found:?}");
        let sh = read_identity(Path::new("/proc"), child.id())
            .unwrap()
            .exe_path
            .unwrap();
        let found = scan_vmms(Path::new("/proc"), uid, &sh);
        let f = found.iter().find(|f| f.pid == child.id()).expect("found");
        assert_eq!(f.id, "banger-fake");
        assert_eq!(f.api_sock, None);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn a_replaced_binary_still_counts_by_its_old_path() {
        let t = tempfile::tempdir().unwrap();
        let fc = t.path().join("fc");
        std::fs::copy("/bin/sleep", &fc).unwrap();
        let mut child = std::process::Command::new(&fc).arg("30").spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let ident = || read_identity(Path::new("/proc"), child.id()).unwrap();
        assert!(ident().runs(&fc));
        assert!(!ident().runs(Path::new("/bin/sleep")), "another file");
        // An upgrade: the file is replaced by another one at the same path.
        std::fs::remove_file(&fc).unwrap();
        std::fs::copy("/bin/true", &fc).unwrap();
        assert!(ident().runs(&fc), "{:?}", ident().exe_path);
        assert!(!ident().runs(&t.path().join("other")));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
