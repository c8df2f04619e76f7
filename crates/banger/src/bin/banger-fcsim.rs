//! `banger-fcsim`: a strict Firecracker simulator, started exactly like
//! `firecracker` (`--api-sock PATH --id ID ...`). The logic lives in the
//! `banger-fcsim` library; this binary parses the command line, runs the
//! simulator and exits with the status Firecracker would have.

fn main() {
    let args = banger_fcsim::SimArgs::from_env();
    banger_fcsim::exit(banger_fcsim::run_blocking(args))
}
