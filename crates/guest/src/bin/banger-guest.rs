//! The banger guest agent (runs inside the guest). See the crate docs.

fn main() {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    eprintln!("banger-guest: `{cmd}` is not implemented yet");
    std::process::exit(2);
}
