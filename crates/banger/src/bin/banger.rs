//! `banger`: the command-line client. All logic lives in `banger-cli`.

fn main() {
    std::process::exit(banger_cli::main());
}
