//! Exhaustion: a real `bangerd` started with a small open-files limit
//! raises its soft limit to the hard one, and when client connections use
//! up every descriptor its accept loop backs off (no spinning core, a
//! handful of log lines) and serves again once they close. A slow idle
//! stop does not hold the stats loop up.

use crate::util;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use banger_api::{DaemonStatus, Request, VmState};
use banger_cli::client::Client;
use util::{Fixtures, TestDaemon, tail};

/// The soft and hard `RLIMIT_NOFILE` bangerd is started with.
const SOFT: u64 = 24;
const HARD: u64 = 96;

/// utime + stime of `pid`, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / banger_fcproc::clock_ticks_per_sec() as f64
}

fn open_files_limit(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (v[0], v[1])
}

#[test]
fn out_of_descriptors_bangerd_backs_off_and_recovers() {
    let mut d = TestDaemon::start(&[]);
    d.kill_hard();
    d.launcher = vec!["prlimit".into(), format!("--nofile={SOFT}:{HARD}")];
    d.spawn();
    let pid = d.child.as_ref().unwrap().id();
    assert_eq!(
        open_files_limit(pid),
        (HARD, HARD),
        "bangerd raises its soft limit to the hard one"
    );
    assert!(
        d.log().contains("open-files limit"),
        "the limit is logged:\n{}",
        tail(&d.log(), 10)
    );

    // Hold more connections than the daemon has descriptors: those past
    // its limit wait in the listen queue while accept fails. The log is
    // read from here: the first failure is logged at once, possibly while
    // the test is still connecting, and the next not within 5 s.
    let log_before = d.log().len();
    let mut held = Vec::new();
    for _ in 0..(HARD as usize + 40) {
        match UnixStream::connect(d.socket()) {
            Ok(s) => held.push(s),
            Err(e) => panic!("connect {}: {e}", held.len()),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, t0) = (cpu_secs(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu_secs(pid) - cpu0) / t0.elapsed().as_secs_f64();
    let log = d.log();
    let new_log = &log[log_before..];
    let errors = new_log
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    eprintln!(
        "bangerd out of descriptors: {:.1} % of one core, {errors} accept-error lines",
        share * 100.0
    );
    assert!(
        share < 0.30,
        "bangerd spins while out of descriptors: {:.0} % of a core",
        share * 100.0
    );
    assert!(
        (1..=5).contains(&errors),
        "accept errors are logged, rate limited ({errors} lines):\n{}",
        tail(new_log, 20)
    );
    assert!(
        new_log.contains("Too many open files") || new_log.contains("os error 24"),
        "the cause is logged:\n{}",
        tail(new_log, 5)
    );

    // Close them all: the daemon answers RPCs again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status: DaemonStatus = loop {
        match Client::connect(&d.socket()).and_then(|mut c| c.call(Request::Status)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                panic!(
                    "bangerd does not answer after the connections closed: {e}\n{}",
                    tail(&d.log(), 20)
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert_eq!(status.pid, pid);
}

#[test]
fn sampling_goes_on_while_an_idle_stop_waits() {
    let Some(fx) = Fixtures::new("sampling_goes_on_while_an_idle_stop_waits") else {
        return;
    };
    // The simulator ignores Ctrl-Alt-Del, so the idle stop waits the whole
    // stop timeout (2 s) before SIGKILL; samples come every second.
    let d = TestDaemon::start_with(
        &[("FCSIM_IGNORE_CTRL_ALT_DEL", "1")],
        "idle_stop_secs = 1\nidle_cpu_ms = 50",
    );
    d.register_image(&fx, "base");
    d.create("slow", "base").unwrap();
    d.wait_state("slow", VmState::Stopped, 30);
    let log = d.log();
    let lines: Vec<&str> = log.lines().collect();
    let at = |what: &str| {
        lines
            .iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in the log:\n{}", tail(&log, 30)))
    };
    let (from, to) = (at("stopping idle VM"), at("idle VM stopped"));
    let ticks = lines[from..to]
        .iter()
        .filter(|l| l.contains("stats tick"))
        .count();
    assert!(
        ticks >= 1,
        "no stats tick while the idle stop waited:\n{}",
        lines[from..=to].join("\n")
    );
}
