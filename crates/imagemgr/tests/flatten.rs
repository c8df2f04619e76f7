//! Layers → staging tree → ext4, checked file by file with `debugfs`
//! (no mount) and `e2fsck -fn`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use banger_imagemgr::{Flattener, build_ext4};

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, u32, &'a [u8]),
    Owned(&'a str, u32, u32, u32, &'a [u8]),
    Sym(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Char(&'a str, u32, u32),
    Xattr(&'a str, &'a str, &'a [u8]),
}

fn tar_bytes(entries: &[E<'_>], finish: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            E::Dir(p, m) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*m);
                h.set_size(0);
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::File(p, m, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                h.set_size(d.len() as u64);
                b.append_data(&mut h, p, *d).unwrap();
            }
            E::Owned(p, m, u, g, d) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*m);
                h.set_uid((*u).into());
                h.set_gid((*g).into());
                h.set_size(d.len() as u64);
                b.append_data(&mut h, p, *d).unwrap();
            }
            E::Sym(p, t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Hard(p, t) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, t).unwrap();
            }
            E::Char(p, ma, mi) => {
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0o666);
                h.set_size(0);
                h.set_device_major(*ma).unwrap();
                h.set_device_minor(*mi).unwrap();
                b.append_data(&mut h, p, &[][..]).unwrap();
            }
            E::Xattr(p, name, value) => {
                let key = format!("SCHILY.xattr.{name}");
                b.append_pax_extensions([(key.as_str(), *value)]).unwrap();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o755);
                h.set_size(2);
                b.append_data(&mut h, p, &b"ok"[..]).unwrap();
            }
        }
    }
    if finish {
        b.into_inner().unwrap()
    } else {
        // Like umoci: no end-of-archive blocks, and the last file's data
        // not padded (its content must not end in a zero byte).
        let mut v = b.get_ref().clone();
        while v.last() == Some(&0) {
            v.pop();
        }
        v
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn have_e2fsprogs(test: &str) -> bool {
    let ok = Command::new("debugfs")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        banger_testsupport::skip!(return false; test, "debugfs not available (install e2fsprogs)");
    }
    true
}

/// `debugfs -R CMD IMG` stdout, or None when debugfs reports an error.
fn dfs(img: &Path, cmd: &str) -> Option<String> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(cmd)
        .arg(img)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if err
        .lines()
        .any(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
    {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn write_blob(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn layers_flatten_into_a_checked_ext4() {
    if !have_e2fsprogs("layers_flatten_into_a_checked_ext4") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let l1 = tar_bytes(
        &[
            E::Dir("etc", 0o755),
            E::File("etc/motd", 0o644, b"hello"),
            E::File("etc/keep", 0o644, b"keep"),
            E::Dir("var", 0o755),
            E::Dir("var/cache", 0o755),
            E::File("var/cache/old", 0o644, b"old"),
            E::Dir("var/cache/sub", 0o700),
            E::File("var/cache/sub/deep", 0o644, b"deep"),
            E::File("bin/busybox", 0o755, b"\x7fELF fake"),
            E::Sym("bin/sh", "busybox"),
            E::Hard("bin/ls", "bin/busybox"),
            E::Owned("usr/bin/su", 0o4755, 0, 0, b"su"),
            E::Owned("home/u/.profile", 0o600, 1000, 1000, b"p"),
            E::Char("dev/null", 1, 3),
            E::Hard("dev/null2", "dev/null"),
            E::Xattr("usr/bin/ping", "security.capability", b"\x01\x00\x00\x02"),
            E::Xattr("usr/bin/tagged", "user.banger", b"yes"),
        ],
        true,
    );
    let l2 = tar_bytes(
        &[
            E::File("etc/.wh.motd", 0o644, b""),
            E::File("var/cache/.wh..wh..opq", 0o644, b""),
            E::File("var/cache/new", 0o644, b"new"),
            E::File("etc/keep", 0o600, b"replaced"),
        ],
        false,
    );
    let b1 = write_blob(t.path(), "l1", &gzip(&l1));
    let b2 = write_blob(t.path(), "l2", &zstd(&l2));
    let stage = t.path().join("stage");
    let mut f = Flattener::new(&stage).unwrap();
    f.apply_layer(&b1, "l1").unwrap();
    f.apply_layer(&b2, "l2").unwrap();
    let tree = f.finish().unwrap();
    assert!(tree.stats.entries > 10);
    let img = t.path().join("root.ext4");
    let size = build_ext4(&tree, &img).unwrap();
    assert_eq!(std::fs::metadata(&img).unwrap().len(), size.bytes);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&img).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600, "the image is private, not {mode:o}");
    }

    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );

    assert!(dfs(&img, "stat /etc/motd").is_none(), "whiteout applied");
    assert_eq!(dfs(&img, "cat /etc/keep").unwrap(), "replaced");
    assert!(
        dfs(&img, "stat /var/cache/old").is_none(),
        "opaque dir emptied"
    );
    assert!(
        dfs(&img, "stat /var/cache/sub").is_none(),
        "opaque dir emptied"
    );
    assert_eq!(dfs(&img, "cat /var/cache/new").unwrap(), "new");
    let sh = dfs(&img, "stat /bin/sh").unwrap();
    assert!(
        sh.contains("Type: symlink") && sh.contains("\"busybox\""),
        "{sh}"
    );
    let ls = dfs(&img, "stat /bin/ls").unwrap();
    assert!(ls.contains("Links: 2"), "hardlink kept: {ls}");
    let su = dfs(&img, "stat /usr/bin/su").unwrap();
    assert!(
        su.contains("Mode:  04755") && su.contains("User:     0"),
        "{su}"
    );
    let prof = dfs(&img, "stat /home/u/.profile").unwrap();
    assert!(
        prof.contains("User:  1000   Group:  1000") && prof.contains("Mode:  0600"),
        "{prof}"
    );
    let null = dfs(&img, "stat /dev/null").unwrap();
    assert!(
        null.contains("Type: character special") && null.contains("Mode:  0666"),
        "{null}"
    );
    assert!(null.contains("major/minor number: 01:03"), "{null}");
    let null2 = dfs(&img, "stat /dev/null2").unwrap();
    assert!(null2.contains("major/minor number: 01:03"), "{null2}");
    let cap = dfs(&img, "ea_list /usr/bin/ping").unwrap();
    assert!(cap.contains("security.capability"), "{cap}");
    let tag = dfs(&img, "ea_get /usr/bin/tagged user.banger").unwrap();
    assert!(tag.contains("yes"), "{tag}");
    let mtime = dfs(&img, "stat /etc/keep").unwrap();
    assert!(mtime.contains("0x6553f100"), "mtime kept: {mtime}");
}

#[test]
fn hostile_and_broken_layers_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "through-symlink",
            tar_bytes(
                &[E::Sym("etc", "/tmp"), E::File("etc/passwd", 0o644, b"x")],
                true,
            ),
            "symlink",
        ),
        (
            "corrupt-gzip",
            {
                let mut g = gzip(&tar_bytes(&[E::File("a", 0o644, &[7u8; 100_000])], true));
                let n = g.len();
                g.truncate(n / 2);
                g
            },
            "",
        ),
        (
            "bad-zstd",
            {
                let mut z = zstd(&tar_bytes(&[E::File("a", 0o644, &[1u8; 50_000])], true));
                let n = z.len();
                z[n / 2] ^= 0xff;
                z[n - 2] ^= 0xff;
                z
            },
            "",
        ),
        (
            "missing-link-target",
            tar_bytes(&[E::Hard("b", "nowhere")], true),
            "does not exist",
        ),
    ];
    for (name, bytes, needle) in cases {
        let blob = write_blob(t.path(), name, &bytes);
        let stage = t.path().join(format!("stage-{name}"));
        let mut f = Flattener::new(&stage).unwrap();
        let err = f.apply_layer(&blob, name).unwrap_err().to_string();
        assert!(err.contains(name), "{name}: {err}");
        assert!(err.contains(needle), "{name}: {err}");
        assert!(!Path::new("/tmp/passwd").exists() || name != "through-symlink");
    }
    // `..` in a raw header (the tar builder refuses to write one).
    let mut raw = tar_bytes(&[E::File("xx/yy", 0o644, b"z")], true);
    raw[..5].copy_from_slice(b"../yy");
    let mut h = tar::Header::from_byte_slice(&raw[..512]).clone();
    h.set_cksum();
    raw[..512].copy_from_slice(h.as_bytes());
    let blob = write_blob(t.path(), "dotdot", &raw);
    let mut f = Flattener::new(&t.path().join("stage-dotdot")).unwrap();
    let err = f.apply_layer(&blob, "dotdot").unwrap_err().to_string();
    assert!(err.contains(".."), "{err}");
    assert!(!t.path().join("yy").exists());
}

#[test]
fn a_layer_cut_inside_a_file_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let mut bytes = tar_bytes(&[E::File("big", 0o644, &[9u8; 10_000])], true);
    bytes.truncate(512 + 4000);
    let blob = write_blob(t.path(), "cut", &bytes);
    let mut f = Flattener::new(&t.path().join("s")).unwrap();
    let err = f.apply_layer(&blob, "cut").unwrap_err().to_string();
    assert!(err.contains("ends inside"), "{err}");
}

/// A decompression bomb: a few KiB of zstd that inflate to 8 MiB. With a
/// 12 MiB budget for two such layers, or 1 MiB for one, the flattener
/// stops within it and says why.
#[test]
fn layer_content_is_bounded_by_the_flatteners_limit() {
    let t = tempfile::tempdir().unwrap();
    let mut data = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(8 << 20);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    data.append_data(&mut h, "zeros", std::io::repeat(0).take(8 << 20))
        .unwrap();
    let bomb = zstd(&data.into_inner().unwrap());
    assert!(bomb.len() < 64 << 10, "{}", bomb.len());
    let a = write_blob(t.path(), "a", &bomb);
    let b = write_blob(t.path(), "b", &bomb);
    let root = t.path().join("s");
    let mut f = Flattener::new(&root).unwrap().with_limit(12 << 20);
    f.apply_layer(&a, "sha256:a").unwrap();
    // The limit is for all layers together: the second one passes it.
    let err = f.apply_layer(&b, "sha256:b").unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            banger_imagemgr::ImageMgrError::Oversized {
                declared: 12582912,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("decompressed content") && msg.contains("sha256:b"),
        "{msg}"
    );
    let written = std::fs::metadata(root.join("zeros")).unwrap().len();
    assert!(written <= 4 << 20, "{written}");

    let root = t.path().join("s2");
    let mut f = Flattener::new(&root).unwrap().with_limit(1 << 20);
    assert!(f.apply_layer(&a, "sha256:a").is_err());
    let written = std::fs::metadata(root.join("zeros")).map_or(0, |m| m.len());
    assert!(written <= 1 << 20, "stopped within the limit: {written}");
}

/// A GNU long name of 64 MiB (a few KiB compressed): the tar crate would
/// read it whole into memory; the flattener stops it at 16 MiB.
#[test]
fn an_oversized_tar_header_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(
        &mut h,
        "././@LongLink",
        std::io::repeat(b'a').take(64 << 20),
    )
    .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "x", &b"x"[..]).unwrap();
    let blob = write_blob(t.path(), "l", &zstd(&b.into_inner().unwrap()));
    let mut f = Flattener::new(&t.path().join("s")).unwrap();
    let err = f.apply_layer(&blob, "sha256:l").unwrap_err().to_string();
    assert!(
        err.contains("tar header") && err.contains("larger than 16777216 bytes"),
        "{err}"
    );
}
