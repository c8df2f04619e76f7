//! `bangerd-root`: the root helper. All logic lives in `banger-roothelper`.

fn main() {
    std::process::exit(banger_roothelper::main());
}
