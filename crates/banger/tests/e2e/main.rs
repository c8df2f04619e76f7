//! banger's end-to-end tests, in one test binary (one link, one harness):
//! one module per area, each test named `<module>::<test>`, so
//! `cargo test -p banger --test e2e daemon::` runs the daemon module's
//! tests. The support modules (`util`, `guestnet`, `qemuguest`) are shared
//! with the benchmarks of `crates/banger/benches` by `#[path]`.
//!
//! All modules share one process: a test that changes per-process or
//! per-thread state (the network namespace of its thread, say) puts it back
//! when it ends (see `guestnet::GuestNet::enter_host`), and names it creates
//! on the host carry the module's own prefix as well as the process id.

mod guestnet;
mod qemuguest;
mod util;

mod bounds;
mod crash_matrix;
mod daemon;
mod exhaustion;
mod forward;
mod guest;
mod guest_e2e;
mod image_build;
mod images;
mod kernels;
mod network;
mod network_seam;
mod privops_seam;
mod qemu_daemon;
mod qemu_front;
mod remote;
mod seed;
mod system_install;
mod system_path;
mod verbs;
mod work_disk;
