//! Test-only copy of the `banger-fcsim` executable (see the crate docs):
//! parse Firecracker's command line, run the simulator, exit like Firecracker.

fn main() {
    let args = banger_fcsim::SimArgs::from_env();
    banger_fcsim::exit(banger_fcsim::run_blocking(args))
}
