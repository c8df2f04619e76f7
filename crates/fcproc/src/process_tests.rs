use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::*;

/// Builds a `/proc/PID/stat` line with the given command name and fields.
fn stat_line(comm: &str, state: char, utime: u64, stime: u64, starttime: u64) -> String {
    // Fields 4..=13, then utime (14), stime (15), 16..=21, starttime (22), then a tail.
    format!(
        "4242 ({comm}) {state} 1 4242 4242 0 -1 4194560 100 0 0 0 {utime} {stime} 0 0 20 0 3 0 \
         {starttime} 123456789 2000 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
    )
}

fn fake_proc(pid: u32, stat: &str, status: Option<&str>, statm: &str, cmdline: &[u8]) -> TempDir {
    let root = TempDir::new().expect("tempdir");
    let dir = root.path().join(pid.to_string());
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("stat"), stat).expect("stat");
    if let Some(status) = status {
        fs::write(dir.join("status"), status).expect("status");
    } else {
        fs::write(dir.join("status"), "Name:\tfoo\nState:\tZ (zombie)\n").expect("status");
    }
    fs::write(dir.join("statm"), statm).expect("statm");
    fs::write(dir.join("cmdline"), cmdline).expect("cmdline");
    root
}

const FC_CMDLINE: &[u8] =
    b"/usr/bin/firecracker\0--api-sock\0/run/banger/vm1/api.sock\0--id\0vm1\0";

/// A `/proc/PID` entry with the given parent, CPU ticks and RSS under `root`.
fn add_process(root: &Path, pid: u32, ppid: u32, ticks: u64, rss_kib: u64) {
    let dir = root.join(pid.to_string());
    fs::create_dir_all(&dir).expect("mkdir");
    let stat = stat_line("p", 'S', ticks, 0, 100).replacen(" S 1 ", &format!(" S {ppid} "), 1);
    fs::write(dir.join("stat"), stat).expect("stat");
    fs::write(dir.join("status"), format!("VmRSS:\t{rss_kib} kB\n")).expect("status");
    fs::write(dir.join("statm"), "0 0 0 0 0 0 0\n").expect("statm");
}

#[test]
fn tree_stats_sum_the_vmm_and_its_descendants() {
    let root = TempDir::new().expect("tempdir");
    let ticks = clock_ticks_per_sec();
    // The front (10), its QEMU (11) and QEMU's helper (12); 20 is unrelated.
    add_process(root.path(), 10, 1, ticks, 1024);
    add_process(root.path(), 11, 10, 3 * ticks, 4096);
    add_process(root.path(), 12, 11, ticks, 1024);
    add_process(root.path(), 20, 1, 7 * ticks, 8192);
    fs::create_dir_all(root.path().join("self")).expect("non-numeric entry");
    let procfs = ProcFs::new(root.path());
    let mut kids = procfs.descendants(10);
    kids.sort_unstable();
    assert_eq!(kids, [11, 12]);
    let total = procfs.tree_stats(10).expect("tree stats");
    assert_eq!(total.cpu_time_ms, 5000);
    assert_eq!(total.rss_bytes, 6 * 1024 * 1024);
    assert_eq!(total.start_time, procfs.stats(10).unwrap().start_time);
    // Without children the tree is the process itself.
    assert_eq!(procfs.tree_stats(20).unwrap(), procfs.stats(20).unwrap());
}

#[test]
fn one_snapshot_measures_every_tree_as_of_its_scan() {
    let root = TempDir::new().expect("tempdir");
    let ticks = clock_ticks_per_sec();
    // Two VMMs: a QEMU front (10) with its QEMU (11), and a Firecracker (20).
    add_process(root.path(), 10, 1, ticks, 1024);
    add_process(root.path(), 11, 10, 3 * ticks, 4096);
    add_process(root.path(), 20, 1, 7 * ticks, 8192);
    add_process(root.path(), 30, 1, ticks, 1024);
    let procfs = ProcFs::new(root.path());
    let tree = procfs.snapshot();
    assert_eq!(tree.len(), 4);
    for pid in [10, 20, 30] {
        assert_eq!(
            tree.tree_stats(pid).unwrap(),
            procfs.tree_stats(pid).unwrap(),
            "pid {pid}"
        );
    }
    assert_eq!(tree.descendants(10), [11]);
    // A process started after the scan is not part of it (one scan, not
    // one per tree); one gone since is left out; a missing VMM is an error.
    add_process(root.path(), 12, 10, 50 * ticks, 1024);
    fs::remove_dir_all(root.path().join("11")).unwrap();
    let front = tree.tree_stats(10).unwrap();
    assert_eq!(front.cpu_time_ms, 1000, "only the front, as of the scan");
    assert_eq!(front.rss_bytes, 1024 * 1024);
    assert_eq!(procfs.tree_stats(10).unwrap().cpu_time_ms, 51_000);
    assert!(matches!(
        tree.tree_stats(99),
        Err(ProcError::NotFound { pid: 99 })
    ));
}

#[test]
fn fake_running_process_is_alive() {
    let root = fake_proc(
        4242,
        &stat_line("fire cracker) (x", 'S', 150, 50, 1234),
        Some("Name:\tfirecracker\nVmRSS:\t   20480 kB\n"),
        "1000 7 3 1 0 5 0\n",
        FC_CMDLINE,
    );
    let procfs = ProcFs::new(root.path());
    assert!(procfs.is_alive(4242).expect("is_alive"));
    assert_eq!(
        procfs.cmdline(4242).expect("cmdline"),
        [
            "/usr/bin/firecracker",
            "--api-sock",
            "/run/banger/vm1/api.sock",
            "--id",
            "vm1"
        ]
        .map(OsString::from)
    );
}

#[test]
fn fake_stats_use_clock_ticks_and_vmrss() {
    let root = fake_proc(
        4242,
        &stat_line("firecracker", 'R', 150, 50, 1234),
        Some("Name:\tfirecracker\nVmRSS:\t   20480 kB\n"),
        "1000 7 3 1 0 5 0\n",
        FC_CMDLINE,
    );
    let stats = ProcFs::new(root.path()).stats(4242).expect("stats");
    let ticks = clock_ticks_per_sec();
    assert_eq!(stats.cpu_time_ms, 200 * 1000 / ticks);
    assert_eq!(stats.rss_bytes, 20480 * 1024);
    assert_eq!(
        stats.start_time,
        Duration::from_nanos(1234 * 1_000_000_000 / ticks)
    );
}

#[test]
fn fake_zombie_is_dead_and_falls_back_to_statm() {
    let root = fake_proc(
        4242,
        &stat_line("firecracker", 'Z', 1, 1, 1),
        None,
        "0 9 0 0 0 0 0\n",
        b"",
    );
    let procfs = ProcFs::new(root.path());
    assert!(!procfs.is_alive(4242).expect("is_alive"));
    assert!(procfs.cmdline(4242).expect("cmdline").is_empty());
    assert_eq!(
        procfs.stats(4242).expect("stats").rss_bytes,
        9 * page_size()
    );
}

#[test]
fn fake_missing_process_is_not_found() {
    let root = TempDir::new().expect("tempdir");
    let procfs = ProcFs::new(root.path());
    assert!(!procfs.is_alive(7).expect("is_alive"));
    assert!(matches!(
        procfs.stats(7),
        Err(ProcError::NotFound { pid: 7 })
    ));
}

#[test]
fn fake_garbage_stat_is_a_parse_error() {
    let root = fake_proc(9, "9 no-parens S 1", None, "", b"");
    let err = ProcFs::new(root.path()).is_alive(9).expect_err("parse");
    assert!(matches!(err, ProcError::Parse { .. }), "{err:?}");
}

#[test]
fn real_child_is_alive_with_stats() {
    let mut child = Command::new("sleep")
        .arg("30")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    let procfs = ProcFs::host();
    assert!(procfs.is_alive(pid).expect("is_alive"));
    // spawn() returns once the child has released our memory in execve, which can be a
    // moment before the kernel has set up its new argument area: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while procfs.cmdline(pid).expect("cmdline").is_empty() {
        assert!(Instant::now() < deadline, "cmdline of {pid} stays empty");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        procfs.cmdline(pid).expect("cmdline"),
        [OsString::from("sleep"), OsString::from("30")]
    );
    let stats = procfs.stats(pid).expect("stats");
    assert!(stats.rss_bytes > 0, "{stats:?}");
    assert!(stats.cpu_time_ms < 10_000, "{stats:?}");
    let own = procfs.stats(std::process::id()).expect("own stats");
    assert!(stats.start_time >= own.start_time, "{stats:?} vs {own:?}");

    child.kill().expect("kill");
    child.wait().expect("reap");
    assert!(!procfs.is_alive(pid).expect("is_alive after reap"));
}

#[test]
fn real_unreaped_child_is_a_dead_zombie() {
    let mut child = Command::new("true").spawn().expect("spawn true");
    let pid = child.id();
    let procfs = ProcFs::host();
    let deadline = Instant::now() + Duration::from_secs(10);
    // The child is never waited for here, so it stays a zombie once it exits.
    while procfs.is_alive(pid).expect("is_alive") {
        assert!(Instant::now() < deadline, "child {pid} never exited");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("zombie stat exists");
    assert_eq!(parse_stat(&stat).expect("parse").state, 'Z');
    child.wait().expect("reap");
}
