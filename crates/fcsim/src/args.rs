//! Command line of the simulator: Firecracker's flags plus `--sim-*` misbehaviour.
//!
//! The simulator is started exactly like `firecracker`, so a daemon can use it
//! in place of the real binary. Misbehaviour is chosen with `--sim-*` flags or,
//! for a daemon that only passes Firecracker's argv, with `FCSIM_*` variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::BoolishValueParser;

/// Firecracker's exit code for a bad command line.
pub const ARGS_EXIT_CODE: i32 = 153;

/// Arguments of `banger-fcsim`, a drop-in for `firecracker`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "banger-fcsim",
    about = "Strict Firecracker simulator for banger's tests",
    disable_version_flag = true
)]
pub struct SimArgs {
    /// Path of the API Unix socket (must not exist).
    #[arg(long = "api-sock", default_value = "/run/firecracker.socket")]
    pub api_sock: PathBuf,
    /// MicroVM id: 1..=64 alphanumerics and `-`.
    #[arg(long, default_value = "anonymous-instance")]
    pub id: String,
    /// Configure and boot from a JSON file (not supported by the simulator).
    #[arg(long = "config-file")]
    pub config_file: Option<PathBuf>,
    /// Run without the API (not supported by the simulator).
    #[arg(long = "no-api")]
    pub no_api: bool,
    /// Log file, as `PUT /logger` `log_path`.
    #[arg(long = "log-path")]
    pub log_path: Option<PathBuf>,
    /// Log level: Error, Warning, Info, Debug, Trace or Off.
    #[arg(long)]
    pub level: Option<String>,
    /// Only log this module.
    #[arg(long)]
    pub module: Option<String>,
    /// Show the level in log lines.
    #[arg(long = "show-level")]
    pub show_level: bool,
    /// Show the origin in log lines.
    #[arg(long = "show-log-origin")]
    pub show_log_origin: bool,
    /// Metrics file, as `PUT /metrics` `metrics_path`.
    #[arg(long = "metrics-path")]
    pub metrics_path: Option<PathBuf>,
    /// Accepted and ignored: the simulator installs no seccomp filters.
    #[arg(long = "no-seccomp")]
    pub no_seccomp: bool,
    /// Accepted and ignored.
    #[arg(long = "seccomp-filter")]
    pub seccomp_filter: Option<PathBuf>,
    /// Enable PCI, which allows device hotplug after boot.
    #[arg(long = "enable-pci")]
    pub enable_pci: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long = "http-api-max-payload-size", default_value_t = 51200)]
    pub http_api_max_payload_size: usize,
    /// Largest MMDS data store, in bytes (defaults to the payload limit).
    #[arg(long = "mmds-size-limit")]
    pub mmds_size_limit: Option<usize>,
    /// Accepted and ignored (jailer timing arguments).
    #[arg(long = "start-time-us")]
    pub start_time_us: Option<u64>,
    /// Accepted and ignored.
    #[arg(long = "start-time-cpu-us")]
    pub start_time_cpu_us: Option<u64>,
    /// Accepted and ignored.
    #[arg(long = "parent-cpu-time-us")]
    pub parent_cpu_time_us: Option<u64>,
    /// Accepted and ignored.
    #[arg(long = "boot-timer")]
    pub boot_timer: bool,
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Print the snapshot format version and exit.
    #[arg(long = "snapshot-version")]
    pub snapshot_version: bool,

    /// Wait this long before creating the API socket.
    #[arg(long = "sim-socket-delay-ms", env = "FCSIM_SOCKET_DELAY_MS")]
    pub sim_socket_delay_ms: Option<u64>,
    /// Exit with status 1 this long after a successful InstanceStart.
    #[arg(long = "sim-crash-after-start-ms", env = "FCSIM_CRASH_AFTER_START_MS")]
    pub sim_crash_after_start_ms: Option<u64>,
    /// Refuse InstanceStart with a 400 "Start microvm error".
    #[arg(long = "sim-refuse-start", env = "FCSIM_REFUSE_START", value_parser = BoolishValueParser::new())]
    pub sim_refuse_start: bool,
    /// Answer SendCtrlAltDel with 204 but keep running (a guest without i8042).
    #[arg(long = "sim-ignore-ctrl-alt-del", env = "FCSIM_IGNORE_CTRL_ALT_DEL", value_parser = BoolishValueParser::new())]
    pub sim_ignore_ctrl_alt_del: bool,
    /// Wait this long before acting on InstanceStart (widens the window
    /// between a VMM's spawn and its start, for crash tests).
    #[arg(long = "sim-start-delay-ms", env = "FCSIM_START_DELAY_MS")]
    pub sim_start_delay_ms: Option<u64>,
    /// Delay between SendCtrlAltDel and the clean exit.
    #[arg(
        long = "sim-shutdown-delay-ms",
        env = "FCSIM_SHUTDOWN_DELAY_MS",
        default_value_t = 50
    )]
    pub sim_shutdown_delay_ms: u64,
    /// Answer on the vsock socket as banger's guest agent would (`CONNECT`,
    /// then `PING`, `PORTS`, `IDENTITY`; each `IDENTITY` is printed on the
    /// console), for tests of what the daemon sends a guest.
    #[arg(long = "sim-guest-agent", env = "FCSIM_GUEST_AGENT", value_parser = BoolishValueParser::new())]
    pub sim_guest_agent: bool,
}

impl SimArgs {
    /// Parses the process arguments (and `FCSIM_*` variables). On a bad command
    /// line prints the error and exits with Firecracker's status 153; `--help`
    /// exits 0.
    pub fn from_env() -> Self {
        match Self::try_parse() {
            Ok(args) => args,
            Err(err) if !err.use_stderr() => {
                let _ = err.print();
                std::process::exit(0);
            }
            Err(err) => {
                eprintln!("Arguments parsing error: {err}");
                std::process::exit(ARGS_EXIT_CODE);
            }
        }
    }

    /// The misbehaviour selected by the `--sim-*` flags / `FCSIM_*` variables.
    pub fn misbehaviour(&self) -> Misbehaviour {
        Misbehaviour {
            socket_delay: self.sim_socket_delay_ms.map(Duration::from_millis),
            crash_after_start: self.sim_crash_after_start_ms.map(Duration::from_millis),
            start_delay: self.sim_start_delay_ms.map(Duration::from_millis),
            refuse_start: self.sim_refuse_start,
            ignore_ctrl_alt_del: self.sim_ignore_ctrl_alt_del,
            shutdown_delay: Duration::from_millis(self.sim_shutdown_delay_ms),
            guest_agent: self.sim_guest_agent,
        }
    }
}

/// Arguments of `banger-fcqemu`, the QEMU-backed Firecracker front:
/// Firecracker's command line plus the QEMU settings.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "banger-fcqemu",
    about = "Firecracker's API in front of a QEMU microvm guest (banger's QEMU front)",
    disable_version_flag = true
)]
pub struct QemuFrontArgs {
    /// Firecracker's own arguments (the `--sim-*` flags apply only where they
    /// make sense for a real guest: the socket delay and refusing the start).
    #[command(flatten)]
    pub fc: SimArgs,
    /// Accelerator: `tcg` (emulation, works everywhere, slow) or `kvm`.
    #[arg(long = "qemu-accel", env = "BANGER_QEMU_ACCEL", default_value = "tcg")]
    pub qemu_accel: String,
    /// The QEMU program (a name on `$PATH` or a path).
    #[arg(
        long = "qemu-bin",
        env = "BANGER_QEMU_BIN",
        default_value = crate::qemu::DEFAULT_QEMU_BIN
    )]
    pub qemu_bin: std::path::PathBuf,
}

impl QemuFrontArgs {
    /// Parses the process arguments like [`SimArgs::from_env`]; a bad
    /// `--qemu-accel` / `BANGER_QEMU_ACCEL` is a command-line error (status 153).
    pub fn from_env() -> (SimArgs, crate::qemu::QemuOptions) {
        let args = match Self::try_parse() {
            Ok(args) => args,
            Err(err) if !err.use_stderr() => {
                let _ = err.print();
                std::process::exit(0);
            }
            Err(err) => {
                eprintln!("Arguments parsing error: {err}");
                std::process::exit(ARGS_EXIT_CODE);
            }
        };
        match args.qemu_options() {
            Ok(options) => (args.fc, options),
            Err(message) => {
                eprintln!("Arguments parsing error: {message}");
                std::process::exit(ARGS_EXIT_CODE);
            }
        }
    }

    /// The QEMU settings, checked.
    pub fn qemu_options(&self) -> Result<crate::qemu::QemuOptions, String> {
        Ok(crate::qemu::QemuOptions {
            binary: self.qemu_bin.clone(),
            accel: self
                .qemu_accel
                .parse()
                .map_err(|e| format!("--qemu-accel/BANGER_QEMU_ACCEL: {e}"))?,
        })
    }
}

/// How the simulator deviates from a healthy Firecracker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Misbehaviour {
    /// Delay before the API socket is created.
    pub socket_delay: Option<Duration>,
    /// Crash (exit 1) this long after InstanceStart.
    pub crash_after_start: Option<Duration>,
    /// Delay before InstanceStart is acted on (and answered).
    pub start_delay: Option<Duration>,
    /// Refuse InstanceStart.
    pub refuse_start: bool,
    /// Ignore SendCtrlAltDel (no exit).
    pub ignore_ctrl_alt_del: bool,
    /// Delay between SendCtrlAltDel and exit(0).
    pub shutdown_delay: Duration,
    /// A simulated guest agent answers on the vsock socket.
    pub guest_agent: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_firecracker_argv_and_sim_flags() {
        let args = SimArgs::try_parse_from([
            "banger-fcsim",
            "--api-sock",
            "/tmp/a.sock",
            "--id",
            "vm-1",
            "--no-seccomp",
            "--sim-refuse-start",
            "--sim-crash-after-start-ms",
            "20",
            "--sim-start-delay-ms",
            "700",
        ])
        .unwrap();
        assert_eq!(args.api_sock, PathBuf::from("/tmp/a.sock"));
        assert_eq!(args.id, "vm-1");
        let m = args.misbehaviour();
        assert!(m.refuse_start);
        assert_eq!(m.crash_after_start, Some(Duration::from_millis(20)));
        assert_eq!(m.start_delay, Some(Duration::from_millis(700)));
        assert_eq!(m.shutdown_delay, Duration::from_millis(50));
    }

    #[test]
    fn qemu_front_takes_firecrackers_argv_and_its_own() {
        let args = QemuFrontArgs::try_parse_from([
            "banger-fcqemu",
            "--api-sock",
            "/tmp/a.sock",
            "--id",
            "vm-1",
            "--qemu-accel",
            "KVM",
        ])
        .unwrap();
        assert_eq!(args.fc.api_sock, PathBuf::from("/tmp/a.sock"));
        assert_eq!(args.fc.id, "vm-1");
        let options = args.qemu_options().unwrap();
        assert_eq!(options.accel, crate::qemu::Accel::Kvm);
        let bad = QemuFrontArgs::try_parse_from(["banger-fcqemu", "--qemu-accel", "hvf"]).unwrap();
        assert!(
            bad.qemu_options()
                .unwrap_err()
                .contains("BANGER_QEMU_ACCEL")
        );
    }

    #[test]
    fn defaults_match_firecracker() {
        let args = SimArgs::try_parse_from(["banger-fcsim"]).unwrap();
        assert_eq!(args.api_sock, PathBuf::from("/run/firecracker.socket"));
        assert_eq!(args.id, "anonymous-instance");
        assert_eq!(args.http_api_max_payload_size, 51200);
    }

    #[test]
    fn boolean_flags_accept_one_from_the_environment() {
        // Parse the env-style value directly rather than mutating the process environment.
        let args = SimArgs::try_parse_from(["banger-fcsim", "--sim-refuse-start"]).unwrap();
        assert!(args.misbehaviour().refuse_start);
        let parser = BoolishValueParser::new();
        let cmd = clap::Command::new("t");
        let parsed = clap::builder::TypedValueParser::parse_ref(
            &parser,
            &cmd,
            None,
            std::ffi::OsStr::new("1"),
        );
        assert!(parsed.unwrap());
    }
}
