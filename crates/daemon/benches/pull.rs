//! Pull + flatten benchmark: the same generated multi-layer image (≥ 200 MB
//! unpacked, tens of thousands of small files, gzip layers: umoci 0.4.7
//! cannot unpack zstd ones) pulled
//! from a local `docker-registry` on 127.0.0.1 by banger's `image.pull`
//! versus the usual pipeline `skopeo copy` + `umoci unpack` +
//! `mkfs.ext4 -d`, side by side from one run, as a ratio. Then the time to
//! create a VM root disk from a 2 GiB image with the copy fallback
//! (reflink where the filesystem has it, else a sparse copy).
//!
//! Run: `cargo bench -p banger-daemon --bench pull` (or `make bench-pull`).
//! Needs docker-registry, skopeo, umoci and e2fsprogs; run as root (umoci
//! unpack without --rootless).

#[path = "../tests/pull_util/mod.rs"]
mod pull_util;

use std::process::Command;
use std::time::{Duration, Instant};

use banger_api::OpState;
use pull_util::*;

const RUNS: usize = 3;

fn xorshift(seed: &mut u32) -> u32 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 17;
    *seed ^= *seed << 5;
    *seed
}

/// A layer of `files` files of 1..=`max` bytes under `dir`, half text-like
/// (compressible), half noise.
fn layer_tar(dir: &str, files: usize, max: usize, seed: u32) -> (Vec<u8>, u64) {
    let mut s = seed;
    let mut b = tar::Builder::new(Vec::new());
    let mut total = 0u64;
    for i in 0..files {
        let size = 1 + (xorshift(&mut s) as usize % max);
        let data: Vec<u8> = if i % 2 == 0 {
            (0..size)
                .map(|j| b"banger pulls images quickly\n"[j % 28])
                .collect()
        } else {
            (0..size).map(|_| xorshift(&mut s) as u8).collect()
        };
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size as u64);
        let path = format!("{dir}/d{:03}/f{i:06}", i % 500);
        b.append_data(&mut h, &path, data.as_slice()).unwrap();
        total += size as u64;
    }
    (b.into_inner().unwrap(), total)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let tools = ["docker-registry", "skopeo", "umoci", "mkfs.ext4", "debugfs"];
    if skip_without("pull benchmark", &tools) {
        return;
    }
    let reg = Registry::start();
    let reference = format!("{}/bench/many-files:1", reg.addr);
    eprintln!("generating the image…");
    let (l1, s1) = layer_tar("usr/share", 30_000, 6_000, 1);
    let (l2, s2) = layer_tar("usr/lib", 12_000, 12_000, 2);
    let (l3, s3) = layer_tar("opt/big", 60, 2_500_000, 3);
    let unpacked = s1 + s2 + s3;
    let diff_ids: Vec<String> = [&l1, &l2, &l3]
        .iter()
        .map(|l| {
            let mut h = banger_imagemgr::Hasher::new();
            h.update(l);
            h.finish().to_string()
        })
        .collect();
    let layers = vec![
        layer(gzip(&l1), OCI_GZ),
        // gzip everywhere: umoci 0.4.7 cannot unpack zstd layers.
        layer(gzip(&l2), OCI_GZ),
        layer(gzip(&l3), OCI_GZ),
    ];
    let compressed: usize = layers.iter().map(|l| l.data.len()).sum();
    push_with_diff_ids(&reference, layers, "amd64", false, &diff_ids).await;
    println!(
        "image: 3 gzip layers, 42060 files, {} MB unpacked, {} MB compressed",
        unpacked / 1_000_000,
        compressed / 1_000_000
    );
    assert!(unpacked >= 200_000_000, "image too small: {unpacked}");

    let mut ours = Vec::new();
    let mut peer = Vec::new();
    for i in 0..RUNS {
        // Ours: a fresh state dir each run, so nothing is cached.
        let svc = service();
        let t = Instant::now();
        let op = svc.pull(&reference, &format!("bench{i}"), None).await;
        ours.push(t.elapsed());
        assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
        let image_size = std::fs::metadata(svc.rootfs(&format!("bench{i}")))
            .unwrap()
            .len();

        // Peer: skopeo copy + umoci unpack + mkfs.ext4 -d, same image size.
        let d = tempfile::tempdir().unwrap();
        let layout = d.path().join("oci");
        let bundle = d.path().join("bundle");
        let img = d.path().join("root.ext4");
        let t = Instant::now();
        run(&[
            "skopeo",
            "copy",
            "-q",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:img", layout.display()),
        ]);
        run(&[
            "umoci",
            "unpack",
            "--image",
            &format!("{}:img", layout.display()),
            &bundle.display().to_string(),
        ]);
        run(&[
            "mkfs.ext4",
            "-q",
            "-F",
            // The default inode ratio is too low for this many small files.
            "-N",
            "65536",
            "-d",
            &bundle.join("rootfs").display().to_string(),
            &img.display().to_string(),
            &format!("{}k", image_size / 1024),
        ]);
        peer.push(t.elapsed());
        eprintln!("run {}: ours {:?}, peer {:?}", i + 1, ours[i], peer[i]);
    }
    let (o, p) = (median(ours), median(peer));
    println!(
        "pull+flatten (median of {RUNS}): banger {:.2} s | skopeo+umoci+mkfs.ext4 {:.2} s | banger is {:.2}x faster",
        o.as_secs_f64(),
        p.as_secs_f64(),
        p.as_secs_f64() / o.as_secs_f64()
    );

    // Root disk from a 2 GiB image (copy fallback).
    let d = tempfile::tempdir().unwrap();
    let base = d.path().join("base.ext4");
    let tree = d.path().join("tree");
    std::fs::create_dir_all(&tree).unwrap();
    let mut s = 7u32;
    for i in 0..400 {
        let data: Vec<u8> = (0..1_000_000).map(|_| xorshift(&mut s) as u8).collect();
        std::fs::write(tree.join(format!("blob{i}")), data).unwrap();
    }
    run(&[
        "mkfs.ext4",
        "-q",
        "-F",
        "-d",
        &tree.display().to_string(),
        &base.display().to_string(),
        "2G",
    ]);
    let mut times = Vec::new();
    let mut method = None;
    for i in 0..RUNS {
        let disk = d.path().join(format!("vm{i}.ext4"));
        let t = Instant::now();
        method = Some(banger_imagemgr::clone_or_copy(&base, &disk).unwrap());
        times.push(t.elapsed());
        std::fs::remove_file(&disk).unwrap();
    }
    println!(
        "root disk from a 2 GiB image (400 MB of data), copy fallback ({:?}): median {:.3} s",
        method.unwrap(),
        median(times).as_secs_f64()
    );
}
