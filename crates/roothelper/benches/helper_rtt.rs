//! What the system path costs per privileged operation: the same
//! `signal_vmm` (to a live process that is not a VMM of ours, so nothing is
//! signalled but a pidfd is opened and `/proc` is read; refused) performed in-process by `LocalPrivOps`
//! and through `bangerd-root`'s server and `RootHelperClient` (one
//! connection per request). Prints p50/p95 of each and the ratio.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use banger_privops::{LocalPrivOps, Policy, PrivilegedOps, RootHelperClient, VmmSignal};
use banger_roothelper::server::{ServeOptions, bind, serve};

const N: usize = 2000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn measure(ops: &dyn PrivilegedOps, _api_sock: &std::path::Path) -> (Duration, Duration) {
    let pid = std::process::id();
    let start = banger_privops::start_time(std::path::Path::new("/proc"), pid).expect("start time");
    let mut times = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let r = ops.signal_vmm(pid, start, VmmSignal::Term);
        times.push(t.elapsed());
        assert!(r.is_err(), "the bench process is not a VMM: refused");
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.95))
}

fn main() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("state")).unwrap();
    std::fs::create_dir_all(root.join("run")).unwrap();
    let me = nix::unistd::geteuid().as_raw();
    let policy = Policy {
        device_prefix: "bg".into(),
        state_dir: root.join("state"),
        runtime_dir: root.join("run"),
        subnet: (std::net::Ipv4Addr::new(172, 30, 0, 0), 24),
        owner_uid: me,
        vmm_binary: PathBuf::from("/bin/true"),
    };
    let socket = root.join("root.sock");
    let bound = bind(&socket, me).unwrap();
    let served = LocalPrivOps::new(policy.clone());
    std::thread::spawn(move || {
        serve(
            bound,
            served,
            ServeOptions {
                request_timeout: Duration::from_secs(5),
                ..ServeOptions::new(me)
            },
        )
    });
    let api_sock = root.join("run/api.sock");
    let local = LocalPrivOps::new(policy);
    let client = RootHelperClient::new(&socket).expect_peer_uid(me);
    // Warm up both paths.
    let _ = measure(&local, &api_sock);
    let _ = measure(&client, &api_sock);
    let (l50, l95) = measure(&local, &api_sock);
    let (c50, c95) = measure(&client, &api_sock);
    println!("signal_vmm, {N} calls each (validate + /proc identity check, no signal sent)");
    println!("{:<28} {:>10} {:>10}", "adapter", "p50", "p95");
    println!(
        "{:<28} {:>10.1?} {:>10.1?}",
        "LocalPrivOps (dev path)", l50, l95
    );
    println!(
        "{:<28} {:>10.1?} {:>10.1?}",
        "RootHelperClient (system)", c50, c95
    );
    println!(
        "ratio helper/in-process: p50 {:.1}x, p95 {:.1}x",
        c50.as_secs_f64() / l50.as_secs_f64(),
        c95.as_secs_f64() / l95.as_secs_f64()
    );
}
