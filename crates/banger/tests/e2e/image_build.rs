//! `banger image build` through the CLI and a real `bangerd`: mmdebstrap of
//! Debian bookworm, the ext4 image checked file by file with debugfs, the
//! cache, clear errors, and a boot of the result under QEMU (TCG,
//! `-M microvm`) until systemd reaches the multi-user target.
//!
//! Needs root, mmdebstrap and the Debian mirror (the bootstrap is ~2 min on
//! a cold cache). The bootstrap tarball and an exported bundle of the image
//! are kept in `$BANGER_TEST_CACHE` (default `/var/tmp/banger-test-cache`)
//! so later runs and the end-to-end tests skip the bootstrap.

use crate::util;

use banger_testsupport::{in_path, skip};

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use banger_api::Image;
use util::debian::{link_all, mirror_reachable, test_cache};
use util::{TestDaemon, is_root, list_dir};

const NAME: &str = "debian-bookworm";

/// TCG on a loaded 2-core machine: the guest reaches its login prompt in
/// 15–45 s; leave room.
const BOOT_TIMEOUT_SECS: u64 = 300;

fn debugfs(image: &str, request: &str) -> (String, String) {
    let out = Command::new("debugfs")
        .args(["-R", request, image])
        .output()
        .expect("run debugfs");
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn exists(image: &str, path: &str) -> bool {
    let (out, err) = debugfs(image, &format!("stat \"{path}\""));
    !err.contains("File not found") && out.contains("Inode:")
}

/// `(permission bits, uid, gid)` from debugfs `stat`.
fn inode(image: &str, path: &str) -> (u32, u32, u32) {
    let (out, err) = debugfs(image, &format!("stat \"{path}\""));
    let field = |key: &str| -> u32 {
        let at = out
            .find(key)
            .unwrap_or_else(|| panic!("no {key} for {path}: {out}{err}"));
        let rest = out[at + key.len()..].trim_start();
        let tok: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        if key == "Mode:" {
            u32::from_str_radix(&tok, 8).unwrap()
        } else {
            tok.parse().unwrap()
        }
    };
    (field("Mode:"), field("User:"), field("Group:"))
}

#[test]
fn build_a_debian_image_check_it_and_boot_it() {
    const T: &str = "build_a_debian_image_check_it_and_boot_it";
    if !is_root() {
        skip!(T, "needs root (mmdebstrap's chroot mode)");
    }
    if !in_path("mmdebstrap") {
        skip!(
            T,
            "mmdebstrap is not installed (apt-get install mmdebstrap)"
        );
    }
    if !in_path("debugfs") {
        skip!(T, "debugfs is not installed (apt-get install e2fsprogs)");
    }
    if let Err(e) = mirror_reachable() {
        skip!(T, "the Debian mirror is not reachable: {e}");
    }
    let cache = test_cache();
    let d = TestDaemon::start(&[]);
    let state_cache = d.state_dir().join("cache/bootstrap");
    link_all(&cache.join("bootstrap"), &state_cache, ".tar");

    // 1. Build (a cold cache runs mmdebstrap).
    let t = Instant::now();
    let out = d.cli(&["image", "build", "--json"]);
    let first = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "build failed:\n{err}\nlog:\n{}",
        util::tail(&d.log(), 40)
    );
    let image: Image = serde_json::from_slice(&out.stdout).unwrap();
    let was_cached = err.contains("done (cached bootstrap");
    report(&format!(
        "first build ({}): {:.1} s; {}",
        if was_cached {
            "cached bootstrap"
        } else {
            "cold"
        },
        first.as_secs_f64(),
        err.lines().find(|l| l.starts_with("built ")).unwrap_or("?")
    ));
    assert_eq!(image.name, NAME);
    assert_eq!(image.source, "build:debian/bookworm");
    let initrd = image.initrd_path.clone().expect("an initrd");
    // Keep the bootstrap for the next run and the end-to-end tests, and
    // drop tarballs of older recipes (the daemon logs the key it used).
    util::debian::keep_bootstrap(&state_cache, &d.log());
    assert!(
        !list_dir(&state_cache)
            .iter()
            .any(|n| n.ends_with(".partial")),
        "no partial tarball is left"
    );

    // 2. The name is taken: refused at once, before any slow work.
    let t = Instant::now();
    let again = d.cli(&["image", "build"]);
    assert!(!again.status.success());
    let e = String::from_utf8_lossy(&again.stderr);
    assert!(
        e.contains("already exists") && e.contains("image delete"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));

    // 3. The image, file by file.
    let rootfs = image.rootfs_path.as_str();
    for path in [
        "/usr/sbin/sshd",
        "/usr/bin/ssh-keygen",
        "/usr/lib/systemd/systemd",
        "/usr/lib/systemd/systemd-udevd",
        "/usr/bin/udevadm",
        "/usr/bin/kmod",
        "/usr/bin/git",
        "/usr/bin/dbus-daemon",
        "/usr/bin/ip",
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/systemd/system/ssh.service.d/banger-host-keys.conf",
        "/sbin/init",
        "/dev/null",
    ] {
        assert!(exists(rootfs, path), "{path} is missing from the image");
    }
    let (fstab, _) = debugfs(rootfs, "cat /etc/fstab");
    assert!(fstab.contains("/dev/vda / ext4 rw,relatime 0 1"), "{fstab}");
    let (hostname, _) = debugfs(rootfs, "cat /etc/hostname");
    assert_eq!(hostname.trim(), "debian");
    let (ssh_dir, _) = debugfs(rootfs, "ls /etc/ssh");
    assert!(ssh_dir.contains("sshd_config"), "{ssh_dir}");
    assert!(
        !ssh_dir.contains("ssh_host_"),
        "host keys left in the image: {ssh_dir}"
    );
    let (shadow, _) = debugfs(rootfs, "cat /etc/shadow");
    assert!(
        shadow.lines().any(|l| l.starts_with("root:*:")),
        "root is not locked"
    );
    assert!(
        !exists(rootfs, "/etc/resolv.conf"),
        "the host's resolv.conf leaked in"
    );
    // Ownership and modes come from the tarball, not from the builder.
    // (debugfs shows permission and setuid bits, not the file type.)
    assert_eq!(inode(rootfs, "/etc/shadow"), (0o640, 0, 42));
    assert_eq!(inode(rootfs, "/usr/bin/passwd"), (0o4755, 0, 0));
    let (null, _) = debugfs(rootfs, "stat /dev/null");
    assert!(null.contains("Type: character special"), "{null}");
    banger_imagemgr::check_kernel(Path::new(&image.kernel_path)).expect("an ELF vmlinux");
    let head = std::fs::read(&initrd).unwrap();
    assert!(head.len() > 1 << 20, "initrd is {} bytes", head.len());
    banger_testsupport::ext4::fsck_clean(Path::new(rootfs));
    let allocated = std::fs::metadata(rootfs).map(|m| {
        use std::os::unix::fs::MetadataExt;
        m.blocks() * 512
    });
    report(&format!(
        "image: {} MiB apparent, {} MiB allocated; vmlinux {} MiB, initrd {} MiB",
        image.size_bytes >> 20,
        allocated.unwrap_or(0) >> 20,
        std::fs::metadata(&image.kernel_path).unwrap().len() >> 20,
        head.len() >> 20
    ));

    // 4. Export a bundle for the end-to-end tests (replaced atomically).
    let bundle = cache.join(format!("{NAME}.bundle.tar"));
    let tmp_bundle = cache.join(format!(".{NAME}.bundle.tar.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp_bundle);
    d.cli_ok(&[
        "image",
        "export-bundle",
        NAME,
        &tmp_bundle.display().to_string(),
    ]);
    std::fs::rename(&tmp_bundle, &bundle).unwrap();

    // 5. Boot a copy under QEMU until the multi-user target.
    let boot_dir = tempfile::tempdir().unwrap();
    let disk = boot_dir.path().join("disk.ext4");
    banger_imagemgr::clone_or_copy(Path::new(rootfs), &disk).unwrap();
    boot(T, &image.kernel_path, &initrd, &disk);

    // 6. Delete and build again: the cached bootstrap is used.
    d.cli_ok(&["image", "delete", NAME]);
    let t = Instant::now();
    let out = d.cli(&["image", "build", "--json"]);
    let cached = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "cached build failed:\n{err}");
    assert!(err.contains("done (cached bootstrap"), "{err}");
    report(&format!(
        "cached rebuild: {:.1} s; {}",
        cached.as_secs_f64(),
        err.lines().find(|l| l.starts_with("built ")).unwrap_or("?")
    ));

    // 7. An unreachable mirror: the operation fails with mmdebstrap's own
    // words and nothing is published or left behind.
    let port = banger_testsupport::free_port();
    let bad = d.cli(&[
        "image",
        "build",
        "--name",
        "nomirror",
        "--mirror",
        &format!("http://127.0.0.1:{port}/debian"),
    ]);
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(
        e.contains("image.build nomirror failed")
            && e.contains("mmdebstrap failed")
            && e.contains("mirror is reachable")
            && e.contains(&format!("127.0.0.1:{port}")),
        "{e}"
    );
    let images: Vec<Image> = d.cli_json(&["image", "list"]);
    assert_eq!(images.len(), 1, "{images:?}");
    assert!(
        !list_dir(&d.state_dir().join("images"))
            .iter()
            .any(|n| n.starts_with(".staging")),
        "a staging dir was left"
    );
    assert!(
        !list_dir(&state_cache)
            .iter()
            .any(|n| n.ends_with(".partial")),
        "a partial tarball was left"
    );
}

/// Boot under QEMU (`-M microvm`, TCG) and wait for the serial getty's
/// login prompt (part of the multi-user target); then check that sshd
/// started and that the first boot made SSH host keys.
fn boot(test: &str, kernel: &str, initrd: &str, disk: &Path) {
    if !in_path("qemu-system-x86_64") {
        skip!(test, "boot part: qemu-system-x86_64 is not installed");
    }
    let khz = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("cpu MHz")
                .and_then(|r| r.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .map(|mhz| (mhz * 1000.0) as u64)
        .expect("cpu MHz in /proc/cpuinfo");
    let append = format!("console=ttyS0 root=/dev/vda rw panic=-1 tsc_early_khz={khz}");
    let net = TestNet::new(test, disk);
    let mut cmd = match &net {
        Some(n) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &n.ns, "qemu-system-x86_64"]);
            c.args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"]);
            c.args([
                "-device",
                "virtio-net-device,netdev=n0,mac=52:54:00:12:34:56",
            ]);
            c
        }
        None => Command::new("qemu-system-x86_64"),
    };
    let t = Instant::now();
    let mut qemu = cmd
        .args(["-M", "microvm", "-accel", "tcg", "-cpu", "max", "-m", "512"])
        .args(["-smp", "2", "-nographic", "-no-reboot", "-kernel", kernel])
        .args(["-initrd", initrd, "-append", &append, "-drive"])
        .arg(format!("file={},if=none,format=raw,id=d0", disk.display()))
        .args(["-device", "virtio-blk-device,drive=d0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu");
    // Raw chunks, not lines: the login prompt ends without a newline.
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut stdout = qemu.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let deadline = t + Duration::from_secs(BOOT_TIMEOUT_SECS);
    let mut console = String::new();
    let (mut multi_user, mut login) = (None, None);
    while login.is_none() && Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(chunk) => {
                console.push_str(&String::from_utf8_lossy(&chunk));
                // systemd stops its status output once the serial getty
                // owns the console, so the target line may never show.
                if multi_user.is_none()
                    && console
                        .lines()
                        .any(|l| l.contains("Reached target") && l.contains("Multi-User"))
                {
                    multi_user = Some(t.elapsed());
                }
                if console.contains(" login: ") {
                    login = Some(t.elapsed());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(st)) = qemu.try_wait() {
                    panic!("qemu exited early ({st}); console:\n{console}");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let mut ssh_answer = None;
    if let (Some(n), Some(_)) = (&net, login) {
        ssh_answer = n.ssh_until(t, Duration::from_secs(90));
    }
    if login.is_some() {
        // The login prompt does not wait for sshd; give ssh.service's
        // key generation and ext4's 5 s commit interval time.
        std::thread::sleep(Duration::from_secs(if ssh_answer.is_some() {
            7
        } else {
            15
        }));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let Some(lg) = login else {
        panic!(
            "no login prompt on the serial console within {BOOT_TIMEOUT_SECS} s; console:\n{}",
            util::tail(&console, 60)
        );
    };
    report(&format!(
        "boot under TCG (microvm, -smp 2): multi-user target {}, login prompt (getty of multi-user) at {:.1} s",
        multi_user.map_or("not shown".to_string(), |d| format!(
            "at {:.1} s",
            d.as_secs_f64()
        )),
        lg.as_secs_f64()
    ));
    // systemd stops printing unit status once the serial getty owns the
    // console, so with a fast getty the ssh line may not show: an SSH answer
    // proves it too.
    assert!(
        console.contains("OpenBSD Secure Shell server") || ssh_answer.is_some(),
        "ssh.service did not start; console:\n{console}"
    );
    if let Some(n) = &net {
        let Some((at, out)) = ssh_answer else {
            panic!(
                "ssh to the guest never succeeded; last error: {}\nconsole:\n{}",
                n.last_error.borrow(),
                util::tail(&console, 40)
            );
        };
        report(&format!(
            "ssh root@guest (TAP in a netns, address from a test-only networkd file) answered at {:.1} s",
            at.as_secs_f64()
        ));
        assert!(out.starts_with("debian\n"), "{out}");
        assert!(out.contains("ssh-ed25519 "), "{out}");
    }
    let failed: Vec<&str> = console.lines().filter(|l| l.contains("FAILED")).collect();
    assert!(failed.is_empty(), "failed units:\n{}", failed.join("\n"));
    // The guest made its own host keys (journal replayed first).
    let fsck = Command::new("e2fsck")
        .arg("-fy")
        .arg(disk)
        .output()
        .unwrap();
    assert!(fsck.status.code().unwrap_or(8) < 4, "{fsck:?}");
    let (ssh_dir, _) = debugfs(&disk.display().to_string(), "ls /etc/ssh");
    assert!(
        ssh_dir.contains("ssh_host_ed25519_key"),
        "the first boot made no host keys: {ssh_dir}"
    );
}

/// A throwaway network namespace holding `tap0` (172.30.99.1/24) for the
/// guest, plus what the guest needs to answer SSH there: the test's key in
/// `/root/.ssh/authorized_keys` and a systemd-networkd file giving `eth0`
/// 172.30.99.2 — written into the test's copy of the disk only, never
/// into the image.
struct TestNet {
    ns: String,
    key: PathBuf,
    last_error: std::cell::RefCell<String>,
}

impl TestNet {
    fn new(test: &str, disk: &Path) -> Option<TestNet> {
        for tool in ["ip", "ssh", "ssh-keygen"] {
            if !in_path(tool) {
                skip!(return None; test, "network part of the boot: {tool} is not installed");
            }
        }
        let dir = disk.parent().unwrap();
        let key = dir.join("id_ed25519");
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh-keygen");
        let network = dir.join("10-test.network");
        std::fs::write(
            &network,
            "[Match]\nName=e*\n\n[Network]\nAddress=172.30.99.2/24\n",
        )
        .unwrap();
        let script = dir.join("seed.debugfs");
        // Seeding at publication already wrote banger's keys there.
        let disk_path = disk.display().to_string();
        let replace = if exists(&disk_path, "/root/.ssh/authorized_keys") {
            "rm /root/.ssh/authorized_keys\n"
        } else {
            ""
        };
        std::fs::write(
            &script,
            format!(
                "{replace}write {pubkey} /root/.ssh/authorized_keys\n\
                 set_inode_field /root/.ssh mode 040700\n\
                 set_inode_field /root/.ssh uid 0\n\
                 set_inode_field /root/.ssh gid 0\n\
                 set_inode_field /root/.ssh/authorized_keys mode 0100600\n\
                 set_inode_field /root/.ssh/authorized_keys uid 0\n\
                 set_inode_field /root/.ssh/authorized_keys gid 0\n\
                 write {network} /etc/systemd/network/10-test.network\n\
                 symlink /etc/systemd/system/multi-user.target.wants/systemd-networkd.service /lib/systemd/system/systemd-networkd.service\n",
                pubkey = key.with_extension("pub").display(),
                network = network.display(),
            ),
        )
        .unwrap();
        let out = Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script)
            .arg(disk)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = err.lines().filter(|l| !l.starts_with("debugfs ")).collect();
        assert!(errors.is_empty(), "seeding the disk copy: {errors:?}");
        let ns = format!("bimgb-{}", std::process::id());
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        ip(&["netns", "add", &ns]);
        let net = TestNet {
            ns: ns.clone(),
            key,
            last_error: Default::default(),
        };
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "tuntap", "add", "dev", "tap0", "mode", "tap"]);
        ip(&["-n", &ns, "addr", "add", "172.30.99.1/24", "dev", "tap0"]);
        ip(&["-n", &ns, "link", "set", "tap0", "up"]);
        Some(net)
    }

    /// Try `ssh root@172.30.99.2` for up to `limit`; returns when (since
    /// `start`, QEMU's start) it answered and what it printed.
    fn ssh_until(&self, start: Instant, limit: Duration) -> Option<(Duration, String)> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.ns, "ssh", "-i"])
                .arg(&self.key)
                .args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ])
                .args([
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "ConnectTimeout=3",
                    "-o",
                    "LogLevel=ERROR",
                ])
                .args([
                    "root@172.30.99.2",
                    "cat",
                    "/etc/hostname",
                    "/etc/ssh/ssh_host_ed25519_key.pub",
                ])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            if out.status.success() {
                return Some((
                    start.elapsed(),
                    String::from_utf8_lossy(&out.stdout).to_string(),
                ));
            }
            *self.last_error.borrow_mut() = String::from_utf8_lossy(&out.stderr).trim().to_string();
            std::thread::sleep(Duration::from_millis(500));
        }
        None
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A measured figure, printed past the test harness's capture.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "FIGURE image_build: {line}");
}

/// Without mmdebstrap the build is refused at once with the install hint
/// (needs neither root nor network).
#[test]
fn build_without_mmdebstrap_says_how_to_install_it() {
    let empty = tempfile::tempdir().unwrap();
    let path = empty.path().display().to_string();
    let d = TestDaemon::start(&[("PATH", &path)]);
    let out = d.cli(&["image", "build", "--no-cache"]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("apt install mmdebstrap"), "{e}");
    let images: Vec<Image> = d.cli_json(&["image", "list"]);
    assert!(images.is_empty());
    // Bad input is refused before anything starts.
    let bad = d.cli(&["image", "build", "--include", "vim;reboot"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid package name"));
}
