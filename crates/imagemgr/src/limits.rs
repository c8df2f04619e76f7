//! Bounds on input someone else sized: writers that stop at a declared
//! size, the free-space check made before a pull or import writes, and the
//! largest size an ext4 image can be grown to.
//!
//! - [`BoundedWriter`] / [`copy_bounded`]: a bundle member or a registry
//!   blob is written through a writer that refuses every byte past its
//!   declared size, so at most the declared size is ever written (the
//!   reader side is read through `take(limit + 1)`, so at most one byte
//!   more is ever read or decompressed).
//! - [`ensure_free_space`]: `statvfs` of the destination against the bytes
//!   about to be written plus [`SPACE_MARGIN`], before any file is created.
//! - [`Ext4Geometry::max_grow_bytes`]: what `resize2fs` can grow a
//!   filesystem to, from its superblock.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{ImageMgrError, io_err};

/// Free space left untouched by a pull or import, on top of what it needs,
/// so that filling an image never fills the host filesystem (64 MiB).
pub const SPACE_MARGIN: u64 = 64 << 20;

/// A writer that accepts at most `limit` bytes: a write across the limit
/// is short (up to the limit), and a write at the limit fails with
/// [`io::ErrorKind::FileTooLarge`].
#[derive(Debug)]
pub struct BoundedWriter<W> {
    inner: W,
    limit: u64,
    written: u64,
    exceeded: bool,
}

impl<W> BoundedWriter<W> {
    /// Wrap `inner`, allowing `limit` bytes.
    pub fn new(inner: W, limit: u64) -> Self {
        Self {
            inner,
            limit,
            written: 0,
            exceeded: false,
        }
    }

    /// Bytes written so far (never more than the limit).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether a write past the limit was refused.
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// The wrapped writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// Unwrap.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for BoundedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let room = self.limit - self.written;
        if room == 0 {
            self.exceeded = true;
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("more than the {} bytes allowed", self.limit),
            ));
        }
        // A short write up to the limit; the next write fails.
        let take = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.write(&buf[..take])?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Why [`copy_bounded`] stopped.
#[derive(Debug)]
pub enum BoundedCopyError {
    /// The source had more than the limit.
    Exceeded {
        /// Bytes written before it stopped (at most the limit).
        written: u64,
    },
    /// Reading failed.
    Read(io::Error),
    /// Writing failed.
    Write(io::Error),
}

/// Copy `from` into `to`, at most `limit` bytes; `inspect` sees every chunk
/// written (for hashing). More than `limit` bytes in the source is
/// [`BoundedCopyError::Exceeded`]: at most `limit` bytes were written and
/// at most `limit + 1` read. Returns the bytes copied.
pub fn copy_bounded<R: Read, W: Write>(
    from: R,
    to: W,
    limit: u64,
    mut inspect: impl FnMut(&[u8]),
) -> Result<u64, BoundedCopyError> {
    let mut from = from.take(limit.saturating_add(1));
    let mut to = BoundedWriter::new(to, limit);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(to.written()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BoundedCopyError::Read(e)),
        };
        let room = usize::try_from(limit - to.written()).unwrap_or(usize::MAX);
        let chunk = &buf[..n.min(room)];
        to.write_all(chunk).map_err(BoundedCopyError::Write)?;
        inspect(chunk);
        if n > room {
            return Err(BoundedCopyError::Exceeded {
                written: to.written(),
            });
        }
    }
}

/// Bytes an unprivileged user may still write on the filesystem of `dir`
/// (`statvfs`: `f_bavail × f_frsize`).
pub fn available_bytes(dir: &Path) -> Result<u64, ImageMgrError> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(|e| io_err(dir)(e.into()))?;
    Ok(st.blocks_available().saturating_mul(st.fragment_size()))
}

/// Refuse unless the filesystem of `dir` has `needed` bytes plus
/// [`SPACE_MARGIN`] free. `what` names what would be written.
pub fn ensure_free_space(dir: &Path, needed: u64, what: &str) -> Result<(), ImageMgrError> {
    let available = available_bytes(dir)?;
    if needed.saturating_add(SPACE_MARGIN) > available {
        return Err(ImageMgrError::NoSpace {
            dir: dir.to_path_buf(),
            what: what.to_string(),
            needed,
            available,
        });
    }
    Ok(())
}

/// What the superblock of an ext2/3/4 image says about its size limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Geometry {
    /// Block size in bytes (1024 to 65536).
    pub block_size: u64,
    /// Blocks in the filesystem now.
    pub blocks_count: u64,
    /// Blocks per block group.
    pub blocks_per_group: u64,
    /// The first data block (1 with 1 KiB blocks, else 0).
    pub first_data_block: u64,
    /// Bytes per group descriptor (32, or `s_desc_size` with `64bit`).
    pub desc_size: u64,
    /// Group descriptor blocks reserved for growth (`resize_inode`).
    pub reserved_gdt_blocks: u64,
    /// The `64bit` feature (block numbers wider than 32 bits).
    pub is_64bit: bool,
}

const INCOMPAT_64BIT: u32 = 0x80;

impl Ext4Geometry {
    /// The largest size, in bytes, `resize2fs` can grow this filesystem to.
    ///
    /// Two limits apply: without `64bit`, block numbers are 32 bits
    /// (2^32 − 1 blocks); and the group descriptor table must fit in one
    /// block group (`resize2fs`: "New size results in too many block group
    /// descriptors"). The reserved GDT blocks are kept out of that table's
    /// room: measured with e2fsprogs 1.47, a 1 KiB-block image grows to
    /// that bound but fails ("Illegal doubly indirect block") when its
    /// table takes the whole group.
    pub fn max_grow_bytes(&self) -> u64 {
        let desc_per_block = self.block_size / self.desc_size.max(1);
        let table_blocks = self
            .blocks_per_group
            .saturating_sub(self.first_data_block)
            .saturating_sub(self.reserved_gdt_blocks);
        let groups = table_blocks.saturating_mul(desc_per_block);
        let mut blocks = groups
            .saturating_mul(self.blocks_per_group)
            .saturating_add(self.first_data_block);
        if !self.is_64bit {
            blocks = blocks.min((1 << 32) - 1);
        }
        blocks.saturating_mul(self.block_size)
    }

    /// The filesystem's size in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.blocks_count.saturating_mul(self.block_size)
    }
}

/// Read the superblock of the ext2/3/4 image at `path`.
pub fn ext4_geometry(path: &Path) -> Result<Ext4Geometry, ImageMgrError> {
    let f = File::open(path).map_err(io_err(path))?;
    let mut sb = [0u8; 1024];
    let bad = |why: &str| ImageMgrError::WrongKind {
        path: path.to_path_buf(),
        expected: "an ext4 filesystem image",
        found: why.to_string(),
    };
    f.read_exact_at(&mut sb, 1024)
        .map_err(|_| bad("it is too short for an ext4 superblock"))?;
    let u16_at = |o: usize| u64::from(u16::from_le_bytes([sb[o], sb[o + 1]]));
    let u32_at = |o: usize| u32::from_le_bytes([sb[o], sb[o + 1], sb[o + 2], sb[o + 3]]);
    if u16_at(0x38) != 0xEF53 {
        return Err(bad("no ext4 superblock found"));
    }
    let log = u32_at(0x18);
    if log > 6 {
        return Err(bad("its superblock has an invalid block size"));
    }
    let block_size = 1024u64 << log;
    let is_64bit = u32_at(0x60) & INCOMPAT_64BIT != 0;
    let mut blocks_count = u64::from(u32_at(0x4));
    let mut desc_size = 32;
    if is_64bit {
        blocks_count |= u64::from(u32_at(0x150)) << 32;
        let d = u16_at(0xFE);
        if d >= 32 && d.is_power_of_two() && d <= block_size {
            desc_size = d;
        }
    }
    let blocks_per_group = u64::from(u32_at(0x20));
    if blocks_per_group == 0 {
        return Err(bad("its superblock has no blocks per group"));
    }
    Ok(Ext4Geometry {
        block_size,
        blocks_count,
        blocks_per_group,
        first_data_block: u64::from(u32_at(0x14)),
        desc_size,
        reserved_gdt_blocks: u16_at(0xCE),
        is_64bit,
    })
}

/// Refuse to grow the ext4 image at `path` to `wanted` bytes when
/// `resize2fs` could not (see [`Ext4Geometry::max_grow_bytes`]).
pub fn check_ext4_growable(path: &Path, wanted: u64) -> Result<(), ImageMgrError> {
    let g = ext4_geometry(path)?;
    let max = g.max_grow_bytes();
    if wanted > max {
        return Err(ImageMgrError::TooLargeForFilesystem {
            path: path.to_path_buf(),
            wanted,
            max,
            block_size: g.block_size,
            is_64bit: g.is_64bit,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_testsupport::ext4::Mkfs;

    #[test]
    fn bounded_writer_stops_at_the_limit() {
        let mut w = BoundedWriter::new(Vec::new(), 10);
        w.write_all(b"12345").unwrap();
        w.write_all(b"67890").unwrap();
        let e = w.write(b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(w.exceeded());
        assert_eq!(w.written(), 10);
        let mut w2 = BoundedWriter::new(Vec::new(), 4);
        assert!(w2.write_all(b"12345").is_err(), "a chunk past the limit");
        assert_eq!(w2.into_inner(), b"1234", "nothing past the limit written");
    }

    #[test]
    fn copy_bounded_reads_at_most_one_byte_more() {
        // A source that counts what is read from it.
        struct Counting<'a>(&'a mut u64);
        impl Read for Counting<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                buf.fill(7);
                *self.0 += buf.len() as u64;
                Ok(buf.len())
            }
        }
        let mut read = 0;
        let mut out = Vec::new();
        let mut seen = 0u64;
        let r = copy_bounded(Counting(&mut read), &mut out, 1000, |c| {
            seen += c.len() as u64
        });
        assert!(
            matches!(r, Err(BoundedCopyError::Exceeded { written: 1000 })),
            "{r:?}"
        );
        assert_eq!(read, 1001, "an endless source is read up to limit + 1");
        assert_eq!(out.len(), 1000);
        assert_eq!(seen, 1000);
        let mut out = Vec::new();
        assert_eq!(
            copy_bounded(&b"exactly"[..], &mut out, 7, |_| {}).unwrap(),
            7
        );
        assert_eq!(copy_bounded(&b"abc"[..], &mut out, 0, |_| {}).ok(), None);
    }

    #[test]
    fn free_space_is_checked() {
        let t = tempfile::tempdir().unwrap();
        let have = available_bytes(t.path()).unwrap();
        ensure_free_space(t.path(), 1, "a test").unwrap();
        let e = ensure_free_space(t.path(), u64::MAX, "a pretend image")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a pretend image") && e.contains("available"),
            "{e}"
        );
        let e = ensure_free_space(t.path(), have, "x").unwrap_err();
        assert!(matches!(e, ImageMgrError::NoSpace { .. }), "margin kept");
    }

    #[test]
    fn geometry_of_real_filesystems() {
        let t = tempfile::tempdir().unwrap();
        let small = t.path().join("1k.ext4");
        if let Err(why) = Mkfs::new().block_size(1024).build(&small, "16M") {
            banger_testsupport::skip!("ext4 geometry test", "{why}");
        }
        let g = ext4_geometry(&small).unwrap();
        assert_eq!(g.block_size, 1024);
        assert_eq!(g.first_data_block, 1);
        assert_eq!(g.size_bytes(), 16 << 20);
        let max = g.max_grow_bytes();
        assert!(max < 2 << 40, "1 KiB blocks cannot reach 2T: {max}");
        assert!(max > 500 << 30, "{max}");
        let e = check_ext4_growable(&small, 2 << 40)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1024-byte blocks"), "{e}");
        check_ext4_growable(&small, 64 << 20).unwrap();
        // The bound: the descriptor table, minus the reserved GDT blocks,
        // fits in one group. (Growing to exactly this size with resize2fs
        // 1.47 works; it writes ~230 MB of metadata, so it is not done here.)
        let per_block = 1024 / g.desc_size;
        let groups = (g.blocks_per_group - 1 - g.reserved_gdt_blocks) * per_block;
        assert_eq!(max, (groups * g.blocks_per_group + 1) * 1024);
        // resize2fs refuses 2T, as banger does.
        crate::grow_file(&small, 2 << 40).unwrap();
        assert!(crate::resize_ext4(&small).is_err());

        let narrow = t.path().join("32bit.ext4");
        Mkfs::new()
            .features("^64bit")
            .build(&narrow, "16M")
            .unwrap();
        let g = ext4_geometry(&narrow).unwrap();
        assert!(!g.is_64bit);
        assert_eq!(g.desc_size, 32);
        assert!(g.max_grow_bytes() <= ((1u64 << 32) - 1) * g.block_size);

        let wide = t.path().join("4k.ext4");
        Mkfs::new()
            .block_size(4096)
            .features("64bit")
            .build(&wide, "64M")
            .unwrap();
        let g = ext4_geometry(&wide).unwrap();
        assert!(g.is_64bit);
        assert!(g.max_grow_bytes() >= 16 << 40, "{}", g.max_grow_bytes());

        let junk = t.path().join("junk");
        std::fs::write(&junk, vec![0u8; 4096]).unwrap();
        assert!(ext4_geometry(&junk).is_err());
        std::fs::write(&junk, b"short").unwrap();
        assert!(ext4_geometry(&junk).is_err());
    }
}
