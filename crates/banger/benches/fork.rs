//! `vm fork` benchmark under the QEMU front (`make bench-fork`, or
//! `cargo bench -p banger --bench fork`): a release `bangerd` with
//! `banger-fcqemu` (TCG) and the busybox initramfs guest of the e2e tests,
//! whose ticker process prints `MARK tick N` every second.
//!
//! "Ready" is the guest running user code: the first ticker line on the
//! VM's console (readiness is `none` in this setup, so the CLI's return is
//! not the measure). Reports p50/p95 of `vm create` → ready (cold boot,
//! `COLD` runs) and `vm fork SRC NEW` → ready (`FORKS` forks of one running
//! source), their ratio, `vm suspend` and `vm start` (suspended) → ready,
//! and the suspend snapshot's memory file size. Needs the kernel cache
//! (`BANGER_TEST_KERNEL_DIR` or /var/cache/banger-ci/kernel), QEMU, busybox
//! and mkfs.ext4; prints SKIP and exits 0 without them.

#[path = "../tests/e2e/qemuguest/mod.rs"]
mod qemuguest;
#[path = "../tests/e2e/util/mod.rs"]
mod util;

use std::path::PathBuf;
use std::time::{Duration, Instant};

const COLD: usize = 3;
const FORKS: usize = 5;
const SUSPENDS: usize = 3;
const WITHIN: Duration = Duration::from_secs(180);

fn pct(samples: &[Duration], p: usize) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[((s.len() - 1) * p).div_ceil(100)]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() {
    let Some((d, _fx)) = qemuguest::front_daemon("bench-fork") else {
        return;
    };
    let console = |name: &str| -> PathBuf {
        let detail: banger_api::VmDetail = d.cli_json(&["vm", "show", name]);
        PathBuf::from(detail.paths.console_log)
    };
    let ready = |name: &str, above: u32| {
        qemuguest::wait_tick(&console(name), above, WITHIN).unwrap_or_else(|e| panic!("{e}"))
    };

    let mut cold = Vec::new();
    for i in 0..COLD {
        let name = format!("cold{i}");
        let t = Instant::now();
        d.cli_ok(&["vm", "create", &name, "--image", "busybox"]);
        ready(&name, 0);
        cold.push(t.elapsed());
        if i > 0 {
            d.cli_ok(&["vm", "delete", "--force", &name]);
        }
    }
    // cold0 stays: the fork source.
    let mut fork = Vec::new();
    for i in 0..FORKS {
        let name = format!("fork{i}");
        let t = Instant::now();
        d.cli_ok(&["vm", "fork", "cold0", &name]);
        ready(&name, 0);
        fork.push(t.elapsed());
    }
    let (mut suspend, mut resume, mut mem) = (Vec::new(), Vec::new(), 0);
    for _ in 0..SUSPENDS {
        let t = Instant::now();
        d.cli_ok(&["vm", "suspend", "fork0"]);
        suspend.push(t.elapsed());
        let detail: banger_api::VmDetail = d.cli_json(&["vm", "show", "fork0"]);
        mem = std::fs::metadata(PathBuf::from(&detail.paths.dir).join("suspend/vm.mem"))
            .map(|m| m.len())
            .unwrap_or(0);
        let last = qemuguest::ticks(&console("fork0"))
            .last()
            .copied()
            .unwrap_or(0);
        let t = Instant::now();
        d.cli_ok(&["vm", "start", "fork0"]);
        ready("fork0", last);
        resume.push(t.elapsed());
    }
    println!(
        "bench-fork (QEMU front, TCG, 1 vCPU, 256 MiB busybox guest; ready = first ticker line on the console)"
    );
    println!(
        "  vm create -> ready (cold, {COLD} runs): p50 {}  p95 {}",
        secs(pct(&cold, 50)),
        secs(pct(&cold, 95))
    );
    println!(
        "  vm fork   -> ready ({FORKS} forks):      p50 {}  p95 {}",
        secs(pct(&fork, 50)),
        secs(pct(&fork, 95))
    );
    println!(
        "  cold / fork (p50): {:.1}x",
        pct(&cold, 50).as_secs_f64() / pct(&fork, 50).as_secs_f64()
    );
    println!(
        "  vm suspend ({SUSPENDS} runs): p50 {}  p95 {}; vm start (suspended) -> ready: p50 {}  p95 {}; suspend+start p50 {}",
        secs(pct(&suspend, 50)),
        secs(pct(&suspend, 95)),
        secs(pct(&resume, 50)),
        secs(pct(&resume, 95)),
        secs(pct(&suspend, 50) + pct(&resume, 50))
    );
    println!(
        "  suspend memory file: {} MiB (guest memory 256 MiB)",
        mem >> 20
    );
    let mut names = vec!["cold0".to_string()];
    names.extend((0..FORKS).map(|i| format!("fork{i}")));
    for name in names {
        d.cli_ok(&["vm", "delete", "--force", &name]);
    }
}
