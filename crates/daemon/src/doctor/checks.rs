//! Host diagnostics for `banger doctor`.
//!
//! [`run`] inspects the host the way bangerd will use it and returns one
//! [`Check`] per concern, each with a fix hint when it is not fine: access to
//! `/dev/kvm`, the Firecracker binary and its version, the state and runtime
//! directories, free disk space, device-mapper and loop devices. Nothing here
//! changes the host beyond a probe file created and removed in directories
//! that exist. The host roots are injectable ([`DoctorEnv`]) so tests run in
//! a temporary directory. They run inside `bangerd` ([`run_in_daemon`], the
//! `daemon.doctor` request), so they see its user, its host and its network
//! namespace; the CLI adds the config file, system-path and reachability
//! checks and prints them. [`default_image_kernel`] checks the default
//! image's kernel config against Firecracker's requirements (as `banger
//! kernel check` does).

use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use banger_api::ByteSize;

use crate::config::{Config, Layout};

pub use banger_api::doctor::{Check, CheckStatus, any_failed};

/// The host as the checks see it.
#[derive(Debug, Clone)]
pub struct DoctorEnv {
    /// Device directory (`/dev`): `kvm`, `mapper/control` and `loop-control` are looked up in it.
    pub dev_dir: PathBuf,
    /// `/proc/cpuinfo`: its `flags` tell whether the CPU offers hardware virtualization.
    pub cpuinfo: PathBuf,
    /// The search path for a bare `firecracker_bin` (`$PATH`).
    pub path: Option<OsString>,
    /// How long `firecracker --version` may take.
    pub version_timeout: Duration,
    /// Warn when the state dir's filesystem has less free space than this.
    pub disk_warn_bytes: u64,
    /// Fail when it has less than this.
    pub disk_fail_bytes: u64,
}

impl Default for DoctorEnv {
    fn default() -> Self {
        DoctorEnv {
            dev_dir: PathBuf::from("/dev"),
            cpuinfo: PathBuf::from("/proc/cpuinfo"),
            path: std::env::var_os("PATH"),
            version_timeout: Duration::from_secs(5),
            disk_warn_bytes: 5 * ByteSize::GIB,
            disk_fail_bytes: ByteSize::GIB,
        }
    }
}

/// Run every check against the real host.
pub fn run(config: &Config, layout: &Layout) -> Vec<Check> {
    let mut checks = run_with(config, layout, &DoctorEnv::default());
    checks.extend(crate::doctor::net::checks(config));
    checks.extend(crate::doctor::seeds::checks(config, layout));
    checks.extend(default_image_kernel(config, layout));
    checks
}

/// `doctor`: does the default image's kernel (`[vm] image`) have what
/// Firecracker needs (`banger kernel check`)? Reads the store when it exists
/// and the image is registered; `None` otherwise. Never fails: a kernel that
/// misses items may still boot with an initrd that loads them, so problems
/// are warnings.
pub fn default_image_kernel(config: &Config, layout: &Layout) -> Option<Check> {
    const NAME: &str = "default kernel";
    let db = layout.state_dir.join("banger.db");
    if !db.is_file() {
        return None;
    }
    let image = banger_store::Store::open(&db)
        .and_then(|s| s.find_image(&config.vm.image))
        .ok()??;
    let hint = format!(
        "see `banger kernel check {}`; build the items in (=y), or use a kernel that has them",
        image.kernel_path
    );
    if image.kernel_path.is_empty() {
        return Some(Check::warn(
            NAME,
            format!("image {} has no kernel", image.name),
            "register one with `banger image register --kernel-name`",
        ));
    }
    let data = match fs::read(&image.kernel_path) {
        Ok(d) => d,
        Err(e) => {
            return Some(Check::warn(
                NAME,
                format!("cannot read {}: {e}", image.kernel_path),
                "run `banger doctor` with the daemon's user",
            ));
        }
    };
    Some(match banger_imagemgr::check_kernel_image(&data) {
        Ok(r) if r.bootable => Check::ok(NAME, format!("image {}: {}", image.name, r.verdict())),
        Ok(r) => Check::warn(
            NAME,
            format!(
                "image {}: {}{}",
                image.name,
                r.verdict(),
                if image.initrd_path.is_some() {
                    " (it boots with an initrd, which may load the modules)"
                } else {
                    ""
                }
            ),
            hint,
        ),
        Err(e) => Check::warn(NAME, format!("image {}: {e}", image.name), hint),
    })
}

/// [`run`] off the async workers, for the `daemon.doctor` request (the
/// checks read files and wait for `firecracker --version`).
pub async fn run_in_daemon(
    config: std::sync::Arc<Config>,
    layout: Layout,
) -> Result<Vec<Check>, crate::common::error::DaemonError> {
    tokio::task::spawn_blocking(move || run(&config, &layout))
        .await
        .map_err(|e| crate::common::error::DaemonError::Internal(format!("doctor checks: {e}")))
}

/// Run every check against `env`.
pub fn run_with(config: &Config, layout: &Layout, env: &DoctorEnv) -> Vec<Check> {
    let cfg = layout.config_file.display();
    let (vmm_check, vmm) = firecracker_vmm(config, layout, env);
    // KVM matters only to a VMM that uses it.
    let no_kvm = match &vmm {
        Some(Vmm::QemuFront { accel }) if accel == "tcg" => {
            Some("banger's QEMU front emulates the guest (TCG)")
        }
        Some(Vmm::Simulator) => Some("the Firecracker simulator boots no guest"),
        _ => None,
    };
    vec![
        not_needed_when(no_kvm, kvm(&env.dev_dir.join("kvm"))),
        not_needed_when(no_kvm, cpu_virtualization(&env.cpuinfo)),
        vmm_check,
        writable_dir(
            "state dir",
            &layout.state_dir,
            &format!("set state_dir in {cfg} (or pass --state-dir) to a directory you own"),
        ),
        disk_space(&layout.state_dir, env),
        writable_dir(
            "runtime dir",
            &layout.runtime_dir,
            &format!("set runtime_dir in {cfg} to a directory you own"),
        ),
        socket_paths(layout),
        optional_device(
            "device-mapper",
            &env.dev_dir.join("mapper/control"),
            &format!(
                "device-mapper is available; root disks: {}",
                banger_dmsnap::StrategyKind::DmSnapshot.describe()
            ),
            &format!(
                "root disks: {} instead of device-mapper snapshots",
                banger_dmsnap::StrategyKind::Copy.describe()
            ),
            "load device-mapper (`sudo modprobe dm_snapshot`) for instant, space-saving root disks",
        ),
        optional_device(
            "loop devices",
            &env.dev_dir.join("loop-control"),
            "loop devices can be attached",
            "images cannot be attached as loop devices, so device-mapper snapshots are unavailable",
            "load the loop module (`sudo modprobe loop`)",
        ),
    ]
}

/// Firecracker needs hardware virtualization (VT-x or AMD-V) behind
/// `/dev/kvm`. Nested or paravirtual KVM (e.g. `kvm_pvm` in a cloud VM)
/// exposes the device but cannot run ordinary guests.
fn cpu_virtualization(cpuinfo: &Path) -> Check {
    const NAME: &str = "cpu virtualization";
    let Ok(text) = std::fs::read_to_string(cpuinfo) else {
        return Check::warn(
            NAME,
            format!("cannot read {}", cpuinfo.display()),
            "check that /proc is mounted",
        );
    };
    let flags = text
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    if flags.contains(&"vmx") || flags.contains(&"svm") {
        return Check::ok(NAME, "the CPU offers hardware virtualization (vmx/svm)");
    }
    Check::warn(
        NAME,
        "the CPU has no vmx/svm flag: /dev/kvm here is nested or paravirtual and Firecracker guests will not boot",
        "run banger on a host (or a VM with nested virtualization enabled) whose CPU shows vmx or svm in /proc/cpuinfo",
    )
}

fn kvm(path: &Path) -> Check {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(drop);
    kvm_from_open(path, opened)
}

fn kvm_from_open(path: &Path, opened: io::Result<()>) -> Check {
    let p = path.display();
    match opened {
        Ok(()) => Check::ok("kvm", format!("{p} is present and read-write accessible")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Check::fail(
            "kvm",
            format!("{p} does not exist"),
            "enable hardware virtualization (VT-x/AMD-V) in the firmware and load the KVM module (`sudo modprobe kvm_intel` or `kvm_amd`); inside a VM, enable nested virtualization",
        ),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Check::fail(
            "kvm",
            format!("{p} is not read-write accessible to this user"),
            "add your user to the kvm group (`sudo usermod -aG kvm $USER`), then log out and back in",
        ),
        Err(e) => Check::fail(
            "kvm",
            format!("cannot open {p} read-write: {e}"),
            format!(
                "check that {p} is the KVM character device (`ls -l {p}`: crw-rw---- root kvm)"
            ),
        ),
    }
}

/// Which VMM `firecracker_bin` is, from its path and `--version` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vmm {
    /// Firecracker itself (or anything else that speaks its API).
    Firecracker,
    /// banger's simulator `banger-fcsim`: no guest boots.
    Simulator,
    /// banger's QEMU front `banger-fcqemu`, with its accelerator (`tcg`, `kvm`).
    QemuFront {
        /// QEMU's accelerator as the front reports it.
        accel: String,
    },
}

/// Classifies the VMM: the QEMU front says so in its version line
/// (`Firecracker v… (banger QEMU front; QEMU 7.2.22; accel tcg)`), the
/// simulator is recognised by its file name.
pub fn classify_vmm(path: &Path, version_line: &str) -> Vmm {
    if let Some((_, rest)) = version_line.split_once("banger QEMU front") {
        let accel = rest
            .split_once("accel ")
            .map(|(_, a)| {
                a.trim_end_matches(')')
                    .split([';', ')', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .unwrap_or_default();
        return Vmm::QemuFront { accel };
    }
    if path.file_name().is_some_and(|n| n == "banger-fcsim") {
        return Vmm::Simulator;
    }
    Vmm::Firecracker
}

/// A KVM check does not matter when the guest is emulated: report it, but as fine.
/// A failed or warned check turned `ok` when the configured VMM does not
/// need what it checks (`why` says so).
fn not_needed_when(why: Option<&str>, check: Check) -> Check {
    let Some(why) = why else {
        return check;
    };
    if check.status == CheckStatus::Ok {
        return check;
    }
    Check::ok(&check.name, format!("{}; not needed: {why}", check.detail))
}

#[cfg(test)]
fn firecracker(config: &Config, layout: &Layout, env: &DoctorEnv) -> Check {
    firecracker_vmm(config, layout, env).0
}

/// The `firecracker` check and, when `--version` answered, which VMM it is.
fn firecracker_vmm(config: &Config, layout: &Layout, env: &DoctorEnv) -> (Check, Option<Vmm>) {
    const NAME: &str = "firecracker";
    let hint_get = format!(
        "install Firecracker from https://github.com/firecracker-microvm/firecracker/releases and put `firecracker` on $PATH, or set firecracker_bin in {}",
        layout.config_file.display()
    );
    let bin = &config.firecracker_bin;
    let Some(path) = banger_config::find_binary_in(bin, env.path.as_deref()) else {
        let detail = if bin.contains('/') {
            format!("{bin} does not exist")
        } else {
            format!("{bin} was not found on $PATH")
        };
        return (Check::fail(NAME, detail, hint_get), None);
    };
    let p = path.display();
    if !banger_config::is_executable(&path) {
        return (
            Check::fail(
                NAME,
                format!("{p} is not an executable file"),
                format!("make it executable (`chmod +x {p}`) or {hint_get}"),
            ),
            None,
        );
    }
    let v = match version(&path, env.version_timeout) {
        Ok(v) => v,
        Err(e) => {
            return (
                Check::fail(
                    NAME,
                    format!("{p} --version failed: {e}"),
                    format!(
                        "check that {p} is a Firecracker binary for this architecture, or {hint_get}"
                    ),
                ),
                None,
            );
        }
    };
    let vmm = classify_vmm(&path, &v);
    let check = match &vmm {
        Vmm::Simulator => Check::warn(
            NAME,
            format!("{p}: the Firecracker simulator ({v}): the API is checked, but no guest boots"),
            format!("for real VMs {hint_get}"),
        ),
        Vmm::QemuFront { accel } if accel == "kvm" => Check::ok(
            NAME,
            format!("{p}: banger's QEMU front, guests run in QEMU with KVM ({v})"),
        ),
        Vmm::QemuFront { accel } if v.contains("QEMU unavailable") => Check::fail(
            NAME,
            format!("{p}: banger's QEMU front (accel {accel}) cannot run QEMU ({v})"),
            "install QEMU (`sudo apt-get install qemu-system-x86`) or point BANGER_QEMU_BIN at qemu-system-x86_64",
        ),
        Vmm::QemuFront { accel } => Check::warn(
            NAME,
            format!(
                "{p}: banger's QEMU front, guests are emulated (accel {accel}) and slow: a Debian guest with Debian's cloud kernel answers SSH after 22–28 s on 2 cores and CPU-heavy work runs several times slower than with KVM ({v})"
            ),
            format!("for full speed use Firecracker on a host with working KVM: {hint_get}"),
        ),
        Vmm::Firecracker => Check::ok(NAME, format!("{p}: {v}")),
    };
    (check, Some(vmm))
}

/// Run `bin --version` (no shell) and return the first line it printed.
fn version(bin: &Path, timeout: Duration) -> Result<String, String> {
    let mut cmd = Command::new(bin);
    cmd.arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = spawn(&mut cmd).map_err(|e| e.to_string())?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                kill_group(&mut child);
                return Err(format!("no answer within {}s", timeout.as_secs_f32()));
            }
            Err(e) => {
                kill_group(&mut child);
                return Err(e.to_string());
            }
        }
    };
    // A grandchild could keep the pipes open; don't wait for it forever.
    let out = stdout
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    let err = stderr
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    let first = |b: &[u8]| {
        String::from_utf8_lossy(b)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    };
    if !status.success() {
        let why = first(&err).or_else(|| first(&out)).unwrap_or_default();
        return Err(format!("{status}: {why}")
            .trim_end_matches([':', ' '])
            .to_string());
    }
    first(&out)
        .or_else(|| first(&err))
        .ok_or_else(|| "it printed nothing".to_string())
}

/// Spawn, retrying briefly on ETXTBSY: a file just written by this process
/// can still be open for writing in a child forked by another thread.
fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn collect(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.by_ref().take(64 * 1024).read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

/// The directory exists and is writable, or can be created.
fn writable_dir(name: &str, dir: &Path, hint_elsewhere: &str) -> Check {
    let d = dir.display();
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => match probe_write(dir) {
            Ok(()) => Check::ok(name, format!("{d} exists and is writable")),
            Err(e) => Check::fail(
                name,
                format!("{d} is not writable: {e}"),
                format!("make it yours (`sudo chown -R $USER {d}`), or {hint_elsewhere}"),
            ),
        },
        Ok(_) => Check::fail(
            name,
            format!("{d} exists but is not a directory"),
            format!("move it away, or {hint_elsewhere}"),
        ),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            match existing_ancestor(dir) {
                Some(a)
                    if a.is_dir()
                        && nix::unistd::access(
                            a,
                            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
                        )
                        .is_ok() =>
                {
                    Check::ok(
                        name,
                        format!("{d} does not exist yet; bangerd will create it"),
                    )
                }
                Some(a) => Check::fail(
                    name,
                    format!(
                        "{d} does not exist and cannot be created: {} is not a writable directory",
                        a.display()
                    ),
                    format!(
                        "create it (`sudo mkdir -p {d} && sudo chown $USER {d}`), or {hint_elsewhere}"
                    ),
                ),
                None => Check::fail(
                    name,
                    format!("{d} does not exist and has no existing parent"),
                    hint_elsewhere,
                ),
            }
        }
        Err(e) => Check::fail(name, format!("cannot inspect {d}: {e}"), hint_elsewhere),
    }
}

/// Sockets under the runtime dir must fit a Unix socket address
/// (bangerd refuses to start otherwise).
fn socket_paths(layout: &Layout) -> Check {
    const NAME: &str = "socket paths";
    match layout.check_socket_paths() {
        Ok(()) => Check::ok(
            NAME,
            format!(
                "the longest socket path ({} bytes) fits a Unix socket address",
                layout.longest_socket().as_os_str().len()
            ),
        ),
        Err(e) => Check::fail(
            NAME,
            format!(
                "{} is {} bytes, more than the {} a Unix socket path may have: Firecracker cannot create its sockets there",
                e.longest.display(),
                e.len,
                crate::config::MAX_SOCKET_PATH
            ),
            format!(
                "set runtime_dir in {} (or XDG_RUNTIME_DIR, or a shorter --state-dir) to a path of at most {} bytes",
                layout.config_file.display(),
                e.max_dir
            ),
        ),
    }
}

fn existing_ancestor(p: &Path) -> Option<&Path> {
    p.ancestors()
        .find(|a| !a.as_os_str().is_empty() && fs::symlink_metadata(a).is_ok())
}

fn probe_write(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".banger-doctor-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)?;
    fs::remove_file(&probe)
}

fn disk_space(state_dir: &Path, env: &DoctorEnv) -> Check {
    const NAME: &str = "disk space";
    let Some(target) = existing_ancestor(state_dir) else {
        return Check::fail(
            NAME,
            format!("no existing directory above {}", state_dir.display()),
            "check state_dir",
        );
    };
    match nix::sys::statvfs::statvfs(target) {
        Ok(s) => {
            // Both are u64 on 64-bit Linux but narrower on some 32-bit targets.
            #[allow(clippy::useless_conversion)]
            let free = u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size()));
            classify_free(free, state_dir, env)
        }
        Err(e) => Check::warn(
            NAME,
            format!("cannot measure free space of {}: {e}", target.display()),
            "check the filesystem with `df -h`",
        ),
    }
}

fn classify_free(free: u64, dir: &Path, env: &DoctorEnv) -> Check {
    const NAME: &str = "disk space";
    let detail = format!(
        "{} free on the filesystem of {}",
        ByteSize(free),
        dir.display()
    );
    let hint = format!(
        "free space there (VM disks and images live in {}; `banger vm delete` and `banger image delete` reclaim it), or move state_dir to a larger filesystem",
        dir.display()
    );
    if free < env.disk_fail_bytes {
        Check::fail(NAME, detail, hint)
    } else if free < env.disk_warn_bytes {
        Check::warn(NAME, detail, hint)
    } else {
        Check::ok(NAME, detail)
    }
}

fn optional_device(name: &str, path: &Path, ok: &str, missing: &str, hint: &str) -> Check {
    if path.exists() {
        Check::ok(name, format!("{}: {ok}", path.display()))
    } else {
        Check::warn(
            name,
            format!("{} is missing: {missing}", path.display()),
            hint,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::config::Mode;

    fn write_script(path: &Path, body: &str) {
        let mut f = fs::File::create(path).unwrap();
        writeln!(f, "#!/bin/sh\n{body}").unwrap();
        f.sync_all().unwrap();
        drop(f);
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    struct Host {
        dir: tempfile::TempDir,
        env: DoctorEnv,
    }

    /// A fake host: `dev/` with kvm, mapper/control and loop-control, and
    /// `bin/firecracker` printing a version.
    fn host() -> Host {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("dev");
        fs::create_dir_all(dev.join("mapper")).unwrap();
        fs::write(dev.join("kvm"), b"").unwrap();
        fs::write(dev.join("mapper/control"), b"").unwrap();
        fs::write(dev.join("loop-control"), b"").unwrap();
        let cpuinfo = dir.path().join("cpuinfo");
        fs::write(&cpuinfo, "flags : fpu vmx\n").unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        write_script(
            &bin.join("firecracker"),
            "echo 'Firecracker v1.9.0'\necho\necho 'Supported snapshot versions: 4.0.0'",
        );
        let env = DoctorEnv {
            dev_dir: dev,
            cpuinfo,
            path: Some(bin.into_os_string()),
            version_timeout: Duration::from_secs(10),
            disk_warn_bytes: 0,
            disk_fail_bytes: 0,
        };
        Host { dir, env }
    }

    fn layout(root: &Path) -> Layout {
        Layout::resolve(
            Mode::Dev,
            root.join("config.toml"),
            &Config::default(),
            Some(&root.join("state")),
        )
        .unwrap()
    }

    /// The default image's kernel is checked: built-in items pass, a
    /// missing item or no embedded config warns, no store or no such image
    /// gives no line.
    #[test]
    fn default_image_kernel_is_checked() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let layout = layout(t.path());
        let config = Config::default();
        assert!(default_image_kernel(&config, &layout).is_none());

        let gz = |cfg: &str| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(cfg.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let vmlinux = |cfg: Option<&str>| {
            let mut d = b"\x7fELF\x02\x01\x01".to_vec();
            d.resize(1024, 0);
            if let Some(cfg) = cfg {
                d.extend_from_slice(b"IKCFG_ST");
                d.extend_from_slice(&gz(cfg));
                d.extend_from_slice(b"IKCFG_ED");
            }
            d
        };
        let full: String = banger_imagemgr::required_kernel_options()
            .map(|o| format!("CONFIG_{o}=y\n"))
            .collect();
        let kernel = t.path().join("vmlinux");
        std::fs::create_dir_all(&layout.state_dir).unwrap();
        let store = banger_store::Store::open(layout.state_dir.join("banger.db")).unwrap();
        assert!(default_image_kernel(&config, &layout).is_none());
        store
            .insert_image(&banger_api::Image {
                id: "id-default".into(),
                name: config.vm.image.clone(),
                rootfs_path: "/r".into(),
                kernel_path: kernel.to_str().unwrap().into(),
                initrd_path: None,
                size_bytes: 1,
                source: "test".into(),
                created_at: 0,
                seed: None,
                work_seed_path: None,
            })
            .unwrap();

        std::fs::write(&kernel, vmlinux(Some(&full))).unwrap();
        let c = default_image_kernel(&config, &layout).unwrap();
        assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
        assert!(c.detail.contains("ACPI boot"), "{c:?}");

        let no_blk = full.replace("CONFIG_VIRTIO_BLK=y", "CONFIG_VIRTIO_BLK=m");
        std::fs::write(&kernel, vmlinux(Some(&no_blk))).unwrap();
        let c = default_image_kernel(&config, &layout).unwrap();
        assert_eq!(c.status, CheckStatus::Warn, "{c:?}");
        assert!(c.detail.contains("CONFIG_VIRTIO_BLK (module)"), "{c:?}");
        assert!(c.hint.as_deref().unwrap().contains("banger kernel check"));

        std::fs::write(&kernel, vmlinux(None)).unwrap();
        let c = default_image_kernel(&config, &layout).unwrap();
        assert_eq!(c.status, CheckStatus::Warn, "{c:?}");
        assert!(c.detail.contains("CONFIG_IKCONFIG=y"), "{c:?}");
    }

    fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
        checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}: {checks:?}"))
    }

    /// `daemon.doctor` runs every check (host, network, image seeds) for
    /// the daemon's own config and layout, off the async workers.
    #[tokio::test(flavor = "current_thread")]
    async fn the_rpc_runs_every_check_for_the_daemons_layout() {
        let t = tempfile::tempdir().unwrap();
        let l = layout(t.path());
        std::fs::create_dir_all(&l.state_dir).unwrap();
        let checks = run_in_daemon(std::sync::Arc::new(Config::default()), l.clone())
            .await
            .unwrap();
        let state = find(&checks, "state dir");
        assert!(
            state.detail.contains(&l.state_dir.display().to_string()),
            "{state:?}"
        );
        for name in ["kvm", "firecracker", "runtime dir", "loop devices"] {
            find(&checks, name);
        }
        // The same list as the synchronous run (network and image-seed
        // checks included), which must itself stay off the async workers.
        let direct = tokio::task::spawn_blocking(move || run(&Config::default(), &l))
            .await
            .unwrap();
        let names = |c: &[Check]| c.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&checks), names(&direct));
    }

    #[test]
    fn a_runtime_dir_too_long_for_sockets_fails_its_check() {
        assert_eq!(banger_store::new_id().len(), crate::config::VM_ID_LEN);
        let t = tempfile::tempdir().unwrap();
        let mut l = layout(t.path());
        let ok = socket_paths(&l);
        assert_eq!(ok.status, CheckStatus::Ok, "{ok:?}");
        l.runtime_dir = t.path().join("r".repeat(100));
        let c = socket_paths(&l);
        assert_eq!(c.status, CheckStatus::Fail, "{c:?}");
        assert!(c.detail.contains("Firecracker cannot create"), "{c:?}");
        let runs = run_with(&Config::default(), &l, &DoctorEnv::default());
        assert_eq!(find(&runs, "socket paths").status, CheckStatus::Fail);
    }

    #[test]
    fn healthy_host_passes_every_check() {
        let h = host();
        let checks = run_with(&Config::default(), &layout(h.dir.path()), &h.env);
        let names: Vec<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "kvm",
                "cpu virtualization",
                "firecracker",
                "state dir",
                "disk space",
                "runtime dir",
                "socket paths",
                "device-mapper",
                "loop devices"
            ]
        );
        for c in &checks {
            assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
            assert!(c.hint.is_none(), "{c:?}");
        }
        assert!(
            find(&checks, "device-mapper")
                .detail
                .contains("root disks: device-mapper snapshot")
        );
        assert_eq!(
            find(&checks, "firecracker").detail.rsplit(": ").next(),
            Some("Firecracker v1.9.0")
        );
        assert!(find(&checks, "state dir").detail.contains("will create it"));
        assert!(!any_failed(&checks));
        // Nothing was created by looking.
        assert!(!h.dir.path().join("state").exists());
    }

    #[test]
    fn kvm_missing_unopenable_or_denied_fails_with_hints() {
        let h = host();
        let kvm_path = h.env.dev_dir.join("kvm");
        fs::remove_file(&kvm_path).unwrap();
        let c = kvm(&kvm_path);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(
            c.hint.as_deref().unwrap().contains("virtualization"),
            "{c:?}"
        );

        fs::create_dir(&kvm_path).unwrap();
        let c = kvm(&kvm_path);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("cannot open"), "{c:?}");

        let c = kvm_from_open(
            &kvm_path,
            Err(io::Error::from(io::ErrorKind::PermissionDenied)),
        );
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(
            c.hint.as_deref().unwrap().contains("usermod -aG kvm"),
            "{c:?}"
        );
        assert!(any_failed(&[c]));
    }

    #[test]
    fn firecracker_not_found_not_executable_or_broken_fails() {
        let h = host();
        let l = layout(h.dir.path());
        let mut config = Config {
            firecracker_bin: "no-such-firecracker".into(),
            ..Config::default()
        };
        let c = firecracker(&config, &l, &h.env);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("not found on $PATH"), "{c:?}");
        assert!(
            c.hint.as_deref().unwrap().contains("firecracker/releases"),
            "{c:?}"
        );

        config.firecracker_bin = h.dir.path().join("nope").display().to_string();
        let c = firecracker(&config, &l, &h.env);
        assert!(c.detail.contains("does not exist"), "{c:?}");

        let plain = h.dir.path().join("plain");
        fs::write(&plain, "x").unwrap();
        config.firecracker_bin = plain.display().to_string();
        let c = firecracker(&config, &l, &h.env);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("not an executable"), "{c:?}");

        let failing = h.dir.path().join("failing");
        write_script(&failing, "echo 'cannot execute binary file' >&2\nexit 3");
        config.firecracker_bin = failing.display().to_string();
        let c = firecracker(&config, &l, &h.env);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("cannot execute binary file"), "{c:?}");
    }

    /// Every check with the VMM `name` (a script printing `version`) as
    /// `firecracker_bin`.
    fn checks_with_vmm(h: &Host, name: &str, version: &str) -> Vec<Check> {
        let vmm = h.dir.path().join(name);
        write_script(&vmm, &format!("echo '{version}'"));
        let config = Config {
            firecracker_bin: vmm.display().to_string(),
            ..Config::default()
        };
        run_with(&config, &layout(h.dir.path()), &h.env)
    }

    #[test]
    fn the_simulator_needs_no_kvm() {
        let h = host();
        fs::remove_file(h.env.dev_dir.join("kvm")).unwrap();
        let checks = checks_with_vmm(&h, "banger-fcsim", "Firecracker v1.17.0-dev");
        let kvm = find(&checks, "kvm");
        assert_eq!(kvm.status, CheckStatus::Ok, "{kvm:?}");
        assert!(
            kvm.detail
                .contains("does not exist; not needed: the Firecracker simulator"),
            "{kvm:?}"
        );
        // Firecracker itself still needs it.
        let checks = checks_with_vmm(&h, "firecracker", "Firecracker v1.9.0");
        assert_eq!(find(&checks, "kvm").status, CheckStatus::Fail);
    }

    #[test]
    fn the_qemu_front_is_recognised_and_tcg_needs_no_kvm() {
        let h = host();
        let front = h.dir.path().join("banger-fcqemu");
        write_script(
            &front,
            "echo 'Firecracker v1.17.0-dev (banger QEMU front; QEMU 7.2.22; accel tcg)'\necho",
        );
        let config = Config {
            firecracker_bin: front.display().to_string(),
            ..Config::default()
        };
        // No /dev/kvm and no vmx: fine for an emulated guest.
        fs::remove_file(h.env.dev_dir.join("kvm")).unwrap();
        let checks = run_with(&config, &layout(h.dir.path()), &h.env);
        let c = find(&checks, "firecracker");
        assert_eq!(c.status, CheckStatus::Warn, "{c:?}");
        assert!(
            c.detail.contains("QEMU front") && c.detail.contains("slow"),
            "{c:?}"
        );
        let kvm = find(&checks, "kvm");
        assert_eq!(kvm.status, CheckStatus::Ok, "{kvm:?}");
        assert!(kvm.detail.contains("not needed"), "{kvm:?}");

        assert_eq!(
            classify_vmm(
                &front,
                "Firecracker v1.17.0-dev (banger QEMU front; QEMU 7.2.22; accel kvm)"
            ),
            Vmm::QemuFront {
                accel: "kvm".into()
            }
        );
        assert_eq!(
            classify_vmm(Path::new("/x/banger-fcsim"), "Firecracker v1.17.0-dev"),
            Vmm::Simulator
        );
        assert_eq!(
            classify_vmm(Path::new("/usr/bin/firecracker"), "Firecracker v1.9.0"),
            Vmm::Firecracker
        );
    }

    #[test]
    fn firecracker_version_times_out() {
        let h = host();
        let slow = h.dir.path().join("slow");
        // The shell stays the group leader and `sleep` a child: both must die.
        write_script(&slow, "sleep 30\necho late");
        let config = Config {
            firecracker_bin: slow.display().to_string(),
            ..Config::default()
        };
        let env = DoctorEnv {
            version_timeout: Duration::from_millis(300),
            ..h.env.clone()
        };
        let started = Instant::now();
        let c = firecracker(&config, &layout(h.dir.path()), &env);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("no answer"), "{c:?}");
    }

    #[test]
    fn directories_exist_or_can_be_created() {
        let h = host();
        let root = h.dir.path();
        let existing = root.join("existing");
        fs::create_dir(&existing).unwrap();
        let c = writable_dir("state dir", &existing, "elsewhere");
        assert_eq!(c.status, CheckStatus::Ok, "{c:?}");
        assert!(c.detail.contains("is writable"));
        assert_eq!(
            fs::read_dir(&existing).unwrap().count(),
            0,
            "probe file left behind"
        );

        let c = writable_dir("state dir", &root.join("a/b/c"), "elsewhere");
        assert_eq!(c.status, CheckStatus::Ok, "{c:?}");

        let file = root.join("file");
        fs::write(&file, "x").unwrap();
        let c = writable_dir("state dir", &file, "elsewhere");
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("not a directory"), "{c:?}");

        let c = writable_dir("state dir", &file.join("state"), "set state_dir");
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("cannot be created"), "{c:?}");
        assert!(
            c.hint.as_deref().unwrap().contains("set state_dir"),
            "{c:?}"
        );
    }

    #[test]
    fn disk_space_thresholds() {
        let h = host();
        let dir = h.dir.path().join("state");
        let env = |warn, fail| DoctorEnv {
            disk_warn_bytes: warn,
            disk_fail_bytes: fail,
            ..h.env.clone()
        };
        assert_eq!(disk_space(&dir, &env(0, 0)).status, CheckStatus::Ok);
        assert_eq!(
            disk_space(&dir, &env(u64::MAX, 0)).status,
            CheckStatus::Warn
        );
        let c = disk_space(&dir, &env(u64::MAX, u64::MAX));
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.contains("free on the filesystem of"), "{c:?}");

        let defaults = DoctorEnv::default();
        let gib = ByteSize::GIB;
        assert_eq!(
            classify_free(10 * gib, &dir, &defaults).status,
            CheckStatus::Ok
        );
        assert_eq!(
            classify_free(4 * gib, &dir, &defaults).status,
            CheckStatus::Warn
        );
        let c = classify_free(gib / 2, &dir, &defaults);
        assert_eq!(c.status, CheckStatus::Fail);
        assert!(c.detail.starts_with("512M free"), "{c:?}");
    }

    #[test]
    fn cpu_virtualization_flags() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("cpuinfo");
        std::fs::write(&f, "processor : 0\nflags : fpu vme vmx sse\n").unwrap();
        assert_eq!(cpu_virtualization(&f).status, CheckStatus::Ok);
        std::fs::write(&f, "processor : 0\nflags : fpu vme sse hypervisor\n").unwrap();
        let c = cpu_virtualization(&f);
        assert_eq!(c.status, CheckStatus::Warn);
        assert!(c.detail.contains("will not boot"));
        assert_eq!(
            cpu_virtualization(&t.path().join("none")).status,
            CheckStatus::Warn
        );
    }

    #[test]
    fn doctor_reports_the_root_disk_strategy_this_host_gets() {
        // The real /dev: what doctor reports is what the daemon chooses
        // (on hosts without device-mapper, like CI, the copy fallback).
        let t = tempfile::tempdir().unwrap();
        let env = DoctorEnv {
            version_timeout: Duration::from_millis(200),
            ..DoctorEnv::default()
        };
        let checks = run_with(&Config::default(), &layout(t.path()), &env);
        let dm = find(&checks, "device-mapper");
        let kind = banger_dmsnap::detect(Path::new("/dev"));
        assert!(dm.detail.contains(kind.describe()), "{dm:?}");
        if kind == banger_dmsnap::StrategyKind::Copy {
            assert_eq!(dm.status, CheckStatus::Warn, "{dm:?}");
        }
    }

    #[test]
    fn missing_dm_and_loop_only_warn() {
        let h = host();
        fs::remove_file(h.env.dev_dir.join("mapper/control")).unwrap();
        fs::remove_file(h.env.dev_dir.join("loop-control")).unwrap();
        let checks = run_with(&Config::default(), &layout(h.dir.path()), &h.env);
        assert_eq!(find(&checks, "device-mapper").status, CheckStatus::Warn);
        assert!(
            find(&checks, "device-mapper")
                .detail
                .contains("root disks: full copy"),
            "{:?}",
            find(&checks, "device-mapper")
        );
        assert!(
            find(&checks, "device-mapper")
                .hint
                .as_deref()
                .unwrap()
                .contains("modprobe")
        );
        assert_eq!(find(&checks, "loop devices").status, CheckStatus::Warn);
        assert!(!any_failed(&checks));
    }

    #[test]
    fn checks_serialize_without_empty_hints() {
        let v = serde_json::to_value(Check::ok("kvm", "fine")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "kvm", "status": "ok", "detail": "fine"})
        );
        let v = serde_json::to_value(Check::fail("kvm", "bad", "fix")).unwrap();
        assert_eq!(v["status"], "fail");
        assert_eq!(v["hint"], "fix");
    }
}
