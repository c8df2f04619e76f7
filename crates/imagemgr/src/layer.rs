//! Applying OCI/Docker image layers, in order, to a staging directory.
//!
//! Each layer is a tar stream (plain, gzip or zstd — told apart by magic
//! bytes, so media types do not matter). Whiteouts (`.wh.<name>`) delete
//! from lower layers, opaque markers (`.wh..wh..opq`) empty a directory of
//! lower-layer content. Contents, symlinks, hardlinks, fifos and mtimes are
//! written to the staging tree as the current user; what an unprivileged
//! user cannot write (ownership, modes without owner access, device nodes,
//! xattrs) is kept in [`Flattened::meta`] and applied to the ext4 image
//! afterwards (see [`crate::build_ext4`]), so nothing here needs root.
//!
//! Safety: entry paths are relative to the image root; `..` is refused, and
//! no entry is written through a symlink (a parent that is a symlink is an
//! error), so a hostile layer cannot write outside the staging tree.
//!
//! Bounds: OCI descriptors declare only the compressed size of a layer, so
//! the decompressed tar streams of all layers together may be at most the
//! flattener's limit ([`MAX_FLATTENED_BYTES`] unless [`Flattener::with_limit`]
//! lowers it; the daemon passes half the staging filesystem's free space,
//! the other half being for the ext4 image built from the tree). A layer
//! that would pass it fails with [`ImageMgrError::Oversized`] and nothing
//! past the limit is written. What the tar reader holds in memory between
//! two entries (GNU long names, pax records) is bounded by
//! [`MAX_TAR_METADATA_BYTES`].
//!
//! A layer is decompressed on a thread of its own, a few chunks ahead of
//! the thread that writes the files (the budget is counted on the writer's
//! side, so the decoder runs at most those chunks past it).
//!
//! umoci writes layer tars without the final padding and end-of-archive
//! blocks; an end of file after the last complete entry is accepted as the
//! end of the layer. A decompression error never is.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

use nix::sys::stat::{Mode, UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use crate::{ImageMgrError, io_err};

/// Owner, mode and the rest of what the ext4 image must say about a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Full `st_mode` (type bits and permission bits).
    pub mode: u32,
    /// Extended attributes, name and value.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Character or block device numbers `(major, minor)`; such nodes exist
    /// only here, not in the staging tree.
    pub device: Option<(u32, u32)>,
}

/// Totals used to size the filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Paths in the final tree (inodes needed, roughly).
    pub entries: u64,
    /// Directories among them.
    pub dirs: u64,
    /// Sum of regular file sizes, each rounded up to 4 KiB.
    pub data_bytes: u64,
}

/// The outcome of applying all layers.
#[derive(Debug)]
pub struct Flattened {
    /// The staging tree.
    pub root: PathBuf,
    /// Metadata of every path, relative to the root (`""` is the root).
    pub meta: BTreeMap<PathBuf, EntryMeta>,
    /// Totals.
    pub stats: TreeStats,
}

/// Default ceiling of the decompressed content of all layers of one image
/// (256 GiB).
pub const MAX_FLATTENED_BYTES: u64 = 256 << 30;

/// Most bytes read between two tar entries: headers, padding, GNU long
/// names and pax extensions, which the tar crate reads whole into memory
/// (16 MiB; real ones are a few hundred bytes).
pub const MAX_TAR_METADATA_BYTES: u64 = 16 << 20;

/// Applies layers one after the other to a staging tree.
pub struct Flattener {
    root: PathBuf,
    /// Decompressed bytes the remaining layers may still produce.
    budget: Rc<Cell<u64>>,
    limit: u64,
    meta: BTreeMap<PathBuf, EntryMeta>,
    sizes: BTreeMap<PathBuf, u64>,
    dir_mtimes: BTreeMap<PathBuf, i64>,
    known_dirs: HashSet<PathBuf>,
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

impl Flattener {
    /// Start with an empty staging tree at `root` (created; must not exist
    /// or be empty).
    pub fn new(root: &Path) -> Result<Self, ImageMgrError> {
        fs::create_dir_all(root).map_err(io_err(root))?;
        if fs::read_dir(root).map_err(io_err(root))?.next().is_some() {
            return Err(ImageMgrError::Layer {
                layer: root.display().to_string(),
                entry: String::new(),
                reason: "the staging directory is not empty".into(),
            });
        }
        let mut meta = BTreeMap::new();
        meta.insert(PathBuf::new(), dir_meta(0o755));
        let mut known_dirs = HashSet::new();
        known_dirs.insert(PathBuf::new());
        Ok(Self {
            root: root.to_path_buf(),
            budget: Rc::new(Cell::new(MAX_FLATTENED_BYTES)),
            limit: MAX_FLATTENED_BYTES,
            meta,
            sizes: BTreeMap::new(),
            dir_mtimes: BTreeMap::new(),
            known_dirs,
        })
    }

    /// Limit the decompressed content of all layers applied from now on to
    /// `bytes` in total (at most [`MAX_FLATTENED_BYTES`]).
    pub fn with_limit(self, bytes: u64) -> Self {
        let limit = bytes.min(MAX_FLATTENED_BYTES);
        self.budget.set(limit);
        Self { limit, ..self }
    }

    /// Apply one layer blob (plain, gzip or zstd tar). `label` names it in
    /// errors (its digest).
    pub fn apply_layer(&mut self, blob: &Path, label: &str) -> Result<(), ImageMgrError> {
        let file = File::open(blob).map_err(io_err(blob))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let magic = {
            use std::io::BufRead;
            let buf = reader.fill_buf().map_err(io_err(blob))?;
            buf.get(..4).map(|m| [m[0], m[1], m[2], m[3]])
        };
        let failed = Rc::new(RefCell::new(None));
        let decoder: Box<dyn Read + Send> = match magic {
            Some([0x1f, 0x8b, _, _]) => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
            Some([0x28, 0xb5, 0x2f, 0xfd]) => {
                Box::new(zstd::stream::read::Decoder::with_buffer(reader).map_err(io_err(blob))?)
            }
            _ => Box::new(reader),
        };
        // Decompression runs on a thread of its own, a few chunks ahead of
        // the thread that writes the files.
        std::thread::scope(|threads| {
            let (tx, rx) = std::sync::mpsc::sync_channel(DECODE_AHEAD);
            threads.spawn(move || decode_ahead(decoder, &tx));
            let decoder = Ahead {
                rx,
                chunk: Vec::new(),
                at: 0,
                done: false,
            };
            self.apply_decoded(decoder, label, &failed)
        })
    }

    fn apply_decoded(
        &mut self,
        decoder: Ahead,
        label: &str,
        failed: &Rc<RefCell<Option<String>>>,
    ) -> Result<(), ImageMgrError> {
        let over = Rc::new(Cell::new(false));
        let window = Rc::new(Cell::new(None));
        let meta_over = Rc::new(Cell::new(false));
        let guarded = Guard {
            inner: Budget {
                inner: decoder,
                left: Rc::clone(&self.budget),
                over: Rc::clone(&over),
                window: Rc::clone(&window),
                window_over: Rc::clone(&meta_over),
            },
            failed: Rc::clone(failed),
        };
        let result = self.apply_tar(guarded, label, failed, &window);
        if meta_over.get() {
            return Err(layer_err(
                label,
                "",
                &format!(
                    "a tar header (long name or pax extension) is larger than {MAX_TAR_METADATA_BYTES} bytes; the layer is corrupt or hostile"
                ),
            ));
        }
        if over.get() {
            return Err(ImageMgrError::Oversized {
                what: format!("the decompressed content of the layers (at {label})"),
                declared: self.limit,
                declared_by: "banger allows for one image (half the free space of the staging filesystem, at most 256 GiB)",
                advice: "the image is too large for this host or the layer is a decompression bomb; free space or pull a smaller image",
            });
        }
        result
    }

    fn apply_tar(
        &mut self,
        input: impl Read,
        label: &str,
        failed: &Rc<RefCell<Option<String>>>,
        window: &Rc<Cell<Option<u64>>>,
    ) -> Result<(), ImageMgrError> {
        let mut archive = tar::Archive::new(input);
        let mut this_layer: HashSet<PathBuf> = HashSet::new();
        let mut entries = archive
            .entries()
            .map_err(|e| layer_err(label, "", &e.to_string()))?;
        let mut seen = 0usize; // entries before this one
        loop {
            // What the tar crate reads to find the next entry (headers,
            // long names, pax records, the skipped data of entries that
            // are not regular files) is bounded.
            window.set(Some(MAX_TAR_METADATA_BYTES));
            let next = entries.next();
            window.set(None);
            let Some(entry) = next else { break };
            let mut entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    if let Some(why) = failed.borrow().as_ref() {
                        return Err(layer_err(label, "", &format!("cannot decompress: {why}")));
                    }
                    // The tar crate reports a missing end (padding or
                    // end blocks) as "unexpected EOF during skip".
                    let short = e.kind() == std::io::ErrorKind::UnexpectedEof
                        || e.to_string().contains("unexpected EOF");
                    if short && seen > 0 {
                        // A tar without its end blocks (umoci): the last
                        // entry was complete, so the layer ends here.
                        break;
                    }
                    return Err(layer_err(label, "", &e.to_string()));
                }
            };
            let raw = entry
                .path()
                .map_err(|e| layer_err(label, "", &e.to_string()))?
                .into_owned();
            let name = raw.display().to_string();
            let result = self.apply_entry(&mut entry, &raw, &mut this_layer);
            if let Err(e) = result {
                if let Some(why) = failed.borrow().as_ref() {
                    return Err(layer_err(
                        label,
                        &name,
                        &format!("cannot decompress: {why}"),
                    ));
                }
                return Err(match e {
                    ImageMgrError::Layer { reason, .. } => layer_err(label, &name, &reason),
                    other => layer_err(label, &name, &other.to_string()),
                });
            }
            seen += 1;
        }
        if let Some(why) = failed.borrow().as_ref() {
            return Err(layer_err(label, "", &format!("cannot decompress: {why}")));
        }
        Ok(())
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &Path,
        this_layer: &mut HashSet<PathBuf>,
    ) -> Result<(), ImageMgrError> {
        let rel = normalize(raw)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            return Ok(());
        }
        let file_name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if file_name == OPAQUE {
            self.ensure_dir(&parent)?;
            return self.opaque(&parent, this_layer);
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(bad_entry("a whiteout names no file"));
            }
            self.ensure_dir(&parent)?;
            return self.remove(&parent.join(hidden));
        }
        let header = entry.header();
        let mode = header.mode().map_err(|e| bad_entry(&e.to_string()))? & 0o7777;
        let uid = header.uid().map_err(|e| bad_entry(&e.to_string()))? as u32;
        let gid = header.gid().map_err(|e| bad_entry(&e.to_string()))? as u32;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);
        let xattrs = xattrs_of(entry)?;
        let mut meta = EntryMeta {
            uid,
            gid,
            mode,
            xattrs,
            device: None,
        };
        if rel.as_os_str().is_empty() {
            if kind != tar::EntryType::Directory {
                return Err(bad_entry("the image root is not a directory"));
            }
            meta.mode |= libc::S_IFDIR;
            self.meta.insert(rel.clone(), meta);
            self.dir_mtimes.insert(rel, mtime);
            return Ok(());
        }
        self.ensure_dir(&parent)?;
        let path = self.root.join(&rel);
        this_layer.insert(rel.clone());
        match kind {
            tar::EntryType::Directory => {
                let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    self.remove(&rel)?;
                    fs::create_dir(&path).map_err(io_err(&path))?;
                }
                set_mode(&path, (mode | 0o700) & 0o7777)?;
                self.known_dirs.insert(rel.clone());
                meta.mode |= libc::S_IFDIR;
                self.dir_mtimes.insert(rel.clone(), mtime);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                self.remove(&rel)?;
                let size = entry.size();
                let mut out = File::create(&path).map_err(io_err(&path))?;
                let copied = std::io::copy(entry, &mut out).map_err(io_err(&path))?;
                if copied != size {
                    return Err(bad_entry(&format!(
                        "the layer ends inside this file ({copied} of {size} bytes)"
                    )));
                }
                // Through the open file: no second and third path lookup.
                out.set_permissions(fs::Permissions::from_mode(mode | 0o600))
                    .map_err(io_err(&path))?;
                let t = epoch_secs(mtime);
                out.set_times(fs::FileTimes::new().set_accessed(t).set_modified(t))
                    .map_err(io_err(&path))?;
                drop(out);
                self.sizes.insert(rel.clone(), size);
                meta.mode |= libc::S_IFREG;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad_entry(&e.to_string()))?
                    .ok_or_else(|| bad_entry("a symlink without a target"))?
                    .into_owned();
                self.remove(&rel)?;
                symlink(&target, &path).map_err(io_err(&path))?;
                set_mtime(&path, mtime)?;
                meta.mode = libc::S_IFLNK | 0o777;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| bad_entry(&e.to_string()))?
                    .ok_or_else(|| bad_entry("a hardlink without a target"))?;
                let target_rel = normalize(&target)?;
                let target_parent = target_rel
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default();
                self.ensure_dir(&target_parent)?;
                let target_path = self.root.join(&target_rel);
                let target_meta = self.meta.get(&target_rel).cloned();
                if let Some(dev) = target_meta.as_ref().filter(|m| m.device.is_some()) {
                    // Device nodes live only in the metadata: the link
                    // becomes a second node with the same numbers.
                    let dev = dev.clone();
                    self.remove(&rel)?;
                    self.meta.insert(rel, dev);
                    return Ok(());
                }
                let tm = fs::symlink_metadata(&target_path).map_err(|_| {
                    bad_entry(&format!(
                        "hardlink target {} does not exist",
                        target_rel.display()
                    ))
                })?;
                if tm.is_dir() {
                    return Err(bad_entry("a hardlink to a directory"));
                }
                if target_rel == rel {
                    return Ok(());
                }
                self.remove(&rel)?;
                fs::hard_link(&target_path, &path).map_err(io_err(&path))?;
                if let Some(tm) = target_meta {
                    self.meta.insert(rel, tm);
                }
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                self.remove(&rel)?;
                meta.device = Some((major, minor));
                meta.mode |= if kind == tar::EntryType::Char {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
            }
            tar::EntryType::Fifo => {
                self.remove(&rel)?;
                nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
                    .map_err(|e| io_err(&path)(e.into()))?;
                set_mtime(&path, mtime)?;
                meta.mode |= libc::S_IFIFO;
            }
            tar::EntryType::GNULongName | tar::EntryType::GNULongLink => return Ok(()),
            other => {
                return Err(bad_entry(&format!(
                    "unsupported tar entry type {:?}",
                    other.as_byte() as char
                )));
            }
        }
        self.meta.insert(rel, meta);
        Ok(())
    }

    /// Make sure every component of `dir` is a real directory (created with
    /// default metadata when missing), never a symlink.
    fn ensure_dir(&mut self, dir: &Path) -> Result<(), ImageMgrError> {
        if self.known_dirs.contains(dir) {
            return Ok(());
        }
        let mut cur = PathBuf::new();
        for c in dir.components() {
            cur.push(c);
            if self.known_dirs.contains(&cur) {
                continue;
            }
            let p = self.root.join(&cur);
            match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(bad_entry(&format!(
                        "{} is a symlink; layers may not write through symlinks",
                        cur.display()
                    )));
                }
                Ok(_) => {
                    return Err(bad_entry(&format!("{} is not a directory", cur.display())));
                }
                Err(_) => {
                    if self.meta.get(&cur).is_some_and(|m| m.device.is_some()) {
                        return Err(bad_entry(&format!("{} is a device node", cur.display())));
                    }
                    fs::create_dir(&p).map_err(io_err(&p))?;
                    self.meta.insert(cur.clone(), dir_meta(0o755));
                }
            }
            self.known_dirs.insert(cur.clone());
        }
        Ok(())
    }

    /// Delete `rel` (a whole subtree) from the tree and the metadata.
    fn remove(&mut self, rel: &Path) -> Result<(), ImageMgrError> {
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                fs::remove_dir_all(&path).map_err(io_err(&path))?;
                self.known_dirs.retain(|d| !d.starts_with(rel));
            }
            Ok(_) => fs::remove_file(&path).map_err(io_err(&path))?,
            Err(_) => {}
        }
        let doomed: Vec<PathBuf> = self
            .meta
            .range(rel.to_path_buf()..)
            .take_while(|(k, _)| k.starts_with(rel))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.meta.remove(&k);
            self.sizes.remove(&k);
            self.dir_mtimes.remove(&k);
        }
        Ok(())
    }

    /// Remove the children of `dir` that come from lower layers.
    fn opaque(&mut self, dir: &Path, this_layer: &HashSet<PathBuf>) -> Result<(), ImageMgrError> {
        let path = self.root.join(dir);
        let mut children = Vec::new();
        for e in fs::read_dir(&path).map_err(io_err(&path))? {
            children.push(dir.join(e.map_err(io_err(&path))?.file_name()));
        }
        // Device nodes exist only in the metadata.
        children.extend(
            self.meta
                .range(dir.to_path_buf()..)
                .take_while(|(k, _)| k.starts_with(dir))
                .filter(|(k, m)| m.device.is_some() && k.parent() == Some(dir))
                .map(|(k, _)| k.clone()),
        );
        for child in children {
            if !this_layer.contains(&child) {
                self.remove(&child)?;
            } else if self.known_dirs.contains(&child) {
                self.opaque(&child, this_layer)?;
            }
        }
        Ok(())
    }

    /// Finish: set directory mtimes (deepest first) and count the tree.
    pub fn finish(self) -> Result<Flattened, ImageMgrError> {
        for (rel, mtime) in self.dir_mtimes.iter().rev() {
            let p = self.root.join(rel);
            if p.is_dir() {
                set_mtime(&p, *mtime)?;
            }
        }
        let mut stats = TreeStats::default();
        for (rel, m) in &self.meta {
            stats.entries += 1;
            if m.mode & libc::S_IFMT == libc::S_IFDIR {
                stats.dirs += 1;
            }
            if let Some(size) = self.sizes.get(rel) {
                stats.data_bytes += size.div_ceil(4096) * 4096;
            }
        }
        Ok(Flattened {
            root: self.root,
            meta: self.meta,
            stats,
        })
    }
}

/// Decompressed chunks the decoding thread may run ahead of the writer.
const DECODE_AHEAD: usize = 8;
/// Size of one decompressed chunk.
const DECODE_CHUNK: usize = 256 * 1024;

/// Read `decoder` to its end (or first error) in chunks into `tx`; stops
/// early when the reader hangs up.
fn decode_ahead(
    mut decoder: Box<dyn Read + Send>,
    tx: &std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>,
) {
    loop {
        let mut chunk = vec![0u8; DECODE_CHUNK];
        let mut filled = 0;
        let end = loop {
            match decoder.read(&mut chunk[filled..]) {
                Ok(0) => break true,
                Ok(n) => {
                    filled += n;
                    if filled == chunk.len() {
                        break false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if filled > 0 {
                        chunk.truncate(filled);
                        let _ = tx.send(Ok(chunk));
                    }
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        };
        chunk.truncate(filled);
        if (!chunk.is_empty() && tx.send(Ok(chunk)).is_err()) || end {
            return;
        }
    }
}

/// The reading end of [`decode_ahead`].
struct Ahead {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
    done: bool,
}

impl Read for Ahead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                // The decoder finished: end of stream.
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Records the first error of the decompressor, so a corrupt stream is
/// never mistaken for a short tar.
struct Guard<R> {
    inner: R,
    failed: Rc<RefCell<Option<String>>>,
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.failed
                .borrow_mut()
                .get_or_insert_with(|| e.to_string());
        })
    }
}

/// Counts decompressed bytes against the flattener's budget; past it,
/// reads fail (and `over` says why).
struct Budget<R> {
    inner: R,
    left: Rc<Cell<u64>>,
    over: Rc<Cell<bool>>,
    /// While set: bytes the current metadata read may still take.
    window: Rc<Cell<Option<u64>>>,
    window_over: Rc<Cell<bool>>,
}

impl<R: Read> Read for Budget<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(w) = self.window.get() {
            if n as u64 > w {
                self.window_over.set(true);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::FileTooLarge,
                    "a tar header passed the limit",
                ));
            }
            self.window.set(Some(w - n as u64));
        }
        let left = self.left.get();
        if n as u64 > left {
            self.left.set(0);
            self.over.set(true);
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                "the layers' content passed the limit",
            ));
        }
        self.left.set(left - n as u64);
        Ok(n)
    }
}

fn dir_meta(perm: u32) -> EntryMeta {
    EntryMeta {
        uid: 0,
        gid: 0,
        mode: libc::S_IFDIR | perm,
        xattrs: Vec::new(),
        device: None,
    }
}

/// The entry path relative to the image root; `..` and absolute prefixes
/// are refused or stripped.
fn normalize(p: &Path) -> Result<PathBuf, ImageMgrError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(bad_entry("the path contains `..`"));
            }
        }
    }
    Ok(out)
}

fn xattrs_of<R: Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Result<Vec<(String, Vec<u8>)>, ImageMgrError> {
    let mut out = Vec::new();
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| bad_entry(&e.to_string()))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| bad_entry(&e.to_string()))?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// `secs` since the epoch (before it when negative).
fn epoch_secs(secs: i64) -> std::time::SystemTime {
    let d = std::time::Duration::from_secs(secs.unsigned_abs());
    if secs < 0 {
        std::time::UNIX_EPOCH - d
    } else {
        std::time::UNIX_EPOCH + d
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ImageMgrError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err(path))
}

fn set_mtime(path: &Path, secs: i64) -> Result<(), ImageMgrError> {
    let t = TimeSpec::new(secs, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err(path)(e.into()))
}

fn bad_entry(reason: &str) -> ImageMgrError {
    ImageMgrError::Layer {
        layer: String::new(),
        entry: String::new(),
        reason: reason.to_string(),
    }
}

fn layer_err(layer: &str, entry: &str, reason: &str) -> ImageMgrError {
    ImageMgrError::Layer {
        layer: layer.to_string(),
        entry: entry.to_string(),
        reason: reason.to_string(),
    }
}
