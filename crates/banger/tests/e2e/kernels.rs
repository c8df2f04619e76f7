//! End-to-end: the kernel catalog and `image promote` through the `banger`
//! CLI and a real `bangerd` (simulator as firecracker). The catalog's URLs
//! point at a tiny HTTP server on 127.0.0.1 started by the test.

use crate::util;

use banger_api::{Image, Kernel, VmState};
use banger_testsupport::http::serve_files;
use util::{Fixtures, TestDaemon, fake_vmlinux};

fn hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x");
    std::fs::write(&f, bytes).unwrap();
    banger_imagemgr::sha256_file(&f).unwrap().hex().to_string()
}

/// A daemon whose config names `catalog` as its kernel catalog.
fn daemon_with_catalog(catalog: &std::path::Path) -> TestDaemon {
    let mut d = TestDaemon::start(&[]);
    d.kill_hard();
    let cfg = d.dir.path().join("config.toml");
    let old = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        format!(
            "kernel_catalog = {:?}\n{old}",
            catalog.display().to_string()
        ),
    )
    .unwrap();
    d.spawn();
    d
}

#[test]
fn kernel_catalog_pull_register_delete_through_the_cli() {
    let Some(fx) = Fixtures::new("kernel_catalog_pull_register_delete_through_the_cli") else {
        return;
    };
    let good = fake_vmlinux();
    let port = serve_files(vec![
        ("/vmlinux-good", good.clone()),
        ("/vmlinux-bad", good.clone()),
    ])
    .port();
    let catalog = fx.dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "[[kernel]]\nname = \"good\"\nversion = \"6.1.1\"\nurl = \"http://127.0.0.1:{port}/vmlinux-good\"\nsha256 = \"{}\"\n\n\
             [[kernel]]\nname = \"bad\"\nversion = \"6.1.2\"\nurl = \"http://127.0.0.1:{port}/vmlinux-bad\"\nsha256 = \"{}\"\n\n\
             [[kernel]]\nname = \"gone\"\nversion = \"6.1.3\"\nurl = \"http://127.0.0.1:{port}/missing\"\nsha256 = \"{}\"\n",
            hex(&good),
            "0".repeat(64),
            hex(&good),
        ),
    )
    .unwrap();
    let d = daemon_with_catalog(&catalog);

    // Pull: downloaded, verified, registered.
    let k: Kernel = d.cli_json(&["kernel", "pull", "good"]);
    assert_eq!(k.name, "good");
    assert_eq!(k.version.as_deref(), Some("6.1.1"));
    assert_eq!(k.sha256, hex(&good));
    assert_eq!(k.size_bytes, good.len() as u64);
    assert!(k.source.contains("/vmlinux-good"), "{}", k.source);
    assert_eq!(std::fs::read(&k.path).unwrap(), good);
    let again = d.cli(&["kernel", "pull", "good"]);
    assert_eq!(again.status.code(), Some(4), "name taken");

    // A digest mismatch and a 404: clear errors, nothing registered or left.
    let bad = d.cli(&["kernel", "pull", "bad"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("sha256") && err.contains("nothing was registered"),
        "{err}"
    );
    let gone = d.cli(&["kernel", "pull", "gone"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("404"));
    let unknown = d.cli(&["kernel", "pull", "nope"]);
    assert_eq!(unknown.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("good"));
    let ks: Vec<Kernel> = d.cli_json(&["kernel", "list"]);
    assert_eq!(ks.len(), 1);
    let kdir: Vec<String> = util::list_dir(&d.state_dir().join("kernels"));
    assert_eq!(kdir, vec![k.id.clone()], "no staging left behind");

    // Register a local file; the table shows name, version, size, sha, source.
    let local: Kernel = d.cli_json(&[
        "kernel",
        "register",
        "local",
        &fx.kernel.display().to_string(),
        "--kernel-version",
        "5.10",
    ]);
    assert!(local.source.starts_with("register:"), "{}", local.source);
    let table = d.cli_ok(&["kernel", "list"]);
    for s in [
        "NAME", "VERSION", "SIZE", "SHA256", "SOURCE", "good", "local", "5.10",
    ] {
        assert!(table.contains(s), "{s} missing in\n{table}");
    }
    let not_elf = fx.dir.path().join("notes.txt");
    std::fs::write(&not_elf, "hello").unwrap();
    let refused = d.cli(&["kernel", "register", "junk", &not_elf.display().to_string()]);
    assert!(!refused.status.success());

    // An image using the kernel by name pins it.
    let img: Image = d.cli_json(&[
        "image",
        "register",
        "withk",
        "--rootfs",
        &fx.rootfs.display().to_string(),
        "--kernel-name",
        "good",
    ]);
    assert_eq!(std::fs::read(&img.kernel_path).unwrap(), good);
    let pinned = d.cli(&["kernel", "delete", "good"]);
    assert_eq!(pinned.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&pinned.stderr).contains("withk"));
    d.cli_ok(&["image", "delete", "withk"]);
    let out = d.cli_ok(&["kernel", "delete", "good"]);
    assert!(out.contains("deleted kernel good"), "{out}");
    assert!(!std::path::Path::new(&k.path).exists());
    let ks: Vec<Kernel> = d.cli_json(&["kernel", "list"]);
    assert_eq!(ks.len(), 1);
}

#[test]
fn image_promote_through_the_cli() {
    let Some(fx) = Fixtures::new("image_promote_through_the_cli") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    let base = d.register_image(&fx, "base");
    d.create("dev", "base").unwrap();
    d.wait_state("dev", VmState::Running, 20);

    let running = d.cli(&["image", "promote", "dev", "snap"]);
    assert_eq!(running.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&running.stderr).contains("stop it first"));

    d.cli_ok(&["vm", "stop", "dev"]);
    d.wait_state("dev", VmState::Stopped, 20);
    let disk = d
        .state_dir()
        .join("vms")
        .join(d.vm("dev").unwrap().id)
        .join("root.ext4");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .and_then(|mut f| {
            use std::io::{Seek, SeekFrom, Write};
            f.seek(SeekFrom::Start(2 * 1024 * 1024))?;
            f.write_all(b"promoted-marker")
        })
        .unwrap();
    let snap: Image = d.cli_json(&["image", "promote", "dev", "snap"]);
    assert_eq!(snap.name, "snap");
    assert_eq!(snap.source, "promote:dev");
    assert_eq!(
        std::fs::read(&snap.rootfs_path).unwrap(),
        std::fs::read(&disk).unwrap()
    );
    assert_eq!(
        std::fs::read(&snap.kernel_path).unwrap(),
        std::fs::read(&base.kernel_path).unwrap()
    );
    let taken = d.cli(&["image", "promote", "dev", "snap"]);
    assert_eq!(taken.status.code(), Some(4));
    // The promoted image boots a new VM.
    d.create("child", "snap").unwrap();
    d.wait_state("child", VmState::Running, 20);
    let images: Vec<Image> = d.cli_json(&["image", "list"]);
    assert_eq!(images.len(), 2);
}

/// `kernel build` refuses a taken or invalid name before any work (no
/// operation starts), and `image build --kernel-name` refuses an unknown
/// kernel before any bootstrap.
#[test]
fn kernel_build_and_image_build_kernel_choice_refusals() {
    let Some(fx) = Fixtures::new("kernel_build_and_image_build_kernel_choice_refusals") else {
        return;
    };
    let d = TestDaemon::start(&[]);
    d.cli_ok(&[
        "kernel",
        "register",
        "microvm",
        &fx.kernel.display().to_string(),
    ]);
    let taken = d.cli(&["kernel", "build"]);
    let err = String::from_utf8_lossy(&taken.stderr).into_owned();
    assert_eq!(taken.status.code(), Some(4), "{err}");
    assert!(err.contains("\"microvm\" already exists"), "{err}");
    let bad = d.cli(&["kernel", "build", "--name", "a/b"]);
    assert_eq!(bad.status.code(), Some(2));
    let ops = d.cli_ok(&["operation", "list"]);
    assert!(!ops.contains("kernel.build"), "{ops}");

    let unknown = d.cli(&["image", "build", "--kernel-name", "nosuch"]);
    let err = String::from_utf8_lossy(&unknown.stderr).into_owned();
    assert_eq!(unknown.status.code(), Some(3), "{err}");
    assert!(err.contains("no kernel named \"nosuch\""), "{err}");
    let both = d.cli(&[
        "image",
        "build",
        "--kernel-name",
        "microvm",
        "--debian-kernel",
    ]);
    assert_eq!(both.status.code(), Some(2));
    let ops = d.cli_ok(&["operation", "list"]);
    assert!(!ops.contains("image.build"), "{ops}");
}
