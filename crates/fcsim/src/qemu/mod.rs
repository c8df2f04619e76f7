//! The QEMU guest backend: what runs behind `InstanceStart` in `banger-fcqemu`.
//!
//! The API front (HTTP, validation, state machine, faults, logger, metrics)
//! is the simulator's; with this backend, `InstanceStart` launches
//! `qemu-system-x86_64 -M microvm` with exactly what was configured
//! ([`cmdline`]), `SendCtrlAltDel` becomes a QMP `system_powerdown` (the ACPI
//! power button), `PATCH /vm` becomes QMP `stop`/`cont`, and the process
//! exits when QEMU does: 0 after a clean guest poweroff or reboot
//! (`-no-reboot`), 1 with a log line otherwise. The child dies with the front
//! (`PR_SET_PDEATHSIG`), so SIGKILL or SIGTERM of the front ends the guest.
//! Snapshots are QEMU migrations into the memory file (`migrate`): Full
//! only, file memory backend only. Calls QEMU cannot honour (diff
//! snapshots, balloon, hotplug, ...) are refused with a 400 naming the QEMU
//! front ([`refusal`]).

pub mod cmdline;
mod migrate;
pub mod qmp;
pub(crate) mod vsock;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use cmdline::{Accel, LaunchSpec, SerialOut};

use crate::error::SimError;
use crate::fault::Fault;
use crate::log::SimLog;
use crate::route::ApiCall;
use crate::vmm::ExitSender;

/// The QEMU program used when `BANGER_QEMU_BIN` / `--qemu-bin` is not given.
pub const DEFAULT_QEMU_BIN: &str = "qemu-system-x86_64";

/// How long QEMU may take to come up (QMP answering) after it is spawned.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Lines of QEMU's stderr kept for error messages.
const STDERR_TAIL: usize = 12;

/// How the QEMU backend runs QEMU.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// `qemu-system-x86_64` (a name on `$PATH` or a path).
    pub binary: PathBuf,
    /// Accelerator.
    pub accel: Accel,
}

impl QemuOptions {
    /// QEMU's version ("7.2.22") from `<binary> --version`.
    pub fn qemu_version(&self) -> Result<String, String> {
        let out = Command::new(&self.binary)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} --version failed: {}",
                self.binary.display(),
                out.status
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .next()
            .and_then(|l| l.strip_prefix("QEMU emulator version "))
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .ok_or_else(|| {
                format!(
                    "{} --version printed no QEMU version",
                    self.binary.display()
                )
            })
    }
}

/// The fault for a call the QEMU front cannot honour, if `call` is one.
/// `started` is whether InstanceStart succeeded.
pub(crate) fn refusal(call: &ApiCall, started: bool) -> Option<Fault> {
    use ApiCall::*;
    let what = match call {
        PutBalloon(_) | PatchBalloon(_) | PatchBalloonStats(_) | StartHinting(_) | StopHinting => {
            "the balloon device"
        }
        CreateSnapshot(p) if p.snapshot_type == Some(banger_fcapi::SnapshotType::Diff) => {
            "diff snapshots (only Full)"
        }
        LoadSnapshot(p)
            if p.mem_backend
                .as_ref()
                .is_some_and(|b| b.backend_type == banger_fcapi::MemBackendType::Uffd) =>
        {
            "the Uffd memory backend (only File)"
        }
        PutMemoryHotplug(_) | PatchMemoryHotplug(_) => "memory hotplug",
        PutPmem(_) | PatchPmem(_) => "pmem devices",
        PutCpuConfig(_) => "CPU templates (custom CPU configuration)",
        PutMmdsConfig(_) => "MMDS (the guest cannot reach the metadata service)",
        PatchDrive(_) | PatchNet(_) => "updating devices after boot",
        PutDrive(_) | PutNet(_) | Unplug(..) if started => "device hotplug",
        _ => return None,
    };
    Some(Fault::bad_request(format!(
        "banger's QEMU front (banger-fcqemu) does not support {what}; use Firecracker on a host with KVM for it"
    )))
}

/// Exit status and startup handshake, shared with the thread reaping QEMU.
#[derive(Debug, Default)]
struct ChildState {
    status: Option<ExitStatus>,
    /// InstanceStart succeeded: QEMU's exit is now the process's end.
    started: bool,
}

/// A running QEMU guest.
#[derive(Debug)]
pub struct QemuGuest {
    pid: u32,
    /// The kernel command line it was started with (kept in snapshots).
    cmdline: String,
    /// The kernel and initrd it was started with (kept in snapshots, also
    /// of a guest that was itself restored).
    boot: banger_fcapi::BootSource,
    /// The one QMP connection (its socket file is already deleted).
    qmp: Mutex<qmp::Qmp>,
}

impl QemuGuest {
    /// Spawns QEMU for `spec` (its `qmp_socket` is replaced by one in a
    /// private directory, deleted once connected) and waits until QMP answers. A QEMU that fails to come up is a
    /// 400 `Start microvm error` carrying QEMU's own message; the front then
    /// stays up with the VM not started, as Firecracker does.
    pub fn launch(
        options: &QemuOptions,
        mut spec: LaunchSpec,
        log: Arc<SimLog>,
        exit: ExitSender,
    ) -> Result<Self, Fault> {
        let start_error =
            |detail: String| Fault::bad_request(format!("Start microvm error: {detail}"));
        let private_dir = tempfile::Builder::new()
            .prefix("banger-fcqemu-")
            .tempdir()
            .map_err(|e| start_error(format!("cannot create a private directory for QMP: {e}")))?;
        spec.qmp_socket = private_dir.path().join("qmp.sock");
        let args = cmdline::qemu_args(&spec);
        log.info(
            "main",
            "vmm",
            format!(
                "Starting QEMU ({} accel): {} {}",
                spec.accel.name(),
                options.binary.display(),
                args.iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        );
        let mut command = Command::new(&options.binary);
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped());
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) run
        // between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The front died before the prctl: don't outlive it.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| {
            start_error(format!(
                "cannot run QEMU ({}): {e}; install qemu-system-x86 or point BANGER_QEMU_BIN at qemu-system-x86_64",
                options.binary.display()
            ))
        })?;
        let pid = child.id();
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_reader = child.stderr.take().map(|stderr| {
            let tail = tail.clone();
            std::thread::spawn(move || forward_stderr(stderr, &tail))
        });
        let state = Arc::new(Mutex::new(ChildState::default()));
        {
            let state = state.clone();
            let tail = tail.clone();
            let log = log.clone();
            std::thread::Builder::new()
                .name(format!("qemu-{pid}"))
                .spawn(move || {
                    let status = child.wait();
                    if let Some(reader) = stderr_reader {
                        let _ = reader.join();
                    }
                    let mut state = lock(&state);
                    // wait() fails only for a child that is not ours; treat it as a failure.
                    let status = status.unwrap_or_else(|_| ExitStatus::from_raw(1 << 8));
                    state.status = Some(status);
                    if state.started {
                        announce_exit(status, &lock(&tail), &log, &exit);
                    }
                })
                .map_err(|e| start_error(format!("cannot watch QEMU: {e}")))?;
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let qmp = loop {
            let connected = qmp::Qmp::connect(&spec.qmp_socket)
                .and_then(|mut qmp| qmp.execute("query-status", None).map(|_| qmp));
            {
                let mut state = lock(&state);
                if let Some(status) = state.status {
                    return Err(start_error(format!(
                        "QEMU exited during startup ({}): {}",
                        describe(status),
                        joined_tail(&lock(&tail))
                    )));
                }
                if let Ok(qmp) = connected {
                    state.started = true;
                    break qmp;
                }
            }
            if Instant::now() >= deadline {
                // SAFETY: plain kill(2) of our own child, which is not reaped yet.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                return Err(start_error(format!(
                    "QEMU did not answer on its QMP socket within {} s",
                    STARTUP_TIMEOUT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Connected for good: the socket file is no longer needed, and
        // without it nobody else can reach QEMU's monitor.
        if let Err(e) = private_dir.close() {
            log.warn(
                "main",
                "vmm",
                format!("cannot remove QEMU's private QMP directory: {e}"),
            );
        }
        log.info("main", "vmm", format!("QEMU is running (pid {pid})"));
        Ok(Self {
            pid,
            boot: banger_fcapi::BootSource {
                kernel_image_path: spec.kernel.display().to_string(),
                initrd_path: spec.initrd.as_ref().map(|p| p.display().to_string()),
                boot_args: None,
            },
            cmdline: spec.cmdline,
            qmp: Mutex::new(qmp),
        })
    }

    /// The kernel command line QEMU was started with.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }

    /// The kernel and initrd QEMU was started with.
    pub fn boot_source(&self) -> &banger_fcapi::BootSource {
        &self.boot
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Runs a QMP command; a failure is a 400 with `context` and QEMU's answer.
    pub fn command(&self, command: &str, context: &str) -> Result<(), Fault> {
        lock(&self.qmp)
            .execute(command, None)
            .map(drop)
            .map_err(|e| Fault::bad_request(format!("{context}: {e}")))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn forward_stderr(stderr: impl std::io::Read, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let _ = writeln!(std::io::stderr(), "{line}");
        let mut tail = lock(tail);
        if tail.len() == STDERR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

fn joined_tail(tail: &VecDeque<String>) -> String {
    if tail.is_empty() {
        "it printed nothing on stderr".into()
    } else {
        tail.iter().cloned().collect::<Vec<_>>().join(" / ")
    }
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// QEMU has ended after a successful start: the front ends too.
fn announce_exit(status: ExitStatus, tail: &VecDeque<String>, log: &SimLog, exit: &ExitSender) {
    if status.success() {
        log.info(
            "main",
            "vmm",
            "QEMU exited: the guest powered off or rebooted",
        );
        log.info("main", "vmm", "Vmm is stopping.");
        let _ = exit.send(Ok(0));
    } else {
        let detail = format!("QEMU {}: {}", describe(status), joined_tail(tail));
        log.error("main", "vmm", format!("QEMU ended abnormally: {detail}"));
        log.info("main", "vmm", "Vmm is stopping.");
        let _ = exit.send(Err(SimError::QemuFailed(detail)));
    }
}

/// Whether `/dev/vhost-vsock` can be opened read-write (QEMU's vhost-vsock needs it).
pub fn vhost_vsock_usable(dev: &Path) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .is_ok()
}

/// The host's TSC rate in kHz, for `tsc_early_khz=` under TCG.
pub fn host_khz() -> Option<u64> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| cmdline::host_khz_from_cpuinfo(&text))
}
