//! `banger kernel check`: the FILE form on synthetic kernels, the NAME form
//! against the fake daemon, `--dot-config`, `--json`, and Debian's cloud kernel
//! from the CI cache when present.

use std::io::Write;
use std::path::Path;

use banger_api::{Kernel, Request};

use crate::output::Term;
use crate::testing::{FakeDaemon, ok};

fn full_config() -> String {
    banger_imagemgr::required_kernel_options()
        .map(|o| format!("CONFIG_{o}=y\n"))
        .collect()
}

/// A fake ELF vmlinux with `config` embedded between the IKCONFIG markers.
fn vmlinux(config: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(config.as_bytes()).unwrap();
    let gz = e.finish().unwrap();
    let mut d = b"\x7fELF\x02\x01\x01".to_vec();
    d.resize(4096, 0);
    d.extend_from_slice(b"IKCFG_ST");
    d.extend_from_slice(&gz);
    d.extend_from_slice(b"IKCFG_ED");
    d
}

fn banger(args: &[&str]) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let argv = std::iter::once("banger").chain(args.iter().copied());
    let code = crate::run(argv, &mut out, &mut err, Term::default());
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn write(dir: &Path, name: &str, data: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn file_with_full_config_passes() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "vmlinux", &vmlinux(&full_config()));
    let (code, out, err) = banger(&["kernel", "check", &f]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ACPI boot"), "{out}");
    assert!(out.contains("legacy boot"), "{out}");
    assert!(out.contains("  ok       CONFIG_ACPI"), "{out}");
    assert!(!out.contains("missing"), "{out}");
    assert!(out.contains("verdict: ACPI boot"), "{out}");
}

#[test]
fn file_missing_items_fails_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = full_config()
        .replace("CONFIG_ACPI=y\n", "# CONFIG_ACPI is not set\n")
        .replace("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n", "")
        .replace("CONFIG_VIRTIO_BLK=y", "CONFIG_VIRTIO_BLK=m");
    let f = write(dir.path(), "vmlinux", &vmlinux(&cfg));
    let (code, out, err) = banger(&["kernel", "check", &f]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("missing  CONFIG_ACPI "), "{out}");
    assert!(
        out.contains("missing  CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES"),
        "{out}"
    );
    assert!(out.contains("module   CONFIG_VIRTIO_BLK"), "{out}");
    assert!(err.contains("no boot profile is fully satisfied"), "{err}");

    // One profile satisfied is enough.
    let acpi_only = full_config().replace("CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES=y\n", "");
    let f = write(dir.path(), "acpi-only", &vmlinux(&acpi_only));
    let (code, out, err) = banger(&["kernel", "check", &f]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ACPI boot (Firecracker >= 1.8, x86_64): ready"),
        "{out}"
    );
}

#[test]
fn file_without_embedded_config_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
    elf.resize(4096, 0);
    let f = write(dir.path(), "vmlinux", &elf);
    let (code, out, err) = banger(&["kernel", "check", &f]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no embedded config"), "{err}");
    assert!(err.contains("CONFIG_IKCONFIG=y"), "{err}");

    let (code, _, err) = banger(&["kernel", "check", "/nonexistent/vmlinux"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read /nonexistent/vmlinux"), "{err}");
}

#[test]
fn dot_config_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = full_config().replace("CONFIG_PCI=y\n", "");
    let f = write(dir.path(), "config-6.1", cfg.as_bytes());
    let (code, out, err) = banger(&["kernel", "check", "--dot-config", "--json", &f]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["bootable"], true);
    assert_eq!(v["profiles"][0]["profile"], "acpi");
    assert_eq!(v["profiles"][0]["satisfied"], false);
    assert_eq!(v["profiles"][1]["satisfied"], true);
    let pci = v["profiles"][0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["option"] == "CONFIG_PCI")
        .unwrap();
    assert_eq!(pci["status"], "missing");

    let junk = write(dir.path(), "junk", b"hello\n");
    let (code, _, err) = banger(&["kernel", "check", "--dot-config", &junk]);
    assert_eq!(code, 1);
    assert!(err.contains("no CONFIG_ lines"), "{err}");
}

#[test]
fn name_is_resolved_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "vmlinux", &vmlinux(&full_config()));
    let daemon = FakeDaemon::start(move |r| match r {
        Request::KernelList => vec![ok(vec![Kernel {
            id: "k1".into(),
            name: "micro".into(),
            version: None,
            path: path.clone(),
            sha256: "00".into(),
            created_at: 0,
            size_bytes: 1,
            source: "register:x".into(),
        }])],
        other => panic!("unexpected {other:?}"),
    });
    let socket = daemon.socket.to_str().unwrap().to_string();
    let (code, out, err) = banger(&["--socket", &socket, "kernel", "check", "micro"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("/vmlinux"), "{out}");
    let (code, _, err) = banger(&["--socket", &socket, "kernel", "check", "nosuch"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no kernel named \"nosuch\""), "{err}");
}

/// Debian's cloud kernel from the CI cache, when present: the command gives
/// a clear answer and does not panic (its content is not asserted).
#[test]
fn debian_cloud_kernel_when_cached() {
    let dir = Path::new("/var/cache/banger-ci/kernel/boot");
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!(
            "SKIP debian_cloud_kernel_when_cached: {} absent",
            dir.display()
        );
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let p = p.to_str().unwrap();
        let args: Vec<&str> = if name.starts_with("vmlinuz-") {
            vec!["kernel", "check", p]
        } else if name.starts_with("config-") {
            vec!["kernel", "check", "--dot-config", p]
        } else {
            continue;
        };
        let (code, out, err) = banger(&args);
        eprintln!("banger {}: exit {code}\n{out}{err}", args.join(" "));
        assert!(code == 0 || code == 1, "{code}");
        assert!(!out.is_empty() || err.starts_with("error: "), "{err}");
    }
}
