//! Host diagnostics for `banger doctor` (`checks.rs`) and its network
//! checks (`net.rs`, `firewall.rs`).

mod checks;
mod firewall;
mod net;
mod seeds;

pub use checks::{
    Check, CheckStatus, DoctorEnv, Vmm, any_failed, classify_vmm, run, run_in_daemon, run_with,
};
