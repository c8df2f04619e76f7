//! Turning a flattened staging tree into an ext4 image file without
//! mounting anything: `mkfs.ext4 -d` copies the tree, then one `debugfs -w`
//! script applies what the tree could not carry (ownership, modes the
//! builder could not give itself, device nodes, xattrs). Both tools come
//! from e2fsprogs and run by argv.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::layer::{Flattened, TreeStats};
use crate::{ImageMgrError, io_err};

/// Size and inode count chosen for a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Size {
    /// Image size in bytes (a multiple of 1 MiB).
    pub bytes: u64,
    /// Inodes to create.
    pub inodes: u64,
}

const MIB: u64 = 1 << 20;

/// Content plus headroom: data blocks, a block per directory, inode tables,
/// the journal and 5 % reserved blocks, then 20 % + 64 MiB free space for
/// the guest.
pub fn ext4_size(stats: &TreeStats) -> Ext4Size {
    let inodes = (stats.entries + stats.entries / 4 + 4096).next_multiple_of(1024);
    let content = stats.data_bytes + stats.dirs * 4096 + inodes * 256;
    let with_free = content + content / 5 + 64 * MIB;
    let journal = if with_free > (1 << 30) {
        128 * MIB
    } else {
        32 * MIB
    };
    let with_reserved = (with_free + journal) * 100 / 95;
    Ext4Size {
        bytes: with_reserved.next_multiple_of(MIB),
        inodes,
    }
}

/// Build `image` (must not exist) from the flattened tree. On error the
/// image file is removed.
pub fn build_ext4(tree: &Flattened, image: &Path) -> Result<Ext4Size, ImageMgrError> {
    let size = ext4_size(&tree.stats);
    let result = build(tree, image, size);
    if result.is_err() {
        let _ = std::fs::remove_file(image);
        let _ = std::fs::remove_dir_all(xattr_dir(image));
    }
    result.map(|()| size)
}

fn build(tree: &Flattened, image: &Path, size: Ext4Size) -> Result<(), ImageMgrError> {
    // Created here, 0600 (mkfs.ext4 -F keeps the mode of the file it
    // formats); an existing file is refused.
    crate::create_private_file(image)?;
    run(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-I", "256", "-N"])
            .arg(size.inodes.to_string())
            .args(["-E", "lazy_itable_init=1,lazy_journal_init=1", "-d"])
            .arg(&tree.root)
            .arg(image)
            .arg(format!("{}k", size.bytes / 1024)),
        "mkfs.ext4",
        image,
    )?;
    let xdir = xattr_dir(image);
    let script = fixup_script(tree, &xdir)?;
    if !script.is_empty() {
        let script_path = image.with_extension("debugfs");
        std::fs::write(&script_path, script).map_err(io_err(&script_path))?;
        let out = Command::new("debugfs")
            .arg("-w")
            .arg("-f")
            .arg(&script_path)
            .arg(image)
            .output();
        let _ = std::fs::remove_file(&script_path);
        let _ = std::fs::remove_dir_all(&xdir);
        let out = out.map_err(|e| tool_missing("debugfs", image, e))?;
        // debugfs exits 0 even when a command fails; its errors go to stderr.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
            .collect();
        if !out.status.success() || !errors.is_empty() {
            return Err(ImageMgrError::Tool {
                program: "debugfs",
                path: image.to_path_buf(),
                message: errors.join("; "),
            });
        }
    }
    Ok(())
}

fn xattr_dir(image: &Path) -> std::path::PathBuf {
    image.with_extension("xattrs")
}

/// The `debugfs` commands that bring the image in line with `tree.meta`:
/// nodes first, then owners and modes, then xattrs. Values of xattrs are
/// written to files under `xdir` (`ea_set -f`).
pub fn fixup_script(tree: &Flattened, xdir: &Path) -> Result<String, ImageMgrError> {
    let mut nodes = String::new();
    let mut attrs = String::new();
    let mut xattrs = String::new();
    let mut nx = 0usize;
    for (rel, m) in &tree.meta {
        let spec = quoted(rel)?;
        let (uid, gid, mode) = if let Some((major, minor)) = m.device {
            let parent = rel.parent().unwrap_or(Path::new(""));
            let kind = if m.mode & libc::S_IFMT == libc::S_IFBLK {
                'b'
            } else {
                'c'
            };
            let base = rel.file_name().map(Path::new).unwrap_or(Path::new(""));
            writeln!(nodes, "cd {}", quoted(parent)?).ok();
            writeln!(nodes, "mknod \"{}\" {kind} {major} {minor}", base.display()).ok();
            (None, None, None)
        } else {
            let path = tree.root.join(rel);
            let st = std::fs::symlink_metadata(&path).map_err(io_err(&path))?;
            (Some(st.uid()), Some(st.gid()), Some(st.mode()))
        };
        if uid != Some(m.uid) {
            writeln!(attrs, "set_inode_field {spec} uid {}", m.uid).ok();
        }
        if gid != Some(m.gid) {
            writeln!(attrs, "set_inode_field {spec} gid {}", m.gid).ok();
        }
        if mode != Some(m.mode) && m.mode & libc::S_IFMT != libc::S_IFLNK {
            writeln!(attrs, "set_inode_field {spec} mode 0{:o}", m.mode).ok();
        }
        for (name, value) in &m.xattrs {
            if name.contains(char::is_whitespace) || name.contains('"') {
                return Err(ImageMgrError::Unsupported {
                    what: format!("xattr name {name:?} on /{}", rel.display()),
                });
            }
            std::fs::create_dir_all(xdir).map_err(io_err(xdir))?;
            let vf = xdir.join(nx.to_string());
            nx += 1;
            std::fs::write(&vf, value).map_err(io_err(&vf))?;
            writeln!(xattrs, "ea_set -f \"{}\" {spec} {name}", vf.display()).ok();
        }
    }
    if !nodes.is_empty() {
        nodes.push_str("cd /\n");
    }
    Ok(nodes + &attrs + &xattrs)
}

/// `"/<rel>"` for debugfs, which splits on blanks unless quoted; names with
/// a quote or a newline cannot be expressed and are refused.
fn quoted(rel: &Path) -> Result<String, ImageMgrError> {
    let s = format!("/{}", rel.display());
    if s.contains('"') || s.contains('\n') {
        return Err(ImageMgrError::Unsupported {
            what: format!("a path with a quote or newline ({s:?})"),
        });
    }
    Ok(format!("\"{s}\""))
}

fn run(cmd: &mut Command, program: &'static str, image: &Path) -> Result<(), ImageMgrError> {
    let out = cmd.output().map_err(|e| tool_missing(program, image, e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(ImageMgrError::Tool {
        program,
        path: image.to_path_buf(),
        message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

fn tool_missing(program: &'static str, image: &Path, e: std::io::Error) -> ImageMgrError {
    ImageMgrError::Tool {
        program,
        path: image.to_path_buf(),
        message: format!("cannot run {program} (install e2fsprogs): {e}"),
    }
}
