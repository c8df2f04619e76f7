//! Image bundles: one tar file that carries a whole banger image.
//!
//! Format `banger-bundle/v1` (documented in docs/images.md): a tar whose first
//! entry is `manifest.json`, followed by the files it lists, each a plain
//! regular file at the top level:
//!
//! ```json
//! {"format": "banger-bundle/v1", "name": "debian",
//!  "rootfs":    {"path": "rootfs.ext4",    "size": 1073741824, "sha256": "…"},
//!  "kernel":    {"path": "vmlinux",        "size": 41000000,   "sha256": "…"},
//!  "initrd":    null,
//!  "work_seed": {"path": "work-seed.ext4", "size": 67108864,   "sha256": "…"}}
//! ```
//!
//! `rootfs` is required; `kernel`, `initrd` and `work_seed` are optional.
//! The tar may be compressed with gzip or zstd (told by magic bytes).
//! Reading checks every file's size and sha256 against the manifest and
//! refuses unknown, missing, duplicate or non-regular entries.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Hasher;
use crate::{ImageMgrError, io_err};

/// The format tag of this version.
pub const BUNDLE_FORMAT: &str = "banger-bundle/v1";

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    /// Its name inside the tar (a plain file name).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleManifest {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// The image name.
    pub name: String,
    /// Root filesystem (ext4).
    pub rootfs: BundleFile,
    /// Uncompressed kernel.
    #[serde(default)]
    pub kernel: Option<BundleFile>,
    /// Initial ramdisk.
    #[serde(default)]
    pub initrd: Option<BundleFile>,
    /// Seed of each VM's persistent work disk.
    #[serde(default)]
    pub work_seed: Option<BundleFile>,
}

impl BundleManifest {
    fn files(&self) -> Vec<&BundleFile> {
        [
            Some(&self.rootfs),
            self.kernel.as_ref(),
            self.initrd.as_ref(),
            self.work_seed.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The files of an image to bundle.
#[derive(Debug, Clone)]
pub struct BundleSource<'a> {
    /// Image name.
    pub name: &'a str,
    /// Root filesystem.
    pub rootfs: &'a Path,
    /// Kernel, if any.
    pub kernel: Option<&'a Path>,
    /// Initrd, if any.
    pub initrd: Option<&'a Path>,
    /// Work-disk seed, if any.
    pub work_seed: Option<&'a Path>,
}

/// Write a bundle to `out` (created; must not exist). On error `out` is
/// removed. Returns the manifest written.
pub fn write_bundle(src: &BundleSource<'_>, out: &Path) -> Result<BundleManifest, ImageMgrError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(io_err(out))?;
    let result = write_inner(src, file, out);
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

fn write_inner(
    src: &BundleSource<'_>,
    file: File,
    out: &Path,
) -> Result<BundleManifest, ImageMgrError> {
    let describe = |p: &Path, name: &str| -> Result<BundleFile, ImageMgrError> {
        let size = std::fs::metadata(p).map_err(io_err(p))?.len();
        Ok(BundleFile {
            path: name.to_string(),
            size,
            sha256: crate::sha256_file(p)?.hex().to_string(),
        })
    };
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT.to_string(),
        name: src.name.to_string(),
        rootfs: describe(src.rootfs, "rootfs.ext4")?,
        kernel: src.kernel.map(|p| describe(p, "vmlinux")).transpose()?,
        initrd: src.initrd.map(|p| describe(p, "initrd")).transpose()?,
        work_seed: src
            .work_seed
            .map(|p| describe(p, "work-seed.ext4"))
            .transpose()?,
    };
    let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, file));
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| bad(out, &e.to_string()))?;
    append(
        &mut tar,
        "manifest.json",
        &mut json.as_slice(),
        json.len() as u64,
        out,
    )?;
    let pairs = [
        (Some(src.rootfs), Some(&manifest.rootfs)),
        (src.kernel, manifest.kernel.as_ref()),
        (src.initrd, manifest.initrd.as_ref()),
        (src.work_seed, manifest.work_seed.as_ref()),
    ];
    for (path, entry) in pairs {
        if let (Some(p), Some(e)) = (path, entry) {
            let mut f = File::open(p).map_err(io_err(p))?;
            append(&mut tar, &e.path, &mut f, e.size, out)?;
        }
    }
    let mut w = tar.into_inner().map_err(io_err(out))?;
    w.flush().map_err(io_err(out))?;
    w.get_ref().sync_all().map_err(io_err(out))?;
    Ok(manifest)
}

fn append(
    tar: &mut tar::Builder<impl Write>,
    name: &str,
    data: &mut impl Read,
    size: u64,
    out: &Path,
) -> Result<(), ImageMgrError> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    tar.append_data(&mut h, name, data).map_err(io_err(out))
}

/// Largest `manifest.json` read (1 MiB); it is parsed in memory.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Read a bundle, writing its files into `dir` (which must exist) under
/// the names `rootfs.ext4`, `vmlinux`, `initrd`, `work-seed.ext4`, each
/// checked against the manifest. Returns the manifest. See
/// [`read_bundle_from`].
pub fn read_bundle(bundle: &Path, dir: &Path) -> Result<BundleManifest, ImageMgrError> {
    let file = File::open(bundle).map_err(io_err(bundle))?;
    read_bundle_from(file, bundle, dir)
}

/// Read a bundle from a stream (a file or a download); `label` names it in
/// errors.
///
/// Bounds: `manifest.json` must come first and be at most
/// [`MAX_MANIFEST_BYTES`]; before any file is created, the filesystem of
/// `dir` must have the declared sizes free (plus
/// [`SPACE_MARGIN`](crate::SPACE_MARGIN)); every member is written through
/// a writer that stops at its declared size, so a member carrying more
/// fails with [`ImageMgrError::Oversized`] after at most its declared size
/// was written. Members the manifest does not declare, duplicates and
/// non-regular entries (including long-name and pax headers) are refused.
/// On any error the files written into `dir` are removed.
pub fn read_bundle_from(
    input: impl Read,
    label: &Path,
    dir: &Path,
) -> Result<BundleManifest, ImageMgrError> {
    let mut created = Vec::new();
    let result = read_inner(input, label, dir, &mut created);
    if result.is_err() {
        for f in created {
            let _ = std::fs::remove_file(f);
        }
    }
    result
}

fn read_inner(
    input: impl Read,
    bundle: &Path,
    dir: &Path,
    created: &mut Vec<PathBuf>,
) -> Result<BundleManifest, ImageMgrError> {
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let magic = {
        use std::io::BufRead;
        let buf = reader.fill_buf().map_err(io_err(bundle))?;
        buf.get(..4).map(|m| [m[0], m[1], m[2], m[3]])
    };
    let input: Box<dyn Read> = match magic {
        Some([0x1f, 0x8b, _, _]) => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Some([0x28, 0xb5, 0x2f, 0xfd]) => {
            Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(io_err(bundle))?)
        }
        _ => Box::new(reader),
    };
    let mut archive = tar::Archive::new(input);
    // Raw entries: no GNU long-name or pax processing, which would read
    // such headers whole into memory (a bundle never has them).
    let mut entries = archive.entries().map_err(io_err(bundle))?.raw(true);
    let first = entries
        .next()
        .ok_or_else(|| bad(bundle, "it is empty"))?
        .map_err(|e| bad(bundle, &format!("not a tar file ({e})")))?;
    if first.path().map_err(io_err(bundle))?.as_os_str() != "manifest.json"
        || first.header().entry_type() != tar::EntryType::Regular
    {
        return Err(bad(bundle, "the first entry is not manifest.json"));
    }
    if first.size() > MAX_MANIFEST_BYTES {
        return Err(bad(bundle, "manifest.json is larger than 1 MiB"));
    }
    let manifest: BundleManifest = serde_json::from_reader(first.take(MAX_MANIFEST_BYTES))
        .map_err(|e| bad(bundle, &format!("manifest.json is invalid: {e}")))?;
    if manifest.format != BUNDLE_FORMAT {
        return Err(bad(
            bundle,
            &format!(
                "format {:?} is not {BUNDLE_FORMAT}; upgrade banger",
                manifest.format
            ),
        ));
    }
    let wanted: Vec<(&BundleFile, &str)> = [
        (Some(&manifest.rootfs), "rootfs.ext4"),
        (manifest.kernel.as_ref(), "vmlinux"),
        (manifest.initrd.as_ref(), "initrd"),
        (manifest.work_seed.as_ref(), "work-seed.ext4"),
    ]
    .into_iter()
    .filter_map(|(f, n)| f.map(|f| (f, n)))
    .collect();
    let names: BTreeSet<&str> = manifest.files().iter().map(|f| f.path.as_str()).collect();
    if names.len() != wanted.len()
        || names
            .iter()
            .any(|n| n.is_empty() || n.contains('/') || *n == "manifest.json")
    {
        return Err(bad(bundle, "manifest.json names files twice or with a '/'"));
    }
    let declared = wanted
        .iter()
        .try_fold(0u64, |sum, (f, _)| sum.checked_add(f.size))
        .ok_or_else(|| bad(bundle, "manifest.json declares impossible sizes"))?;
    crate::ensure_free_space(
        dir,
        declared,
        &format!("the {declared} bytes bundle {} declares", bundle.display()),
    )?;
    let mut seen = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| bad(bundle, &format!("truncated or corrupt ({e})")))?;
        let name = entry.path().map_err(io_err(bundle))?.display().to_string();
        let Some((spec, target)) = wanted.iter().find(|(f, _)| f.path == name) else {
            return Err(bad(
                bundle,
                &format!("entry {name:?} is not declared by manifest.json"),
            ));
        };
        if entry.header().entry_type() != tar::EntryType::Regular || !seen.insert(name.clone()) {
            return Err(bad(
                bundle,
                &format!("entry {name:?} is duplicated or not a regular file"),
            ));
        }
        let oversized = || ImageMgrError::Oversized {
            what: format!("member {name} of bundle {}", bundle.display()),
            declared: spec.size,
            declared_by: "its manifest declares",
            advice: "the bundle is corrupt or hostile",
        };
        if entry.size() > spec.size {
            // Its tar header already says so: refuse before writing.
            return Err(oversized());
        }
        let dest: PathBuf = dir.join(target);
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .map_err(io_err(&dest))?;
        created.push(dest.clone());
        let mut hasher = Hasher::new();
        let total = match crate::copy_bounded(entry, &out, spec.size, |c| hasher.update(c)) {
            Ok(n) => n,
            Err(crate::BoundedCopyError::Exceeded { .. }) => return Err(oversized()),
            Err(crate::BoundedCopyError::Read(e)) => {
                return Err(bad(bundle, &format!("cannot read {name}: {e}")));
            }
            Err(crate::BoundedCopyError::Write(e)) => return Err(io_err(&dest)(e)),
        };
        out.sync_all().map_err(io_err(&dest))?;
        let actual = hasher.finish();
        if total != spec.size || actual.hex() != spec.sha256 {
            return Err(ImageMgrError::DigestMismatch {
                what: format!("{name} in bundle {}", bundle.display()),
                expected: format!("sha256:{} ({} bytes)", spec.sha256, spec.size),
                actual: format!("{actual} ({total} bytes)"),
            });
        }
    }
    if let Some((missing, _)) = wanted.iter().find(|(f, _)| !seen.contains(&f.path)) {
        return Err(bad(
            bundle,
            &format!("{} is missing (truncated bundle?)", missing.path),
        ));
    }
    Ok(manifest)
}

fn bad(bundle: &Path, reason: &str) -> ImageMgrError {
    ImageMgrError::WrongKind {
        path: bundle.to_path_buf(),
        expected: "a banger image bundle (banger-bundle/v1)",
        found: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tampering() {
        let t = tempfile::tempdir().unwrap();
        let rootfs = t.path().join("r");
        let kernel = t.path().join("k");
        std::fs::write(&rootfs, vec![1u8; 100_000]).unwrap();
        std::fs::write(&kernel, b"\x7fELF kernel").unwrap();
        let out = t.path().join("b.tar");
        let src = BundleSource {
            name: "img",
            rootfs: &rootfs,
            kernel: Some(&kernel),
            initrd: None,
            work_seed: None,
        };
        let m = write_bundle(&src, &out).unwrap();
        assert!(write_bundle(&src, &out).is_err(), "never overwrites");
        assert!(out.exists());
        let dir = t.path().join("in");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(read_bundle(&out, &dir).unwrap(), m);
        assert_eq!(
            std::fs::read(dir.join("rootfs.ext4")).unwrap(),
            vec![1u8; 100_000]
        );
        assert_eq!(
            std::fs::read(dir.join("vmlinux")).unwrap(),
            b"\x7fELF kernel"
        );

        // Flip a byte of the rootfs inside the tar.
        let mut bytes = std::fs::read(&out).unwrap();
        let n = bytes.len();
        bytes[n - 1024 * 3 - 600] ^= 1;
        let bad = t.path().join("bad.tar");
        std::fs::write(&bad, &bytes).unwrap();
        // Each read into an empty directory (members are created, never
        // overwritten), which a failed read leaves empty.
        let dir = t.path().join("again");
        std::fs::create_dir(&dir).unwrap();
        let e = read_bundle(&bad, &dir).unwrap_err().to_string();
        assert!(e.contains("digest mismatch"), "{e}");
        // Cut it short.
        std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
        let e = read_bundle(&bad, &dir).unwrap_err().to_string();
        assert!(e.contains("bundle"), "{e}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        // Not a bundle at all.
        std::fs::write(&bad, b"hello").unwrap();
        assert!(read_bundle(&bad, &dir).is_err());
    }

    /// A tar entry header declaring `size` bytes for `name`, then the data.
    fn bomb_tar(manifest: &BundleManifest, members: &[(&str, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        let json = serde_json::to_vec(manifest).unwrap();
        let mut b = tar::Builder::new(&mut out);
        let mut h = tar::Header::new_gnu();
        h.set_size(json.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "manifest.json", json.as_slice())
            .unwrap();
        for (name, size) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(*size);
            h.set_mode(0o644);
            b.append_data(&mut h, name, std::io::repeat(0).take(*size))
                .unwrap();
        }
        b.finish().unwrap();
        drop(b);
        out
    }

    fn manifest_for(size: u64) -> BundleManifest {
        BundleManifest {
            format: BUNDLE_FORMAT.into(),
            name: "bomb".into(),
            rootfs: BundleFile {
                path: "rootfs.ext4".into(),
                size,
                sha256: "00".repeat(32),
            },
            kernel: None,
            initrd: None,
            work_seed: None,
        }
    }

    #[test]
    fn a_member_larger_than_declared_stops_at_the_declared_size() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("in");
        std::fs::create_dir(&dir).unwrap();
        // 1 MiB declared, 64 MiB carried, zstd-compressed to a few KiB.
        let tar = bomb_tar(&manifest_for(1 << 20), &[("rootfs.ext4", 64 << 20)]);
        let bomb = zstd::encode_all(tar.as_slice(), 19).unwrap();
        assert!(bomb.len() < 64 << 10, "{}", bomb.len());
        let path = t.path().join("bomb.tar.zst");
        std::fs::write(&path, &bomb).unwrap();
        let e = read_bundle(&path, &dir).unwrap_err();
        assert!(
            matches!(
                e,
                ImageMgrError::Oversized {
                    declared: 1048576,
                    ..
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("member rootfs.ext4")
                && msg.contains("larger than the 1048576 bytes its manifest declares")
                && msg.contains("corrupt or hostile"),
            "{msg}"
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing left");
    }

    #[test]
    fn bounded_even_when_the_tar_header_matches() {
        // Header size equal to the declared size: the copy is bounded by
        // it, and a digest mismatch removes what was written.
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("in");
        std::fs::create_dir(&dir).unwrap();
        let tar = bomb_tar(&manifest_for(4096), &[("rootfs.ext4", 4096)]);
        let path = t.path().join("b.tar");
        std::fs::write(&path, &tar).unwrap();
        let e = read_bundle(&path, &dir).unwrap_err().to_string();
        assert!(e.contains("digest mismatch"), "{e}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing left");
    }

    #[test]
    fn undeclared_members_and_impossible_sizes_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("in");
        std::fs::create_dir(&dir).unwrap();
        let path = t.path().join("b.tar");
        let tar = bomb_tar(&manifest_for(0), &[("extra", 10)]);
        std::fs::write(&path, &tar).unwrap();
        let e = read_bundle(&path, &dir).unwrap_err().to_string();
        assert!(e.contains("not declared by manifest.json"), "{e}");
        // Declared sizes the filesystem cannot hold: refused before any
        // member file is created.
        let tar = bomb_tar(&manifest_for(u64::MAX / 2), &[("rootfs.ext4", 10)]);
        std::fs::write(&path, &tar).unwrap();
        let e = read_bundle(&path, &dir).unwrap_err();
        assert!(matches!(e, ImageMgrError::NoSpace { .. }), "{e}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }
}
