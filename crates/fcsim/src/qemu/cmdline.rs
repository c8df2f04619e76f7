//! The `qemu-system-x86_64` command line for a configured microVM.
//!
//! Pure functions, so the mapping from Firecracker's configuration to QEMU
//! arguments is unit-tested without running QEMU:
//! - `-M microvm` with `-nodefaults`, no display, no monitor, `-no-reboot`
//!   (a guest reboot or poweroff ends QEMU, as it ends Firecracker);
//! - the serial console on a chardev: QEMU's stdout (inherited from the
//!   front, so it lands where Firecracker's console would) or the
//!   `PUT /serial` file, appended;
//! - drives as virtio-blk in the front's list order (root device first): the
//!   guest names them `vda`, `vdb`, ... in that order (checked by the tests);
//! - network interfaces as tap netdevs with the configured MAC;
//! - QMP on a private Unix socket.
//!
//! Values embedded in QEMU's `key=value,...` option strings have their
//! commas doubled, QEMU's escape, so a path cannot inject options.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use banger_fcapi::{Drive, NetworkInterface};

/// How QEMU runs guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// TCG: emulation, works everywhere, slow.
    Tcg,
    /// KVM: hardware virtualization (needs a `/dev/kvm` that can run guests).
    Kvm,
}

impl Accel {
    /// The name QEMU and `BANGER_QEMU_ACCEL` use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        }
    }
}

impl std::str::FromStr for Accel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcg" => Ok(Self::Tcg),
            "kvm" => Ok(Self::Kvm),
            other => Err(format!(
                "unknown QEMU accelerator {other:?}: use \"tcg\" or \"kvm\""
            )),
        }
    }
}

/// Where the guest's serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SerialOut {
    /// QEMU's stdout, which is the front's stdout.
    Stdout,
    /// Appended to this file (`PUT /serial`).
    File(PathBuf),
}

/// Everything QEMU is started with.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Accelerator.
    pub accel: Accel,
    /// Kernel image (ELF vmlinux or bzImage).
    pub kernel: PathBuf,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// The full kernel command line (see [`guest_cmdline`]).
    pub cmdline: String,
    /// vCPUs.
    pub vcpus: u8,
    /// Memory in MiB.
    pub mem_mib: usize,
    /// Drives, root device first.
    pub drives: Vec<Drive>,
    /// Network interfaces in insertion order.
    pub nets: Vec<NetworkInterface>,
    /// Serial console target.
    pub serial: SerialOut,
    /// QMP socket path.
    pub qmp_socket: PathBuf,
    /// vhost-vsock guest CID, when the host has a usable `/dev/vhost-vsock`.
    pub vsock_cid: Option<u32>,
    /// Attach a virtio-rng device (`PUT /entropy`).
    pub entropy: bool,
    /// Start paused, waiting for an incoming migration (`PUT /snapshot/load`):
    /// `-S -incoming defer`, then QMP `migrate-incoming`.
    pub incoming: bool,
}

/// Doubles commas, QEMU's escape inside option values.
pub fn opt_escape(value: &str) -> String {
    value.replace(',', ",,")
}

fn path_value(path: &Path) -> String {
    opt_escape(&path.to_string_lossy())
}

/// The kernel command line QEMU passes: Firecracker's (`base`, with the root
/// device appended) plus, under TCG, `tsc_early_khz=<host kHz>` when the
/// configuration does not set it (microvm has no HPET or PM timer, and TSC
/// calibration against the PIT hangs under TCG).
pub fn guest_cmdline(base: &str, accel: Accel, host_khz: Option<u64>) -> String {
    let mut cmdline = base.trim().to_string();
    let has_tsc = cmdline
        .split_whitespace()
        .any(|arg| arg.starts_with("tsc_early_khz="));
    if accel == Accel::Tcg
        && !has_tsc
        && let Some(khz) = host_khz
    {
        cmdline.push_str(&format!(" tsc_early_khz={khz}"));
    }
    cmdline
}

/// The host's TSC rate in kHz from `/proc/cpuinfo`'s first "cpu MHz" line
/// (TCG's TSC runs at host speed).
pub fn host_khz_from_cpuinfo(cpuinfo: &str) -> Option<u64> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split_once(':'))
        .and_then(|(_, v)| v.trim().parse::<f64>().ok())
        .filter(|mhz| *mhz > 0.0)
        .map(|mhz| (mhz * 1000.0).round() as u64)
}

/// The argument vector (without the program name).
pub fn qemu_args(spec: &LaunchSpec) -> Vec<OsString> {
    let mut args: Vec<String> = vec![
        "-M".into(),
        "microvm".into(),
        "-accel".into(),
        spec.accel.name().into(),
        "-cpu".into(),
        match spec.accel {
            Accel::Tcg => "max".into(),
            Accel::Kvm => "host".into(),
        },
        "-smp".into(),
        spec.vcpus.to_string(),
        "-m".into(),
        spec.mem_mib.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-monitor".into(),
        "none".into(),
        "-no-reboot".into(),
    ];
    let chardev = match &spec.serial {
        // signal=off: a Ctrl-C on a terminal is not QEMU's to interpret.
        SerialOut::Stdout => "stdio,id=serial0,signal=off".to_string(),
        SerialOut::File(path) => format!("file,id=serial0,path={},append=on", path_value(path)),
    };
    args.extend([
        "-chardev".into(),
        chardev,
        "-serial".into(),
        "chardev:serial0".into(),
    ]);
    args.extend([
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", path_value(&spec.qmp_socket)),
    ]);
    args.extend(["-kernel".into(), spec.kernel.to_string_lossy().into_owned()]);
    if let Some(initrd) = &spec.initrd {
        args.extend(["-initrd".into(), initrd.to_string_lossy().into_owned()]);
    }
    args.extend(["-append".into(), spec.cmdline.clone()]);
    if spec.incoming {
        args.extend(["-S".into(), "-incoming".into(), "defer".into()]);
    }
    for (index, drive) in spec.drives.iter().enumerate() {
        let path = drive.path_on_host.as_deref().unwrap_or_default();
        let read_only = if drive.is_read_only.unwrap_or(false) {
            "on"
        } else {
            "off"
        };
        args.extend([
            "-drive".into(),
            format!(
                "file={},if=none,format=raw,readonly={read_only},id=drive{index}",
                opt_escape(path)
            ),
            "-device".into(),
            format!("virtio-blk-device,drive=drive{index}"),
        ]);
    }
    for (index, net) in spec.nets.iter().enumerate() {
        args.extend([
            "-netdev".into(),
            format!(
                "tap,id=net{index},ifname={},script=no,downscript=no",
                opt_escape(&net.host_dev_name)
            ),
            "-device".into(),
            match net.guest_mac {
                Some(mac) => format!("virtio-net-device,netdev=net{index},mac={mac}"),
                None => format!("virtio-net-device,netdev=net{index}"),
            },
        ]);
    }
    if let Some(cid) = spec.vsock_cid {
        args.extend([
            "-device".into(),
            format!("vhost-vsock-device,guest-cid={cid}"),
        ]);
    }
    if spec.entropy {
        args.extend([
            "-object".into(),
            "rng-random,id=rng0,filename=/dev/urandom".into(),
            "-device".into(),
            "virtio-rng-device,rng=rng0".into(),
        ]);
    }
    args.into_iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LaunchSpec {
        LaunchSpec {
            accel: Accel::Tcg,
            kernel: "/k/vmlinuz".into(),
            initrd: Some("/k/initrd".into()),
            cmdline: "console=ttyS0 root=/dev/vda rw".into(),
            vcpus: 2,
            mem_mib: 256,
            drives: vec![
                Drive::new("rootfs", "/d/root,evil=1.ext4", true),
                Drive::new("data", "/d/data.ext4", false).read_only(true),
            ],
            nets: vec![NetworkInterface {
                guest_mac: Some("06:00:ac:10:00:02".parse().unwrap()),
                ..NetworkInterface::new("eth0", "tap-1")
            }],
            serial: SerialOut::Stdout,
            qmp_socket: "/run/q/qmp.sock".into(),
            vsock_cid: None,
            entropy: false,
            incoming: false,
        }
    }

    fn joined(spec: &LaunchSpec) -> String {
        qemu_args(spec)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn maps_the_configuration_in_order() {
        let line = joined(&spec());
        assert!(line.starts_with("-M microvm -accel tcg -cpu max -smp 2 -m 256 -nodefaults"));
        assert!(line.contains("-monitor none -no-reboot"));
        assert!(line.contains("-chardev stdio,id=serial0,signal=off -serial chardev:serial0"));
        assert!(line.contains("-qmp unix:/run/q/qmp.sock,server=on,wait=off"));
        assert!(line.contains("-kernel /k/vmlinuz -initrd /k/initrd"));
        // The comma in the path is escaped: it cannot add an option.
        let root = "-drive file=/d/root,,evil=1.ext4,if=none,format=raw,readonly=off,id=drive0 -device virtio-blk-device,drive=drive0";
        let data = "-drive file=/d/data.ext4,if=none,format=raw,readonly=on,id=drive1 -device virtio-blk-device,drive=drive1";
        let (r, d) = (line.find(root).unwrap(), line.find(data).unwrap());
        assert!(r < d, "root drive must come first: {line}");
        assert!(line.contains(
            "-netdev tap,id=net0,ifname=tap-1,script=no,downscript=no -device virtio-net-device,netdev=net0,mac=06:00:ac:10:00:02"
        ));
        assert!(!line.contains("vhost-vsock"));
        let args = qemu_args(&spec());
        let append = args.iter().position(|a| a == "-append").unwrap();
        assert_eq!(args[append + 1], "console=ttyS0 root=/dev/vda rw");
    }

    #[test]
    fn serial_file_vsock_entropy_and_kvm() {
        let mut s = spec();
        s.accel = Accel::Kvm;
        s.serial = SerialOut::File("/tmp/con,sole.log".into());
        s.vsock_cid = Some(7);
        s.entropy = true;
        let line = joined(&s);
        assert!(line.contains("-accel kvm -cpu host"));
        assert!(line.contains("-chardev file,id=serial0,path=/tmp/con,,sole.log,append=on"));
        assert!(line.contains("-device vhost-vsock-device,guest-cid=7"));
        assert!(line.contains("-device virtio-rng-device,rng=rng0"));
    }

    #[test]
    fn a_load_starts_paused_waiting_for_the_migration() {
        assert!(!joined(&spec()).contains("-incoming"));
        let mut s = spec();
        s.incoming = true;
        assert!(joined(&s).contains(" -S -incoming defer"), "{}", joined(&s));
    }

    #[test]
    fn tsc_khz_is_added_under_tcg_only_when_absent() {
        assert_eq!(
            guest_cmdline("console=ttyS0 ", Accel::Tcg, Some(2_100_000)),
            "console=ttyS0 tsc_early_khz=2100000"
        );
        assert_eq!(
            guest_cmdline("tsc_early_khz=5 x", Accel::Tcg, Some(2_100_000)),
            "tsc_early_khz=5 x"
        );
        assert_eq!(guest_cmdline("x", Accel::Kvm, Some(2_100_000)), "x");
        assert_eq!(guest_cmdline("x", Accel::Tcg, None), "x");
    }

    #[test]
    fn host_khz_and_accel_parse() {
        let cpuinfo = "processor\t: 0\ncpu MHz\t\t: 2596.122\ncache size\t: 1 KB\n";
        assert_eq!(host_khz_from_cpuinfo(cpuinfo), Some(2_596_122));
        assert_eq!(host_khz_from_cpuinfo("flags: x\n"), None);
        assert_eq!("KVM".parse::<Accel>(), Ok(Accel::Kvm));
        assert_eq!(" tcg".parse::<Accel>(), Ok(Accel::Tcg));
        assert!(
            "hvf"
                .parse::<Accel>()
                .unwrap_err()
                .contains("\"tcg\" or \"kvm\"")
        );
    }
}
