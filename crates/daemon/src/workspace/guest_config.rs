//! `[guest]`: how the daemon reaches guests and what workspaces put there.
//! It lives in `banger-config` with the rest of the configuration.

pub use banger_config::guest::{GuestConfig, Readiness};
