//! `KernelService`: a bzImage (registered, or pulled from a catalog served on
//! 127.0.0.1 together with an initrd) becomes the vmlinux inside it; a bad
//! initrd digest registers nothing.

mod pull_util;

use std::sync::Arc;

use banger_daemon::config::Layout;
use banger_daemon::images::KernelService;
use banger_testsupport::http;
use pull_util::gzip;

/// A vmlinux and a bzImage wrapping it (gzip payload after the setup sectors).
fn bzimage() -> (Vec<u8>, Vec<u8>) {
    let mut vmlinux = b"\x7fELF\x02\x01\x01".to_vec();
    vmlinux.resize(50_000, 7);
    let payload = gzip(&vmlinux);
    let mut bz = vec![0u8; 5 * 512];
    bz[0x1f1] = 4;
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    bz[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
    bz[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
    bz[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bz.extend_from_slice(&[0x90; 16]);
    bz.extend_from_slice(&payload);
    (vmlinux, bz)
}

fn hex(b: &[u8]) -> String {
    let t = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(t.path(), b).unwrap();
    banger_imagemgr::sha256_file(t.path())
        .unwrap()
        .hex()
        .to_string()
}

fn service(dir: &std::path::Path, catalog: Option<std::path::PathBuf>) -> KernelService {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let store = Arc::new(banger_store::Store::open(state.join("banger.db")).unwrap());
    let layout = Layout {
        config_file: dir.join("config.toml"),
        state_dir: state,
        runtime_dir: dir.join("run"),
    };
    KernelService::new(store, layout, catalog)
}

#[tokio::test]
async fn register_extracts_the_vmlinux_of_a_bzimage() {
    let t = tempfile::tempdir().unwrap();
    let (vmlinux, bz) = bzimage();
    let f = t.path().join("bzImage");
    std::fs::write(&f, &bz).unwrap();
    let svc = service(t.path(), None);
    let k = svc
        .register("bz", &f.display().to_string(), Some("6.6".into()))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&k.path).unwrap(), vmlinux);
    assert_eq!(k.sha256, hex(&vmlinux));
    assert_eq!(svc.list().unwrap()[0].size_bytes, vmlinux.len() as u64);
    // Relative paths and missing files are refused; nothing registered.
    assert!(svc.register("rel", "bzImage", None).await.is_err());
    assert!(svc.register("x", "/nonexistent/k", None).await.is_err());
    assert_eq!(svc.list().unwrap().len(), 1);
}

#[tokio::test]
async fn pull_of_a_bzimage_with_initrd_and_a_bad_initrd_digest() {
    let t = tempfile::tempdir().unwrap();
    let (vmlinux, bz) = bzimage();
    let initrd = b"initrd-bytes".to_vec();
    let port = http::serve_files(vec![("/bz", bz.clone()), ("/initrd", initrd.clone())]).port();
    let catalog = t.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "[[kernel]]\nname='ok'\nversion='6.6'\nurl='http://127.0.0.1:{port}/bz'\nsha256='{bz}'\n\
             initrd_url='http://127.0.0.1:{port}/initrd'\ninitrd_sha256='{ird}'\n\
             [[kernel]]\nname='badinitrd'\nversion='6.6'\nurl='http://127.0.0.1:{port}/bz'\nsha256='{bz}'\n\
             initrd_url='http://127.0.0.1:{port}/initrd'\ninitrd_sha256='{zero}'\n",
            bz = hex(&bz),
            ird = hex(&initrd),
            zero = "0".repeat(64),
        ),
    )
    .unwrap();
    let svc = service(t.path(), Some(catalog));
    let k = svc.pull("ok").await.unwrap();
    assert_eq!(std::fs::read(&k.path).unwrap(), vmlinux);
    let dir = std::path::Path::new(&k.path).parent().unwrap();
    assert_eq!(std::fs::read(dir.join("initrd")).unwrap(), initrd);
    assert!(!dir.join("download").exists());
    assert_eq!(k.source, format!("catalog:http://127.0.0.1:{port}/bz"));

    let e = svc.pull("badinitrd").await.unwrap_err().to_string();
    assert!(e.contains("/initrd") && e.contains("sha256"), "{e}");
    assert_eq!(svc.list().unwrap().len(), 1);
    let left: Vec<_> = std::fs::read_dir(t.path().join("state/kernels"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left.len(), 1, "no staging left: {left:?}");
}

#[tokio::test]
async fn pull_refuses_a_download_declared_larger_than_a_kernel() {
    let t = tempfile::tempdir().unwrap();
    // A server that declares 1 GiB and then sends a few bytes: refused on
    // the declared length, before anything is written.
    let port = http::serve(|_| Some(http::Response::declaring(1 << 30, "xxxx"))).port();
    let catalog = t.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "[[kernel]]\nname='huge'\nversion='6.6'\nurl='http://127.0.0.1:{port}/bz'\nsha256='{}'\n",
            "0".repeat(64)
        ),
    )
    .unwrap();
    let svc = service(t.path(), Some(catalog));
    let e = svc.pull("huge").await.unwrap_err().to_string();
    assert!(e.contains("larger than") && e.contains("at most"), "{e}");
    assert!(svc.list().unwrap().is_empty());
    let left = std::fs::read_dir(t.path().join("state/kernels"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "no staging left");
}
