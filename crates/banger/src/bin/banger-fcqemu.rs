//! `banger-fcqemu`: banger's QEMU-backed Firecracker front, started exactly
//! like `firecracker` (`--api-sock PATH --id ID ...`). It serves the
//! simulator's strict Firecracker API and, on `InstanceStart`, boots the
//! configured guest in `qemu-system-x86_64 -M microvm` (TCG unless
//! `BANGER_QEMU_ACCEL=kvm`). The logic lives in the `banger-fcsim` library.

fn main() {
    let (args, qemu) = banger_fcsim::QemuFrontArgs::from_env();
    banger_fcsim::exit(banger_fcsim::run_blocking_with(
        args,
        banger_fcsim::Backend::Qemu(qemu),
    ))
}
