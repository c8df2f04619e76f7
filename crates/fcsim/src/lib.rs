//! A strict Firecracker simulator for banger's tests.
//!
//! Real Firecracker cannot boot guests on the development machines, so banger
//! is tested against this simulator. It is started with Firecracker's own
//! command line (`banger-fcsim --api-sock PATH --id ID ...`) and reproduces
//! what Firecracker does that a client can observe, as recorded from a real
//! Firecracker (`shared/firecracker/observed.jsonl`, replayed by
//! `tests/replay.rs`):
//! - startup: `--id` rules (a bad id panics: SIGABRT), "socket in use" and
//!   "missing directory" failures with Firecracker's output, the socket file
//!   left behind at exit, default signal handling;
//! - the HTTP API: status lines, headers, routing, every recorded error text,
//!   pre-/post-boot rules, files opened at the `PUT` that names them;
//! - the lifecycle: InstanceStart checks the kernel image and drives, then the
//!   process stays up until SendCtrlAltDel, a crash or a signal, printing
//!   fake boot messages on the serial console (stdout) and log lines.
//!
//! It cannot create taps: network interfaces are accepted and recorded
//! without touching the host. Misbehaviour for failure-path tests is chosen
//! with `--sim-*` flags or `FCSIM_*` variables (see [`SimArgs`]).
//!
//! Layout: [`args`] (command line) → [`run`] (startup, serving) → `http`
//! (HTTP quirks) → `route` (request parsing) → `vmm`/`lifecycle` (state and
//! rules), with one module per device. The executable is
//! `crates/banger/src/bin/banger-fcsim.rs`; `src/bin/fcsim-selftest.rs` is an
//! identical copy used only by this crate's tests.
//!
//! The guest behind `InstanceStart` is a [`Backend`]: the simulated guest
//! above, or a real guest in QEMU ([`qemu`], the `banger-fcqemu` binary,
//! `crates/banger/src/bin/banger-fcqemu.rs`), which shares everything else
//! (HTTP, validation, state machine, faults, logger, metrics, serial target);
//! its snapshots are QEMU migration streams (`qemu::migrate`).
#![warn(missing_docs)]

pub mod args;
mod balloon;
mod block;
mod boot;
mod clock;
mod error;
mod fault;
mod guest;
mod http;
mod kernel;
mod lifecycle;
mod log;
mod memory_hotplug;
mod metrics;
mod mmds;
mod net;
mod pmem;
pub mod qemu;
mod route;
mod run;
mod snapshot;
mod vm_config;
mod vmm;
mod vsock;

pub use args::{Misbehaviour, QemuFrontArgs, SimArgs};
pub use error::SimError;
pub use kernel::test_kernel_image;
pub use run::{run, run_blocking, run_blocking_with, run_with, version_line};
pub use vmm::Backend;

/// The Firecracker version the simulator reports (`GET /version`, `GET /`).
pub const FIRECRACKER_VERSION: &str = "1.17.0-dev";

/// The snapshot format version `--snapshot-version` prints.
pub const SNAPSHOT_VERSION: &str = "11.0.0";

/// Ends the process the way Firecracker would for `result`: exit with the
/// code, print `Error: ...` on stderr and exit 1, or, for an invalid `--id`,
/// print Firecracker's panic message on stdout and abort (SIGABRT, status 134).
pub fn exit(result: Result<i32, SimError>) -> ! {
    match result {
        Ok(code) => std::process::exit(code),
        Err(err) if err.is_panic() => {
            let message = format!(
                "{} [anonymous-instance:main] Firecracker panicked at src/firecracker/src/main.rs:309:48:\n{err}\n",
                clock::timestamp()
            );
            let _ = log::write_stdout(message.as_bytes());
            std::process::abort()
        }
        Err(err) => {
            eprintln!("Error: {}", err.firecracker_debug());
            std::process::exit(err.exit_code())
        }
    }
}
