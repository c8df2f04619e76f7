//! A tiny real guest for tests of banger's QEMU front: banger's microVM
//! kernel when it is built (`BANGER_TEST_MICROVM_KERNEL`, a bzImage, else the
//! newest `/var/cache/banger-ci/microvm-kernel/*/bzImage` that `.ci/run`
//! fills; everything built in), otherwise Debian's cloud kernel (from
//! `BANGER_TEST_KERNEL_DIR`, else the cache `.ci/run` fills at
//! /var/cache/banger-ci/kernel: `boot/vmlinuz-*` and `lib/modules/<version>/`)
//! with its virtio modules; plus an initramfs built here from busybox-static.
//! Its `/init` prints `MARK ...` lines on the serial console, does what
//! markers on the kernel command line ask (`guestip=`, else the address of
//! banger's `ip=`, configures eth0 and serves HTTP on port 8000 with busybox
//! `httpd`), and powers off when the ACPI power button is pressed.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

pub const CI_KERNEL_CACHE: &str = "/var/cache/banger-ci/kernel";

/// Where `.ci/run` caches banger's microVM kernel (`<key>/bzImage`).
pub const CI_MICROVM_KERNEL_CACHE: &str = "/var/cache/banger-ci/microvm-kernel";

/// The guest's `/init`. Markers on the kernel command line choose what it does.
pub const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_mmio virtio_blk failover net_failover virtio_net button evdev; do
  insmod /mods/$m.ko 2>/dev/null
done
arg() { for a in $(cat /proc/cmdline); do case "$a" in "$1"=*) echo "${a#*=}";; esac; done; }
wait_for() { i=0; while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done; }
echo "MARK boot $(arg mark)"
echo "MARK cmdline $(cat /proc/cmdline)"
n=$(arg disks)
if [ -n "$n" ]; then
  wait_for /sys/block/vda
  [ "$n" -gt 1 ] && wait_for /sys/block/vdb
  for d in /sys/block/vd*; do
    d=${d##*/}
    echo "MARK disk $d ro=$(cat /sys/block/$d/ro) head=$(head -c 8 /dev/$d)"
    if printf W | dd of=/dev/$d bs=1 count=1 conv=notrunc 2>/dev/null; then
      sync; echo "MARK write $d ok"
    else
      echo "MARK write $d refused"
    fi
  done
fi
addr=$(arg guestip)
if [ -z "$addr" ]; then ipa=$(arg ip); addr=${ipa%%:*}; fi
if [ -n "$addr" ]; then
  wait_for /sys/class/net/eth0
  ifconfig eth0 "$addr" netmask 255.255.255.0 up
  echo "MARK mac $(cat /sys/class/net/eth0/address)"
  mkdir -p /www && echo "banger guest service" > /www/index.html
  httpd -p 8000 -h /www && echo "MARK httpd"
fi
for e in /sys/class/input/event*; do
  if [ "$(cat $e/device/name 2>/dev/null)" = "Power Button" ]; then
    (head -c 1 /dev/input/${e##*/} >/dev/null; echo "MARK power button"; poweroff -f) &
  fi
done
if [ -n "$(arg ticker)" ]; then
  mkdir -p /dev/shm && echo "$(arg ticker)" > /dev/shm/kept
  (i=0; while true; do i=$((i+1)); echo "MARK tick $i $(cat /dev/shm/kept)"; sleep 1; done) &
fi
echo "MARK ready"
while true; do sleep 1; done
"#;

/// The kernel and modules the guest boots with (`modules`: `None` for
/// banger's microVM kernel, which has everything built in).
pub struct Kernel {
    pub image: PathBuf,
    pub modules: Option<PathBuf>,
}

/// banger's microVM kernel: `BANGER_TEST_MICROVM_KERNEL`, else the newest
/// entry of the CI cache.
pub fn microvm_kernel() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("BANGER_TEST_MICROVM_KERNEL") {
        return Some(PathBuf::from(k)).filter(|p| p.is_file());
    }
    fs::read_dir(CI_MICROVM_KERNEL_CACHE)
        .ok()?
        .flatten()
        .map(|e| e.path().join("bzImage"))
        .filter(|p| p.is_file())
        .max_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
}

/// The guest kernel: banger's microVM kernel when built, else Debian's.
pub fn find_kernel() -> Result<Kernel, String> {
    if let Some(image) = microvm_kernel() {
        return Ok(Kernel {
            image,
            modules: None,
        });
    }
    find_debian_kernel()
}

/// Debian's cloud kernel and its modules.
pub fn find_debian_kernel() -> Result<Kernel, String> {
    let dir = std::env::var_os("BANGER_TEST_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(CI_KERNEL_CACHE));
    let image = fs::read_dir(dir.join("boot"))
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| {
            format!(
                "no guest kernel: set BANGER_TEST_KERNEL_DIR to an unpacked linux-image-cloud-amd64 (boot/vmlinuz-*, lib/modules/) or run .ci/run to fill {CI_KERNEL_CACHE} (looked in {})",
                dir.display()
            )
        })?;
    let version = image.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
    let modules = dir.join("lib/modules").join(&version).join("kernel");
    if !modules.is_dir() {
        return Err(format!("{} is missing", modules.display()));
    }
    Ok(Kernel {
        image,
        modules: Some(modules),
    })
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// What every test needs, or why it cannot run.
pub fn prerequisites() -> Result<(Kernel, PathBuf), String> {
    let kernel = find_kernel()?;
    which("qemu-system-x86_64")
        .ok_or("qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)")?;
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("busybox is not installed (apt-get install busybox-static)")?;
    Ok((kernel, busybox))
}

/// A cpio "newc" archive writer (the initramfs format).
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn new() -> Self {
        Self {
            out: Vec::new(),
            ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        let header = format!(
            "070701{:08X}{mode:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.ino,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        self.ino += 1;
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.out
    }
}

const MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "drivers/block/virtio_blk.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "drivers/acpi/button.ko",
    "drivers/input/evdev.ko",
];

pub fn build_initramfs(kernel: &Kernel, busybox: &Path, out: &Path) {
    let mut cpio = Cpio::new();
    for dir in ["bin", "dev", "proc", "sys", "mods"] {
        cpio.entry(dir, 0o040755, &[]);
    }
    cpio.entry("bin/busybox", 0o100755, &fs::read(busybox).unwrap());
    cpio.entry("init", 0o100755, INIT.as_bytes());
    for module in kernel
        .modules
        .iter()
        .flat_map(|m| MODULES.iter().map(move |x| (m, x)))
    {
        let (modules, module) = module;
        let path = modules.join(module);
        let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = Path::new(module).file_name().unwrap().to_string_lossy();
        cpio.entry(&format!("mods/{name}"), 0o100644, &data);
    }
    fs::write(out, cpio.finish()).unwrap();
}

/// PIDs whose parent is `pid` (a scan of /proc).
pub fn children(pid: u32) -> Vec<u32> {
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            fs::read_to_string(format!("/proc/{child}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The counters of the guest's ticker (`ticker=TEXT` on the kernel command
/// line: `MARK tick N TEXT` every second) in a console log.
pub fn ticks(console: &Path) -> Vec<u32> {
    fs::read_to_string(console)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim_end_matches('\r').strip_prefix("MARK tick "))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Waits up to `within` for a tick above `above` in `console`; returns it.
pub fn wait_tick(console: &Path, above: u32, within: std::time::Duration) -> Result<u32, String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(&t) = ticks(console).iter().find(|&&t| t > above) {
            return Ok(t);
        }
        if std::time::Instant::now() >= deadline {
            return Err(format!(
                "no tick above {above} in {} within {within:?}:\n{}",
                console.display(),
                fs::read_to_string(console).unwrap_or_default()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// [`front_daemon_with`] with the guest's ticker on (`ticker=kept-in-shm`,
/// also written to `/dev/shm`).
pub fn front_daemon(test: &str) -> Option<(crate::util::TestDaemon, crate::util::Fixtures)> {
    front_daemon_with(test, "console=ttyS0 reboot=k panic=1 ticker=kept-in-shm")
}

/// A `bangerd` whose VMM is `banger-fcqemu` (TCG), network off, readiness
/// `none`, 1 vCPU and 256 MiB per VM, `kernel_args` as given, with image
/// `busybox` registered: the initramfs guest. `None` (with the reason
/// printed) without a kernel, QEMU, busybox or mkfs.ext4.
pub fn front_daemon_with(
    test: &str,
    kernel_args: &str,
) -> Option<(crate::util::TestDaemon, crate::util::Fixtures)> {
    let (kernel, busybox) = match prerequisites() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIP {test}: {why}");
            return None;
        }
    };
    let fx = crate::util::Fixtures::new(test)?;
    let initrd = fx.dir.path().join("initrd.cpio");
    build_initramfs(&kernel, &busybox, &initrd);
    let dir = tempfile::Builder::new()
        .prefix("banger-test-")
        .tempdir()
        .unwrap();
    let config = format!(
        "firecracker_bin = {:?}\n[daemon]\nstop_timeout_secs = 60\nstats_interval_secs = 1\n\
         [vm]\nvcpus = 1\nmemory = \"256M\"\nkernel_args = {kernel_args:?}\n\
         [guest]\nreadiness = \"none\"\nsync_identity = false\n[network]\nenabled = false\n",
        env!("CARGO_BIN_EXE_banger-fcqemu")
    );
    fs::write(dir.path().join("config.toml"), config).unwrap();
    let mut d = crate::util::TestDaemon {
        dir,
        env: vec![("BANGER_QEMU_ACCEL".into(), "tcg".into())],
        child: None,
        launcher: Vec::new(),
        netns: None,
    };
    d.spawn();
    d.cli_ok(&[
        "image",
        "register",
        "busybox",
        "--rootfs",
        &fx.rootfs.display().to_string(),
        "--kernel",
        &kernel.image.display().to_string(),
        "--initrd",
        &initrd.display().to_string(),
    ]);
    Some((d, fx))
}
