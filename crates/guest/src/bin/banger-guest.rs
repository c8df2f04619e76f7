//! The banger guest agent (runs inside the guest as root). See the crate
//! docs; the work is in `banger_guest::agent`.

use banger_guest::{VSOCK_PORT, agent};

fn main() {
    let code = match std::env::args().nth(1).as_deref() {
        Some("init") => agent::init(),
        Some("serve") => agent::serve(VSOCK_PORT),
        Some("version" | "--version") => {
            println!("banger-guest {}", banger_guest::proto::AGENT_VERSION);
            0
        }
        other => {
            agent::log(format!(
                "unknown command {:?}; usage: banger-guest init | serve | version",
                other.unwrap_or("")
            ));
            2
        }
    };
    std::process::exit(code);
}
