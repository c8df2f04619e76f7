//! `banger-guest init` in a real guest kernel without `IP_PNP` (Debian's
//! cloud kernel) under QEMU/TCG: a busybox initramfs loads the virtio
//! modules (the NIC driver a second late, as udev would), runs the static
//! agent's `init` with banger's `ip=` argument, and the guest then reaches
//! a TCP server on the host through the default route it set (QEMU
//! user-mode networking maps 10.0.2.2 to the host's loopback).
//!
//! Needs `qemu-system-x86_64`, a static `busybox` (busybox-static), `cpio`
//! and a kernel tree: `$BANGER_TEST_KERNEL_DIR` (default
//! `/var/cache/banger-ci/kernel`) holding `boot/vmlinuz-*` and
//! `lib/modules/<version>/kernel/…`, e.g. the extracted
//! `linux-image-cloud-amd64` package.

mod common;

use std::io::{Read, Write};

use banger_testsupport::skip;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// (vmlinuz, modules `kernel/` dir) of the kernel tree.
fn kernel() -> Result<(PathBuf, PathBuf), String> {
    let dir = std::env::var_os("BANGER_TEST_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/banger-ci/kernel"));
    let first = |d: &Path, prefix: &str| -> Option<PathBuf> {
        std::fs::read_dir(d)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
    };
    let vmlinuz = first(&dir.join("boot"), "vmlinuz-").ok_or_else(|| {
        format!(
            "no {}/boot/vmlinuz-* (set BANGER_TEST_KERNEL_DIR)",
            dir.display()
        )
    })?;
    let modules = first(&dir.join("lib/modules"), "")
        .map(|v| v.join("kernel"))
        .ok_or_else(|| format!("no {}/lib/modules/<version>", dir.display()))?;
    Ok((vmlinuz, modules))
}

fn find_module(root: &Path, name: &str) -> Option<PathBuf> {
    let want = format!("{name}.ko");
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()) == Some(&want) {
                return Some(p);
            }
        }
    }
    None
}

/// Every path under `root`, relative, parents first (for `cpio -o`).
fn listing(root: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(".")];
    while let Some(rel) = stack.pop() {
        out.extend_from_slice(rel.to_str().unwrap().as_bytes());
        out.push(b'\n');
        let abs = root.join(&rel);
        if abs.is_dir() && !abs.is_symlink() {
            for e in std::fs::read_dir(&abs).unwrap().flatten() {
                stack.push(rel.join(e.file_name()));
            }
        }
    }
    out
}

/// Modules in load order (dependencies first) for virtio-net-pci.
const MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
];

#[test]
fn init_configures_a_real_kernel_without_ip_pnp() {
    const T: &str = "init_configures_a_real_kernel_without_ip_pnp";
    let (vmlinuz, modules) = match kernel() {
        Ok(k) => k,
        Err(e) => skip!(T, "{e}"),
    };
    if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_err()
    {
        skip!(
            T,
            "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"
        );
    }
    if Command::new("cpio").arg("--version").output().is_err() {
        skip!(T, "cpio is not installed");
    }
    let busybox = match std::fs::read("/bin/busybox") {
        Ok(b) if banger_guest::is_static_elf(&b) => b,
        _ => skip!(T, "no static /bin/busybox (apt-get install busybox-static)"),
    };
    let agent = match common::static_agent() {
        Ok(a) => a,
        Err(e) => skip!(T, "{e}"),
    };

    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    for d in ["bin", "lib/mods", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("bin/busybox"), busybox).unwrap();
    std::fs::set_permissions(
        root.join("bin/busybox"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::copy(&agent, root.join("banger-guest")).unwrap();
    for m in MODULES.iter().chain(["virtio_net"].iter()) {
        let Some(p) = find_module(&modules, m) else {
            skip!(T, "module {m} not in {}", modules.display());
        };
        std::fs::copy(p, root.join(format!("lib/mods/{m}.ko"))).unwrap();
    }

    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut c in server.incoming().flatten() {
            let mut buf = [0u8; 256];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.0 200 OK\r\n\r\nreached-the-host\n");
        }
    });
    let init = format!(
        "#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
printf '127.0.0.1 localhost\\n127.0.1.1 debian\\n' > /etc/hosts
for m in {mods}; do insmod /lib/mods/$m.ko; done
(sleep 1; insmod /lib/mods/virtio_net.ko) &
/banger-guest init; echo \"INIT-RC $?\"
ip -4 -o addr; ip -4 route; echo \"HOSTNAME $(hostname)\"; cat /etc/resolv.conf /etc/hosts
printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 10.0.2.2 {port}
poweroff -f
",
        mods = MODULES.join(" "),
    );
    std::fs::write(root.join("init"), init).unwrap();
    std::fs::set_permissions(
        root.join("init"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let initrd = t.path().join("initrd.cpio");
    let mut cpio = Command::new("cpio")
        .args(["-o", "-H", "newc", "--quiet"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&initrd).unwrap())
        .spawn()
        .unwrap();
    cpio.stdin
        .take()
        .unwrap()
        .write_all(&listing(&root))
        .unwrap();
    assert!(cpio.wait().unwrap().success());

    let started = Instant::now();
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-M", "pc", "-accel", "tcg", "-m", "512", "-smp", "1"])
        .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .arg("-kernel")
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg("console=ttyS0 panic=-1 quiet loglevel=3 ip=10.0.2.15::10.0.2.2:255.255.255.0:agentvm:eth0:off:10.0.2.3")
        .args(["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = qemu.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    });
    while qemu.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(240) {
            let _ = qemu.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = qemu.wait();
    let console = reader.join().unwrap();
    let _ = writeln!(
        std::io::stderr(),
        "guest ran {:.1}s under TCG; console:\n{console}",
        started.elapsed().as_secs_f32()
    );
    assert!(
        console.contains("banger-guest: configured eth0: 10.0.2.15/24 via 10.0.2.2"),
        "{console}"
    );
    assert!(console.contains("INIT-RC 0"), "{console}");
    assert!(console.contains("inet 10.0.2.15/24"), "{console}");
    assert!(
        console.contains("default via 10.0.2.2 dev eth0"),
        "{console}"
    );
    assert!(console.contains("HOSTNAME agentvm"), "{console}");
    assert!(console.contains("nameserver 10.0.2.3"), "{console}");
    assert!(console.contains("127.0.1.1\tagentvm"), "{console}");
    assert!(!console.contains("127.0.1.1 debian"), "{console}");
    assert!(
        console.contains("reached-the-host"),
        "the default route works: {console}"
    );
}
