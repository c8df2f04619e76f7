//! Pull + flatten benchmark: the same generated multi-layer image (≥ 200 MB
//! unpacked, tens of thousands of small files, gzip layers: umoci 0.4.7
//! cannot unpack zstd ones) pulled
//! from a local `docker-registry` on 127.0.0.1 by banger's `image.pull`
//! versus the usual pipeline `skopeo copy` + `umoci raw unpack` (the
//! unpack without `umoci unpack`'s mtree manifest for `repack`) +
//! `mkfs.ext4 -d` with exactly our mkfs options (block size, inode size,
//! inode count, `lazy_itable_init`/`lazy_journal_init`, image size).
//!
//! `BANGER_BENCH_ROUNDS` rounds (default 5); who goes first alternates;
//! every run writes into a fresh directory after a `sync` and nothing is
//! deleted until the end (deleting a tree right before writing one slows
//! the writer). Each round's times and ratio, the medians, and the load
//! average before and after are printed. Both results are checked the same
//! way: `e2fsck -fn` every round, and in the first round a `debugfs rdump`
//! of both images compared file by file (path, type, mode, owner, size,
//! BLAKE3 of the content or link target).
//!
//! Not covered: a remote registry (loopback only), zstd layers, a warm
//! blob cache (ours starts from an empty state dir every round), the
//! debugfs fixups ours applies for what the tree cannot carry (none in
//! this image: every file is root's, no devices or xattrs).
//!
//! Then the time to
//! create a VM root disk from a 2 GiB image with the copy fallback
//! (reflink where the filesystem has it, else a sparse copy).
//!
//! Run: `cargo bench -p banger-daemon --bench pull` (or `make bench-pull`).
//! Needs docker-registry, skopeo, umoci and e2fsprogs; run as root (umoci
//! raw unpack without --rootless).

#[path = "../tests/pull_util/mod.rs"]
mod pull_util;

use std::process::Command;
use std::time::{Duration, Instant};

use banger_api::OpState;
use pull_util::*;

const RUNS: usize = 3;

fn rounds() -> usize {
    std::env::var("BANGER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5usize)
        .max(1)
}

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

/// `/proc/loadavg`'s first three fields.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Flush dirty pages before a timed run, so no run pays another's
/// writeback.
fn settle() {
    run(&["sync"]);
}

/// Run a future to completion from inside the runtime's worker.
fn futures_block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

/// The mkfs.ext4 options of our image, for the peer: what `build_ext4`
/// passes, with the inode count and size read back from our image.
struct Ext4Opts {
    inodes: u64,
    size_k: u64,
}

impl Ext4Opts {
    fn of(img: &std::path::Path) -> Ext4Opts {
        let out = Command::new("dumpe2fs")
            .arg("-h")
            .arg(img)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in dumpe2fs -h {}", img.display()))
        };
        Ext4Opts {
            inodes: field("Inode count:"),
            size_k: std::fs::metadata(img).unwrap().len() / 1024,
        }
    }

    /// `banger_imagemgr::ext4build`'s arguments (after `mkfs.ext4`).
    fn args(&self, tree: &std::path::Path, img: &std::path::Path) -> Vec<String> {
        [
            "-q",
            "-F",
            "-b",
            "4096",
            "-I",
            "256",
            "-N",
            &self.inodes.to_string(),
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1",
            "-d",
            &tree.display().to_string(),
            &img.display().to_string(),
            &format!("{}k", self.size_k),
        ]
        .map(str::to_string)
        .to_vec()
    }
}

/// `e2fsck -fn`: the image is consistent.
fn fsck(img: &std::path::Path) {
    let out = Command::new("e2fsck").arg("-fn").arg(img).output().unwrap();
    assert!(
        out.status.success(),
        "e2fsck -fn {}: {}",
        img.display(),
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Dump both images with `debugfs rdump` and compare every entry: path,
/// type, mode, owner, size and the BLAKE3 of the content (or link target).
fn compare_images(a: &std::path::Path, b: &std::path::Path, work: &std::path::Path) -> String {
    let listing = |img: &std::path::Path, tag: &str| {
        let dir = work.join(format!("rdump-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        run(&[
            "debugfs",
            "-R",
            &format!("rdump / {}", dir.display()),
            &img.display().to_string(),
        ]);
        let mut out = Vec::new();
        walk(&dir, &dir, &mut out);
        out.sort();
        out
    };
    let (la, lb) = (listing(a, "ours"), listing(b, "peer"));
    assert_eq!(la.len(), lb.len(), "entry counts differ");
    for (x, y) in la.iter().zip(&lb) {
        assert_eq!(x, y, "images differ");
    }
    format!(
        "{} entries, same paths, types, modes, owners, sizes and content hashes",
        la.len()
    )
}

fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
    use std::os::unix::fs::MetadataExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = p.symlink_metadata().unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        if rel == "lost+found" {
            continue;
        }
        let hash = if md.is_file() {
            blake3::hash(&std::fs::read(&p).unwrap())
                .to_hex()
                .to_string()
        } else if md.file_type().is_symlink() {
            blake3::hash(
                std::fs::read_link(&p)
                    .unwrap()
                    .as_os_str()
                    .as_encoded_bytes(),
            )
            .to_hex()
            .to_string()
        } else {
            String::new()
        };
        let size = if md.is_dir() { 0 } else { md.len() };
        out.push(format!(
            "{rel} {:o} {}:{} {size} {hash}",
            md.mode(),
            md.uid(),
            md.gid()
        ));
        if md.is_dir() {
            walk(root, &p, out);
        }
    }
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
    let tools = [
        "docker-registry",
        "skopeo",
        "umoci",
        "mkfs.ext4",
        "debugfs",
        "e2fsck",
        "dumpe2fs",
    ];
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

    let rounds = rounds();
    let work = tempfile::tempdir().unwrap();
    let load_before = loadavg();
    let mut ours = Vec::new();
    let mut peer = Vec::new();
    let mut keep: Vec<std::path::PathBuf> = Vec::new();
    let mut services = Vec::new();
    for i in 0..rounds {
        // Ours: a fresh state dir each run, so nothing is cached.
        let svc = service();
        let name = format!("bench{i}");
        let ours_run = || {
            settle();
            let t = Instant::now();
            let op = futures_block(svc.pull(&reference, &name, None));
            let took = t.elapsed();
            assert_eq!(op.state, OpState::Succeeded, "{:?}", op.error);
            took
        };
        // Peer: skopeo copy + umoci raw unpack + mkfs.ext4 -d with our
        // options, into a directory of its own.
        let d = work.path().join(format!("peer{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let img = d.join("root.ext4");
        let peer_run = |size: &Ext4Opts| {
            let layout = d.join("oci");
            let rootfs = d.join("rootfs");
            settle();
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
                "raw",
                "unpack",
                "--image",
                &format!("{}:img", layout.display()),
                &rootfs.display().to_string(),
            ]);
            let mut mkfs = vec!["mkfs.ext4".to_string()];
            mkfs.extend(size.args(&rootfs, &img));
            let mkfs: Vec<&str> = mkfs.iter().map(String::as_str).collect();
            run(&mkfs);
            t.elapsed()
        };
        // The peer needs our image's size and inode count: a first round
        // peer-first would not know them, so round 0 measures ours first
        // and odd rounds put the peer first with the figures of round 0.
        let (o, p) = if i % 2 == 0 {
            let o = ours_run();
            let opts = Ext4Opts::of(&svc.rootfs(&name));
            (o, peer_run(&opts))
        } else {
            let opts = Ext4Opts::of(&keep[0]);
            let p = peer_run(&opts);
            (ours_run(), p)
        };
        let ours_img = svc.rootfs(&name);
        fsck(&ours_img);
        fsck(&img);
        if i == 0 {
            let same = compare_images(&ours_img, &img, work.path());
            println!("round 1 images compared with debugfs rdump: {same}");
        }
        eprintln!(
            "round {}: ours {:.2} s, peer {:.2} s, peer/ours {:.2}",
            i + 1,
            o.as_secs_f64(),
            p.as_secs_f64(),
            p.as_secs_f64() / o.as_secs_f64()
        );
        ours.push(o);
        peer.push(p);
        keep.push(ours_img);
        // The service (and its state dir) lives until the end.
        services.push(svc);
    }
    let load_after = loadavg();
    drop(services);
    let per_round: Vec<String> = ours
        .iter()
        .zip(&peer)
        .map(|(o, p)| {
            format!(
                "{:.2}/{:.2}={:.2}",
                o.as_secs_f64(),
                p.as_secs_f64(),
                p.as_secs_f64() / o.as_secs_f64()
            )
        })
        .collect();
    let (o, p) = (median(ours), median(peer));
    println!("load before: {load_before}");
    println!(
        "pull+flatten (median of {rounds}): banger {:.2} s | skopeo+umoci raw unpack+mkfs.ext4 (same options) {:.2} s | peer/ours {:.2}x",
        o.as_secs_f64(),
        p.as_secs_f64(),
        p.as_secs_f64() / o.as_secs_f64()
    );
    println!("per round ours/peer s = peer/ours: {}", per_round.join(" "));
    println!("load after: {load_after}");

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
