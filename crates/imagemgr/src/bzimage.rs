//! Turning a compressed x86 `bzImage` into the uncompressed ELF `vmlinux`
//! Firecracker boots.
//!
//! The Linux boot protocol (Documentation/arch/x86/boot.rst) puts a setup
//! header at 0x1f1: `setup_sects` at 0x1f1, the `HdrS` magic at 0x202, the
//! protocol version at 0x206, and (from 2.08) `payload_offset` /
//! `payload_length` at 0x248 / 0x24c, relative to the protected-mode code
//! that starts after `(setup_sects + 1) * 512` bytes. The payload is the
//! compressed `vmlinux`; its format is told by magic bytes: gzip, bzip2,
//! lzma, xz, lz4 (legacy frames) or zstd (lzo is refused). The result
//! must be an ELF file.

use std::io::Read;
use std::path::Path;

use crate::{ImageMgrError, io_err};

/// Largest vmlinux accepted (a guard against decompression bombs).
const MAX_VMLINUX: u64 = 1 << 30;

/// Compression formats of a bzImage payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelCompression {
    /// gzip (deflate).
    Gzip,
    /// bzip2.
    Bzip2,
    /// lzma ("alone" format).
    Lzma,
    /// xz.
    Xz,
    /// lz4, legacy frame format.
    Lz4,
    /// zstd.
    Zstd,
}

/// Extract the vmlinux of `bzimage` into the new file `out`. On error `out`
/// is removed.
pub fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<KernelCompression, ImageMgrError> {
    let data = std::fs::read(bzimage).map_err(io_err(bzimage))?;
    let (elf, kind) = vmlinux_from_bzimage(&data).map_err(|reason| ImageMgrError::WrongKind {
        path: bzimage.to_path_buf(),
        expected: "a bzImage with an extractable vmlinux",
        found: reason,
    })?;
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(out)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &elf));
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(out);
        }
        return Err(io_err(out)(e));
    }
    Ok(kind)
}

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    d.get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The uncompressed ELF inside a bzImage, and how it was compressed.
pub fn vmlinux_from_bzimage(d: &[u8]) -> Result<(Vec<u8>, KernelCompression), String> {
    if d.get(0x202..0x206) != Some(b"HdrS") {
        return Err("no Linux boot header (HdrS magic at 0x202)".into());
    }
    let version = d
        .get(0x206..0x208)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .unwrap_or(0);
    if version < 0x0208 {
        return Err(format!(
            "boot protocol {}.{:02} is older than 2.08 (no payload offset)",
            version >> 8,
            version & 0xff
        ));
    }
    let setup_sects = match d[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let pm_start = (setup_sects + 1) * 512;
    let offset = u32_at(d, 0x248).ok_or("truncated setup header")? as usize;
    let length = u32_at(d, 0x24c).ok_or("truncated setup header")? as usize;
    let start = pm_start + offset;
    let payload = d
        .get(start..start.saturating_add(length))
        .ok_or_else(|| format!("the payload ({length} bytes at {start}) lies beyond the file"))?;
    let (out, kind) = decompress(payload)?;
    if out.get(..4) != Some(b"\x7fELF") {
        return Err(format!("the {kind:?} payload is not an ELF vmlinux"));
    }
    Ok((out, kind))
}

fn decompress(p: &[u8]) -> Result<(Vec<u8>, KernelCompression), String> {
    let limit = |r: &mut dyn Read| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        r.take(MAX_VMLINUX + 1)
            .read_to_end(&mut out)
            .map_err(|e| e.to_string())?;
        if out.len() as u64 > MAX_VMLINUX {
            return Err("the payload decompresses to more than 1 GiB".into());
        }
        Ok(out)
    };
    let fail =
        |k: KernelCompression| move |e: String| format!("cannot decompress the {k:?} payload: {e}");
    use KernelCompression as K;
    match p {
        [0x1f, 0x8b, ..] => limit(&mut flate2::read::GzDecoder::new(p))
            .map(|o| (o, K::Gzip))
            .map_err(fail(K::Gzip)),
        [b'B', b'Z', b'h', ..] => limit(&mut bzip2::read::BzDecoder::new(p))
            .map(|o| (o, K::Bzip2))
            .map_err(fail(K::Bzip2)),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            let mut out = Vec::new();
            let mut input = std::io::BufReader::new(xz_stream(p));
            lzma_rs::xz_decompress(&mut input, &mut out)
                .map_err(|e| fail(K::Xz)(e.to_string()))?;
            Ok((out, K::Xz))
        }
        [0x5d, 0, 0, ..] => {
            let mut out = Vec::new();
            // Without the 4-byte size the kernel's build appends.
            let mut input = std::io::BufReader::new(&p[..p.len().saturating_sub(4)]);
            lzma_rs::lzma_decompress(&mut input, &mut out)
                .map_err(|e| fail(K::Lzma)(e.to_string()))?;
            Ok((out, K::Lzma))
        }
        [0x02, 0x21, 0x4c, 0x18, ..] => lz4_legacy(&p[4..])
            .map(|o| (o, K::Lz4))
            .map_err(fail(K::Lz4)),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => {
            // One frame: the kernel appends the uncompressed size after it.
            let mut dec = zstd::stream::read::Decoder::new(p)
                .map_err(|e| e.to_string())?
                .single_frame();
            limit(&mut dec).map(|o| (o, K::Zstd)).map_err(fail(K::Zstd))
        }
        [0x89, b'L', b'Z', b'O', ..] => Err("lzo-compressed kernels are not supported; rebuild the kernel with another compression or give the vmlinux".into()),
        _ => Err("unknown payload compression".into()),
    }
}

/// The xz stream without the 4-byte size the kernel's build appends (xz
/// allows only zero padding after a stream).
fn xz_stream(p: &[u8]) -> &[u8] {
    // An xz stream ends with the footer magic "YZ".
    match p.windows(2).rposition(|w| w == b"YZ") {
        Some(i) => &p[..i + 2],
        None => p,
    }
}

/// Legacy lz4 frames: after the magic, blocks of `[u32 LE size][data]`
/// (each up to 8 MiB uncompressed) until the data runs out, another magic
/// starts, or a size does not fit (the kernel's appended length).
fn lz4_legacy(mut p: &[u8]) -> Result<Vec<u8>, String> {
    const MAGIC: u32 = 0x184c_2102;
    let mut out = Vec::new();
    while p.len() >= 4 {
        let size = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
        if size == MAGIC {
            p = &p[4..];
            continue;
        }
        let size = size as usize;
        if size == 0 || size > p.len() - 4 {
            break;
        }
        let block =
            lz4_flex::block::decompress(&p[4..4 + size], 8 << 20).map_err(|e| e.to_string())?;
        out.extend_from_slice(&block);
        if out.len() as u64 > MAX_VMLINUX {
            return Err("the payload decompresses to more than 1 GiB".into());
        }
        p = &p[4 + size..];
    }
    if out.is_empty() {
        return Err("no lz4 blocks".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A small "vmlinux": an ELF header and some text.
    fn elf() -> Vec<u8> {
        let mut v = b"\x7fELF\x02\x01\x01".to_vec();
        v.resize(64, 0);
        for i in 0..200_000u32 {
            v.push((i % 97) as u8);
        }
        v
    }

    /// A bzImage around `payload` (with the kernel's appended size).
    fn bzimage(payload: &[u8], uncompressed: usize) -> Vec<u8> {
        let setup_sects = 3u8;
        let mut d = vec![0u8; (setup_sects as usize + 1) * 512];
        d[0x1f1] = setup_sects;
        d[0x202..0x206].copy_from_slice(b"HdrS");
        d[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        let offset = 0x3a0u32; // decompressor code would sit before it
        let mut full = payload.to_vec();
        full.extend_from_slice(&(uncompressed as u32).to_le_bytes());
        d[0x248..0x24c].copy_from_slice(&offset.to_le_bytes());
        d[0x24c..0x250].copy_from_slice(&(full.len() as u32).to_le_bytes());
        d.resize(d.len() + offset as usize, 0x90);
        d.extend_from_slice(&full);
        d.extend_from_slice(&[0u8; 700]); // trailing code/data
        d
    }

    fn lz4_legacy_frame(data: &[u8]) -> Vec<u8> {
        let mut v = 0x184c_2102u32.to_le_bytes().to_vec();
        for chunk in data.chunks(8 << 20) {
            let b = lz4_flex::block::compress(chunk);
            v.extend_from_slice(&(b.len() as u32).to_le_bytes());
            v.extend_from_slice(&b);
        }
        v
    }

    #[test]
    fn every_supported_compression_round_trips() {
        let vmlinux = elf();
        let gz = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(&vmlinux).unwrap();
            e.finish().unwrap()
        };
        let bz = {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
            e.write_all(&vmlinux).unwrap();
            e.finish().unwrap()
        };
        let xz = {
            let mut out = Vec::new();
            lzma_rs::xz_compress(&mut vmlinux.as_slice(), &mut out).unwrap();
            out
        };
        let lzma = {
            let mut out = Vec::new();
            lzma_rs::lzma_compress(&mut vmlinux.as_slice(), &mut out).unwrap();
            out
        };
        let zst = zstd::encode_all(vmlinux.as_slice(), 19).unwrap();
        let lz4 = lz4_legacy_frame(&vmlinux);
        for (payload, kind) in [
            (gz, KernelCompression::Gzip),
            (bz, KernelCompression::Bzip2),
            (xz, KernelCompression::Xz),
            (lzma, KernelCompression::Lzma),
            (zst, KernelCompression::Zstd),
            (lz4, KernelCompression::Lz4),
        ] {
            let img = bzimage(&payload, vmlinux.len());
            let (out, got) = vmlinux_from_bzimage(&img).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(got, kind);
            assert_eq!(out, vmlinux, "{kind:?}");
        }
    }

    #[test]
    fn bad_bzimages_say_why() {
        assert!(
            vmlinux_from_bzimage(&[0u8; 4096])
                .unwrap_err()
                .contains("HdrS")
        );
        let mut old = bzimage(b"x", 1);
        old[0x206..0x208].copy_from_slice(&0x0204u16.to_le_bytes());
        assert!(vmlinux_from_bzimage(&old).unwrap_err().contains("2.08"));
        let lzo = bzimage(b"\x89LZO\x00junk", 10);
        assert!(vmlinux_from_bzimage(&lzo).unwrap_err().contains("lzo"));
        let not_elf = {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(b"not an elf at all").unwrap();
            bzimage(&e.finish().unwrap(), 17)
        };
        assert!(
            vmlinux_from_bzimage(&not_elf)
                .unwrap_err()
                .contains("not an ELF")
        );
        let mut cut = bzimage(&zstd::encode_all(&elf()[..], 3).unwrap(), 10);
        cut.truncate(3000);
        assert!(vmlinux_from_bzimage(&cut).unwrap_err().contains("beyond"));

        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("bzImage");
        std::fs::write(&src, bzimage(&zstd::encode_all(&elf()[..], 3).unwrap(), 10)).unwrap();
        let out = t.path().join("vmlinux");
        assert_eq!(
            extract_vmlinux(&src, &out).unwrap(),
            KernelCompression::Zstd
        );
        assert_eq!(std::fs::read(&out).unwrap(), elf());
        assert!(extract_vmlinux(&src, &out).is_err(), "never overwrites");
        assert!(out.exists());
    }
}
