//! Bundles: export-bundle, then pull of the file (and of a URL on
//! 127.0.0.1) gives an identical image; tampered bundles publish nothing.

mod pull_util;

use banger_api::OpState;
use banger_api::rpc::{ImageExportBundleParams, ImageRegisterParams};
use banger_testsupport::ext4::Mkfs;
use banger_testsupport::{http, skip};
use pull_util::*;

fn sha(p: &str) -> String {
    banger_imagemgr::sha256_file(std::path::Path::new(p))
        .unwrap()
        .to_string()
}

/// Serve `body` at any path on 127.0.0.1.
fn serve_body(body: Vec<u8>) -> std::net::SocketAddr {
    http::serve(move |_| Some(http::Response::ok(body.clone())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_pull_gives_an_identical_image() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs.ext4");
    if let Err(why) = Mkfs::new()
        .file("etc/hostname", "bundled\n")
        .build(&rootfs, "32M")
    {
        skip!("export_then_pull_gives_an_identical_image", "{why}");
    }
    let kernel = t.path().join("vmlinux");
    std::fs::write(&kernel, b"\x7fELF\x02\x01\x01 a pretend kernel").unwrap();

    let svc = service();
    let orig = svc
        .images
        .register(ImageRegisterParams {
            name: "orig".into(),
            rootfs: rootfs.display().to_string(),
            kernel: kernel.display().to_string(),
            initrd: None,
            kernel_name: None,
        })
        .await
        .unwrap();
    let bundle = t.path().join("orig.bundle.tar");
    let exported = svc
        .images
        .export_bundle(ImageExportBundleParams {
            name: "orig".into(),
            file: bundle.display().to_string(),
        })
        .await
        .unwrap();
    assert_eq!(exported.rootfs_sha256, sha(&orig.rootfs_path));
    // Never overwrites.
    let again = svc
        .images
        .export_bundle(ImageExportBundleParams {
            name: "orig".into(),
            file: bundle.display().to_string(),
        })
        .await;
    assert!(again.unwrap_err().to_string().contains("already exists"));

    // From the file.
    let op = svc.pull(&bundle.display().to_string(), "copy", None).await;
    assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
    let copy = svc.store.find_image("copy").unwrap().unwrap();
    assert_eq!(sha(&copy.rootfs_path), sha(&orig.rootfs_path));
    assert_eq!(sha(&copy.kernel_path), sha(&orig.kernel_path));
    assert_eq!(copy.size_bytes, orig.size_bytes);
    assert!(copy.source.starts_with("bundle:/"), "{}", copy.source);

    // From a URL.
    let addr = serve_body(std::fs::read(&bundle).unwrap());
    let op = svc
        .pull(&format!("http://{addr}/orig.bundle.tar"), "fromurl", None)
        .await;
    assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
    let u = svc.store.find_image("fromurl").unwrap().unwrap();
    assert_eq!(sha(&u.rootfs_path), sha(&orig.rootfs_path));

    // Tampered: one byte of the root filesystem flipped.
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    let bad = t.path().join("bad.tar");
    std::fs::write(&bad, &bytes).unwrap();
    let msg = svc
        .pull_fails(&bad.display().to_string(), "bad", None)
        .await;
    assert!(msg.contains("digest mismatch"), "{msg}");

    // Plain HTTP to a non-loopback host is refused up front.
    let e = svc
        .images
        .pull(banger_api::rpc::ImagePullParams {
            reference: "http://example.com/b.tar".into(),
            name: Some("x".into()),
            kernel: None,
            platform: None,
            kernel_name: None,
        })
        .unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
}

/// `image register` with a bzImage stores the extracted ELF vmlinux.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_turns_a_bzimage_into_a_vmlinux() {
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs.ext4");
    if let Err(why) = Mkfs::new().build(&rootfs, "16M") {
        skip!("register_turns_a_bzimage_into_a_vmlinux", "{why}");
    }
    let mut vmlinux = b"\x7fELF\x02\x01\x01".to_vec();
    vmlinux.resize(50_000, 7);
    // A bzImage: boot header, then a gzip payload after the setup sectors.
    let payload = gzip(&vmlinux);
    let mut bz = vec![0u8; 5 * 512];
    bz[0x1f1] = 4;
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    bz[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
    bz[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bz.extend_from_slice(&[0x90; 16]);
    bz.extend_from_slice(&payload);
    let kernel = t.path().join("bzImage");
    std::fs::write(&kernel, &bz).unwrap();

    let svc = service();
    let image = svc
        .images
        .register(ImageRegisterParams {
            name: "bz".into(),
            rootfs: rootfs.display().to_string(),
            kernel: kernel.display().to_string(),
            initrd: None,
            kernel_name: None,
        })
        .await
        .unwrap();
    assert_eq!(std::fs::read(&image.kernel_path).unwrap(), vmlinux);
}

/// A bundle bomb: a few KiB of zstd whose manifest declares a 1 MiB root
/// filesystem and whose tar carries 64 MiB. From a file and from a URL,
/// the import fails naming the member and its declared size, publishes
/// nothing and leaves no staging files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_bomb_stops_at_its_declared_size() {
    let t = tempfile::tempdir().unwrap();
    let manifest = serde_json::json!({
        "format": "banger-bundle/v1",
        "name": "bomb",
        "rootfs": {"path": "rootfs.ext4", "size": 1 << 20, "sha256": "00".repeat(32)},
    });
    let json = serde_json::to_vec(&manifest).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "manifest.json", json.as_slice())
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    b.append_data(
        &mut h,
        "rootfs.ext4",
        std::io::Read::take(std::io::repeat(0), 64 << 20),
    )
    .unwrap();
    let bomb = zstd::encode_all(b.into_inner().unwrap().as_slice(), 19).unwrap();
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let path = t.path().join("bomb.tar.zst");
    std::fs::write(&path, &bomb).unwrap();

    let svc = service();
    let addr = serve_body(bomb);
    for reference in [
        path.display().to_string(),
        format!("http://{addr}/bomb.tar.zst"),
    ] {
        let msg = svc.pull_fails(&reference, "bomb", None).await;
        assert!(
            msg.contains("member rootfs.ext4")
                && msg.contains("larger than the 1048576 bytes its manifest declares")
                && msg.contains("corrupt or hostile"),
            "{reference}: {msg}"
        );
    }
    // A download announcing more than the free space could ever unpack is
    // refused before its body is read.
    let huge = http::serve(|_| Some(http::Response::declaring(1 << 62, [0x28, 0xb5, 0x2f, 0xfd])));
    let msg = svc
        .pull_fails(&format!("http://{huge}/huge.tar.zst"), "bomb", None)
        .await;
    assert!(msg.contains("is longer than the"), "{msg}");
    // No downloaded copy either: the URL streamed into the reader.
    let images: Vec<_> = std::fs::read_dir(svc.state.join("images"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(images.is_empty(), "{images:?}");
}
