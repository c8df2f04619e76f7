//! `image.pull` against a real registry (Debian's `docker-registry`, started
//! here on a free 127.0.0.1 port), with images this test builds and pushes:
//! the resulting ext4 is checked file by file with `debugfs` (no mount) and
//! `e2fsck -fn`; broken blobs, truncated layers and a dropped connection
//! fail cleanly and publish nothing.

mod pull_util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use banger_api::OpState;
use banger_testsupport::ext4::fsck_clean;
use pull_util::*;

const TOOLS: &[&str] = &["docker-registry", "mkfs.ext4", "debugfs", "e2fsck"];

fn base_layer() -> Vec<u8> {
    tar_bytes(&[
        E::Dir("etc", 0o755),
        E::File("etc/motd", 0o644, b"hello"),
        E::File("etc/keep", 0o644, b"keep"),
        E::Dir("var", 0o755),
        E::Dir("var/cache", 0o755),
        E::File("var/cache/old", 0o644, b"old"),
        E::Dir("bin", 0o755),
        E::File("bin/busybox", 0o755, b"\x7fELF fake busybox"),
        E::Sym("bin/sh", "busybox"),
        E::Hard("bin/ls", "bin/busybox"),
        E::Owned("usr/bin/su", 0o4755, 0, 0, b"su"),
        E::Owned("home/u/.profile", 0o600, 1000, 1000, b"p"),
        E::Dir("dev", 0o755),
        E::Char("dev/null", 1, 3),
        E::Xattr("usr/bin/ping", "security.capability", b"\x01\x00\x00\x02"),
        E::Xattr("usr/bin/tagged", "user.banger", b"yes"),
    ])
}

fn upper_layer() -> Vec<u8> {
    tar_bytes(&[
        E::File("etc/.wh.motd", 0o644, b""),
        E::Dir("var/cache", 0o755),
        E::File("var/cache/.wh..wh..opq", 0o644, b""),
        E::File("var/cache/new", 0o644, b"new"),
        E::File("etc/keep", 0o600, b"replaced"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_a_multi_layer_image_and_checks_every_file() {
    if skip_without("pulls_a_multi_layer_image_and_checks_every_file", TOOLS) {
        return;
    }
    let reg = Registry::start();
    let reference = format!("{}/test/multi:1", reg.addr);
    push(
        &reference,
        vec![
            layer(gzip(&base_layer()), OCI_GZ),
            layer(zstd(&upper_layer()), OCI_ZSTD),
        ],
        "amd64",
        false,
    )
    .await;
    let svc = service();
    let op = svc.pull(&reference, "multi", None).await;
    assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
    assert_eq!(op.kind, "image.pull");
    let image = svc.store.find_image("multi").unwrap().unwrap();
    assert!(
        image
            .source
            .starts_with(&format!("oci:{reference}@sha256:")),
        "{}",
        image.source
    );
    assert!(image.kernel_path.is_empty());
    let img = svc.rootfs("multi");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), image.size_bytes);
    fsck_clean(&img);

    assert!(dfs(&img, "stat /etc/motd").is_none(), "whiteout applied");
    assert_eq!(dfs(&img, "cat /etc/keep").unwrap(), "replaced");
    assert!(
        dfs(&img, "stat /var/cache/old").is_none(),
        "opaque dir emptied"
    );
    assert_eq!(dfs(&img, "cat /var/cache/new").unwrap(), "new");
    let sh = dfs(&img, "stat /bin/sh").unwrap();
    assert!(
        sh.contains("Type: symlink") && sh.contains("\"busybox\""),
        "{sh}"
    );
    let bb = dfs(&img, "stat /bin/busybox").unwrap();
    assert!(bb.contains("Links: 2"), "hardlink kept: {bb}");
    let su = dfs(&img, "stat /usr/bin/su").unwrap();
    assert!(su.contains("Mode:  04755"), "setuid kept: {su}");
    let prof = dfs(&img, "stat /home/u/.profile").unwrap();
    assert!(prof.contains("User:  1000   Group:  1000"), "{prof}");
    let null = dfs(&img, "stat /dev/null").unwrap();
    assert!(null.contains("Type: character special"), "{null}");
    assert!(null.contains("major/minor number: 01:03"), "{null}");
    assert!(
        dfs(&img, "ea_list /usr/bin/ping")
            .unwrap()
            .contains("security.capability")
    );
    assert!(
        dfs(&img, "ea_get /usr/bin/tagged user.banger")
            .unwrap()
            .contains("yes")
    );

    // The blobs are cached: with the registry's copies gone, a second pull
    // (same manifest) still succeeds without fetching them.
    let blobs = svc.state.join("blobs/sha256");
    let cached: Vec<_> = std::fs::read_dir(&blobs).unwrap().flatten().collect();
    assert_eq!(cached.len(), 2, "two layers cached");
    for c in &cached {
        let digest = format!("sha256:{}", c.file_name().to_string_lossy());
        std::fs::remove_file(reg.blob_file(&digest)).unwrap();
    }
    let again = svc.pull(&reference, "multi2", None).await;
    assert_eq!(again.state, OpState::Succeeded, "{:?}", again.error);
    // And the same content gives the same files.
    assert_eq!(
        dfs(&svc.rootfs("multi2"), "cat /etc/keep").unwrap(),
        "replaced"
    );

    // The name is checked before anything is fetched.
    let dup = svc.images.pull(banger_api::rpc::ImagePullParams {
        reference: reference.clone(),
        name: Some("multi".into()),
        kernel: None,
        platform: None,
        kernel_name: None,
    });
    assert!(dup.unwrap_err().to_string().contains("already exists"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_media_types_and_a_two_platform_manifest_list() {
    if skip_without("docker_media_types_and_a_two_platform_manifest_list", TOOLS) {
        return;
    }
    let reg = Registry::start();
    let amd = format!("{}/test/multiarch:amd64", reg.addr);
    let arm = format!("{}/test/multiarch:arm64", reg.addr);
    let amd_digest = push(
        &amd,
        vec![layer(
            gzip(&tar_bytes(&[E::File("etc/arch", 0o644, b"amd64")])),
            DOCKER_GZ,
        )],
        "amd64",
        true,
    )
    .await;
    let arm_digest = push(
        &arm,
        vec![layer(
            zstd(&tar_bytes(&[E::File("etc/arch", 0o644, b"arm64")])),
            OCI_ZSTD,
        )],
        "arm64",
        false,
    )
    .await;
    let list = format!("{}/test/multiarch:latest", reg.addr);
    let amd_size = {
        let r: oci_client::Reference = amd.parse().unwrap();
        let (raw, _) = client()
            .pull_manifest_raw(
                &r,
                &oci_client::secrets::RegistryAuth::Anonymous,
                &["application/vnd.docker.distribution.manifest.v2+json"],
            )
            .await
            .unwrap();
        raw.len() as i64
    };
    let arm_size = manifest_size(&arm).await;
    push_index(
        &list,
        &[
            (&amd_digest, "amd64", amd_size),
            (&arm_digest, "arm64", arm_size),
        ],
    )
    .await;

    let svc = service();
    let op = svc.pull(&list, "dflt", None).await;
    assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
    assert_eq!(dfs(&svc.rootfs("dflt"), "cat /etc/arch").unwrap(), "amd64");
    let op = svc.pull(&list, "arm", Some("linux/arm64")).await;
    assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
    assert_eq!(dfs(&svc.rootfs("arm"), "cat /etc/arch").unwrap(), "arm64");
    fsck_clean(&svc.rootfs("arm"));

    let msg = svc.pull_fails(&list, "s390", Some("linux/s390x")).await;
    assert!(
        msg.contains("manifest") && msg.contains("linux/s390x"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_truncated_blobs_publish_nothing() {
    if skip_without("corrupt_and_truncated_blobs_publish_nothing", TOOLS) {
        return;
    }
    let reg = Registry::start();
    let svc = service();

    // A blob corrupted in the registry's storage: the digest check catches it.
    let corrupt = format!("{}/test/corrupt:1", reg.addr);
    let good = gzip(&tar_bytes(&[E::File("a", 0o644, &[5u8; 4096])]));
    let digest =
        oci_client::client::ImageLayer::new(good.clone(), OCI_GZ.into(), None).sha256_digest();
    push(&corrupt, vec![layer(good.clone(), OCI_GZ)], "amd64", false).await;
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(reg.blob_file(&digest), &bad).unwrap();
    let msg = svc.pull_fails(&corrupt, "corrupt", None).await;
    assert!(msg.contains("digest") && msg.contains(&digest), "{msg}");
    let hex = digest.trim_start_matches("sha256:");
    assert!(
        !svc.state.join("blobs/sha256").join(hex).exists(),
        "bad blob not cached"
    );

    // A truncated gzip layer whose digest matches its (truncated) bytes.
    let trunc = format!("{}/test/trunc:1", reg.addr);
    let mut cut = gzip(&tar_bytes(&[E::File("big", 0o644, &vec![3u8; 200_000])]));
    cut.truncate(cut.len() / 2);
    push(&trunc, vec![layer(cut, OCI_GZ)], "amd64", false).await;
    let msg = svc.pull_fails(&trunc, "trunc", None).await;
    assert!(msg.contains("layer sha256:"), "{msg}");

    // A hostile layer that writes through a symlink.
    let hostile = format!("{}/test/hostile:1", reg.addr);
    let evil = tar_bytes(&[
        E::Sym("etc", "/tmp"),
        E::File("etc/banger-escape", 0o644, b"x"),
    ]);
    push(&hostile, vec![layer(gzip(&evil), OCI_GZ)], "amd64", false).await;
    let msg = svc.pull_fails(&hostile, "hostile", None).await;
    assert!(msg.contains("symlink"), "{msg}");
    assert!(!std::path::Path::new("/tmp/banger-escape").exists());

    // A missing repository: a clear error, nothing published.
    let msg = svc
        .pull_fails(&format!("{}/test/absent:1", reg.addr), "absent", None)
        .await;
    assert!(msg.contains("cannot fetch the manifest"), "{msg}");
}

/// A registry that cuts the first blob download in half, then serves the
/// rest to a range request.
struct Flaky {
    addr: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve_conn(
    mut conn: std::net::TcpStream,
    log: &Mutex<Vec<String>>,
    blob_requests: &std::sync::atomic::AtomicUsize,
    manifest: &[u8],
    config: &(String, Vec<u8>),
    blob: &(String, Vec<u8>),
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut range = None;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("range: bytes=") {
                range = v.trim().trim_end_matches('-').parse::<usize>().ok();
            }
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        log.lock().unwrap().push(format!("{path} range={range:?}"));
        let octets = "application/octet-stream";
        let (status, ctype, body, cut): (&str, &str, Vec<u8>, bool) = if path == "/v2/" {
            ("200 OK", "application/json", b"{}".to_vec(), false)
        } else if path.contains("/manifests/") {
            (
                "200 OK",
                "application/vnd.oci.image.manifest.v1+json",
                manifest.to_vec(),
                false,
            )
        } else if path.ends_with(&config.0) {
            ("200 OK", octets, config.1.clone(), false)
        } else if path.ends_with(&blob.0) {
            let first = blob_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            match range {
                Some(from) => (
                    "206 Partial Content",
                    octets,
                    blob.1[from..].to_vec(),
                    false,
                ),
                None => ("200 OK", octets, blob.1.clone(), first),
            }
        } else {
            ("404 Not Found", "application/json", b"{}".to_vec(), false)
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let _ = conn.write_all(head.as_bytes());
        if cut {
            let _ = conn.write_all(&body[..body.len() / 2]);
            let _ = conn.flush();
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        }
        let _ = conn.write_all(&body);
    }
}

fn flaky_registry(manifest: Vec<u8>, config: (String, Vec<u8>), blob: (String, Vec<u8>)) -> Flaky {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    let blob_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (manifest, config, blob) = (Arc::new(manifest), Arc::new(config), Arc::new(blob));
    std::thread::spawn(move || {
        // One thread per connection: the client may hold idle pooled
        // connections open while it opens a new one.
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (log, n) = (Arc::clone(&log), Arc::clone(&blob_requests));
            let (manifest, config, blob) = (
                Arc::clone(&manifest),
                Arc::clone(&config),
                Arc::clone(&blob),
            );
            std::thread::spawn(move || serve_conn(conn, &log, &n, &manifest, &config, &blob));
        }
    });
    Flaky { addr, requests }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_fails_cleanly_and_the_next_pull_resumes() {
    if skip_without(
        "a_dropped_connection_fails_cleanly_and_the_next_pull_resumes",
        &["mkfs.ext4", "debugfs"],
    ) {
        return;
    }
    let mut x = 0x2545_f491_u32;
    let content: Vec<u8> = (0..300_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    let blob = gzip(&tar_bytes(&[E::File("data", 0o644, &content)]));
    let layer_digest =
        oci_client::client::ImageLayer::new(blob.clone(), OCI_GZ.into(), None).sha256_digest();
    let (config_digest, config) = amd64_config();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": OCI_GZ, "digest": layer_digest, "size": blob.len()}],
    });
    let flaky = flaky_registry(
        serde_json::to_vec(&manifest).unwrap(),
        (config_digest, config),
        (layer_digest.clone(), blob.clone()),
    );
    let reference = format!("{}/test/flaky:1", flaky.addr);
    let svc = service();
    let msg = svc.pull_fails(&reference, "flaky", None).await;
    assert!(
        msg.contains("failed after") && msg.contains("pull again to resume"),
        "{msg}"
    );
    let hex = layer_digest.trim_start_matches("sha256:");
    let partial = svc.state.join(format!("blobs/sha256/{hex}.partial"));
    let kept = std::fs::metadata(&partial).unwrap().len();
    assert!(
        kept > 0 && (kept as usize) < blob.len(),
        "partial download kept: {kept}"
    );

    let op = svc.pull(&reference, "flaky", None).await;
    assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
    let requests = flaky.requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .any(|r| r.contains(hex) && r.contains(&format!("range=Some({kept})"))),
        "resumed with a range request: {requests:?}"
    );
    let img = svc.rootfs("flaky");
    let mut got = Vec::new();
    let out = std::process::Command::new("debugfs")
        .args(["-R", "cat /data"])
        .arg(&img)
        .output()
        .unwrap();
    out.stdout.as_slice().read_to_end(&mut got).unwrap();
    assert_eq!(got, content);
    fsck_clean(&img);
}

/// An image built by umoci (whose layer tars lack the end-of-archive
/// blocks) and pushed by skopeo, the usual tools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_built_by_umoci_and_pushed_by_skopeo() {
    let tools = [
        "docker-registry",
        "umoci",
        "skopeo",
        "mkfs.ext4",
        "debugfs",
        "e2fsck",
    ];
    if skip_without("an_image_built_by_umoci_and_pushed_by_skopeo", &tools) {
        return;
    }
    let reg = Registry::start();
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("etc/motd"), "hi").unwrap();
    std::fs::write(root.join("etc/keep"), "keep").unwrap();
    std::fs::write(root.join("bin/busybox"), "bb").unwrap();
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    let layout = t.path().join("oci");
    let img = format!("{}:img", layout.display());
    let run = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(t.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let etc = root.join("etc").display().to_string();
    let bin = root.join("bin").display().to_string();
    run(&["umoci", "init", "--layout", &layout.display().to_string()]);
    run(&["umoci", "new", "--image", &img]);
    run(&["umoci", "insert", "--image", &img, &etc, "/etc"]);
    run(&["umoci", "insert", "--image", &img, &bin, "/bin"]);
    run(&[
        "umoci",
        "insert",
        "--image",
        &img,
        "--whiteout",
        "/etc/motd",
    ]);
    let reference = format!("{}/test/umoci:1", reg.addr);
    run(&[
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{img}"),
        &format!("docker://{reference}"),
    ]);
    let svc = service();
    let op = svc.pull(&reference, "umoci", None).await;
    assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
    let rootfs = svc.rootfs("umoci");
    fsck_clean(&rootfs);
    assert!(
        dfs(&rootfs, "stat /etc/motd").is_none(),
        "umoci whiteout applied"
    );
    assert_eq!(dfs(&rootfs, "cat /etc/keep").unwrap(), "keep");
    assert!(
        dfs(&rootfs, "stat /bin/sh")
            .unwrap()
            .contains("Type: symlink")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_with_a_registered_kernel_name_links_it() {
    if skip_without("pull_with_a_registered_kernel_name_links_it", TOOLS) {
        return;
    }
    let reg = Registry::start();
    let reference = format!("{}/test/withkernel:1", reg.addr);
    push(
        &reference,
        vec![layer(gzip(&base_layer()), OCI_GZ)],
        "amd64",
        false,
    )
    .await;
    let svc = service();
    let kdir = svc.state.join("kernels/k1");
    std::fs::create_dir_all(&kdir).unwrap();
    let kfile = kdir.join("vmlinux");
    std::fs::write(&kfile, b"\x7fELF not really a kernel").unwrap();
    svc.store
        .insert_kernel(&banger_api::Kernel {
            id: "k1".into(),
            name: "six".into(),
            version: Some("6.1".into()),
            path: kfile.display().to_string(),
            sha256: "sha256:00".into(),
            created_at: 0,
            size_bytes: 0,
            source: "register:/x".into(),
        })
        .unwrap();
    let params = |kernel_name: &str| banger_api::rpc::ImagePullParams {
        reference: reference.clone(),
        name: Some("wk".into()),
        kernel: None,
        platform: None,
        kernel_name: Some(kernel_name.into()),
    };
    // An unknown kernel name is refused before anything is fetched.
    let err = svc.images.pull(params("nope")).unwrap_err().to_string();
    assert!(
        err.contains("no kernel named \"nope\"") && err.contains("banger kernel list"),
        "{err}"
    );
    assert!(svc.store.list_images().unwrap().is_empty());

    let op = svc.images.pull(params("six")).unwrap();
    let mut rx = svc.images.watch_op(&op.id).unwrap();
    let done = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        rx.wait_for(|o| o.0.state.is_done()),
    )
    .await
    .expect("pull finished in time")
    .unwrap()
    .0
    .clone();
    assert_eq!(done.state, OpState::Succeeded, "{:?}", done.error);
    let image = svc.store.find_image("wk").unwrap().unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&image.kernel_path).unwrap().ino(),
        std::fs::metadata(&kfile).unwrap().ino(),
        "the registered kernel is hard-linked"
    );
}

/// An amd64 image config with no layers, and its digest.
fn amd64_config() -> (String, Vec<u8>) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let cfg = oci_client::client::Config::new(
        config.clone(),
        "application/vnd.oci.image.config.v1+json".into(),
        None,
    );
    (cfg.sha256_digest(), config)
}

/// A registry whose blob is larger than its descriptor says: the download
/// stops at the declared size, fails naming it, and keeps nothing (no
/// cached blob, no partial file). A manifest declaring more than the disk
/// can hold is refused before any blob is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_larger_than_its_descriptor_is_refused() {
    let blob = zstd(&tar_bytes(&[E::File("data", 0o644, &vec![1u8; 1 << 20])]));
    let digest =
        oci_client::client::ImageLayer::new(blob.clone(), OCI_ZSTD.into(), None).sha256_digest();
    let (config_digest, config) = amd64_config();
    let declared = blob.len() / 4;
    let manifest = |size: u64| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_ZSTD, "digest": digest, "size": size}],
        }))
        .unwrap()
    };
    let reg = flaky_registry(
        manifest(declared as u64),
        (config_digest.clone(), config.clone()),
        (digest.clone(), blob.clone()),
    );
    let svc = service();
    let msg = svc
        .pull_fails(&format!("{}/test/big:1", reg.addr), "big", None)
        .await;
    assert!(
        msg.contains(&format!(
            "larger than the {declared} bytes its descriptor in the image manifest declares"
        )),
        "{msg}"
    );
    let left: Vec<_> = std::fs::read_dir(svc.state.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "nothing cached or partial: {left:?}");

    let reg = flaky_registry(manifest(1 << 62), (config_digest, config), (digest, blob));
    let msg = svc
        .pull_fails(&format!("{}/test/huge:1", reg.addr), "huge", None)
        .await;
    assert!(msg.contains("not enough free space"), "{msg}");
    assert!(
        !reg.requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.contains("/blobs/")),
        "no blob fetched"
    );
}

/// A manifest larger than 4 MiB is refused without being read whole, and
/// the pull publishes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_manifest_is_refused() {
    let mut manifest = br#"{"schemaVersion": 2, "layers": [], "pad": ""#.to_vec();
    manifest.resize(8 << 20, b' ');
    let reg = flaky_registry(
        manifest,
        ("sha256:00".into(), Vec::new()),
        ("sha256:11".into(), Vec::new()),
    );
    let svc = service();
    let msg = svc
        .pull_fails(&format!("{}/test/fat:1", reg.addr), "fat", None)
        .await;
    assert!(
        msg.contains("cannot fetch the manifest") && msg.contains("larger than 4194304 bytes"),
        "{msg}"
    );
}

/// A registry that streams an endless chunked manifest (no Content-Length):
/// the pull stops reading at the 4 MiB bound and fails cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_manifest_stream_is_cut_at_the_bound() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let counter = Arc::clone(&counter);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                if !line.contains("/manifests/") {
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                    return;
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                );
                let chunk = vec![b' '; 1 << 20];
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                // Until the client hangs up (or 1 GiB, as a backstop).
                for _ in 0..1024 {
                    if conn.write_all(&framed).is_err() {
                        return;
                    }
                    counter.fetch_add(framed.len() as u64, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    let svc = service();
    let msg = svc
        .pull_fails(&format!("{addr}/test/endless:1"), "endless", None)
        .await;
    assert!(msg.contains("larger than 4194304 bytes"), "{msg}");
    // The server stops once the client hangs up: far less than the backstop
    // (what socket buffers took is all that was sent past the bound).
    std::thread::sleep(std::time::Duration::from_millis(200));
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(sent < 64 << 20, "{sent} bytes sent");
}

/// A registry nobody listens on: a failure (exit 1), not a bad argument
/// (exit 2), and the connection error comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_registry_is_a_failure_with_its_cause_first() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let reference = format!("127.0.0.1:{port}/test/absent:1");
    let svc = service();
    let op = svc.pull(&reference, "absent", None).await;
    assert_eq!(op.state, OpState::Failed);
    svc.assert_nothing_published("absent");
    let err = op.error.expect("a failed operation says why");
    assert_eq!(
        err.kind,
        banger_api::ErrorKind::Unreachable,
        "{}",
        err.message
    );
    assert_eq!(err.kind.exit_code(), 1);
    assert!(
        err.message.to_lowercase().starts_with("connection refused"),
        "the cause comes first: {}",
        err.message
    );
    assert!(
        err.message
            .contains(&format!("cannot reach registry 127.0.0.1:{port}")),
        "{}",
        err.message
    );
    assert!(!err.message.contains("internal error"), "{}", err.message);
}
