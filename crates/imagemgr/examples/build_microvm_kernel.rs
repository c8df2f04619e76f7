//! Build banger's microVM kernel into a cache directory without a daemon
//! (CI's kernel cache, `.ci/run`): the same steps and cache key as
//! `banger kernel build`.
//!
//! `cargo run --release -p banger-imagemgr --example build_microvm_kernel -- CACHE [--print-key]`
//! prints the cache entry's directory (`CACHE/<version>-<hash>`, holding
//! `bzImage`, `config` and `release`) on stdout, building it first when it
//! is missing; `--print-key` only prints the key.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use banger_imagemgr::{KernelBuildRequest, KernelSource, MICROVM_FRAGMENT};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cache) = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
    else {
        eprintln!("usage: build_microvm_kernel CACHE_DIR [--print-key]");
        return ExitCode::from(2);
    };
    let status = std::fs::read_to_string(banger_imagemgr::DPKG_STATUS).unwrap_or_default();
    let source = match KernelSource::find(Path::new(banger_imagemgr::DEBIAN_SOURCE_DIR), &status) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("build_microvm_kernel: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.iter().any(|a| a == "--print-key") {
        println!("{}", source.cache_key(MICROVM_FRAGMENT));
        return ExitCode::SUCCESS;
    }
    let req = KernelBuildRequest {
        source: &source,
        fragment: MICROVM_FRAGMENT,
        cache: &cache,
        jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
        no_cache: false,
        tools: Default::default(),
    };
    match banger_imagemgr::build_kernel(&req, &mut |what| eprintln!("kernel: {what}")) {
        Ok(k) => {
            println!("{}", k.dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("build_microvm_kernel: {e}");
            ExitCode::FAILURE
        }
    }
}
