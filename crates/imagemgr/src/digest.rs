//! Content digests (`sha256:<hex>`): parsing, hashing files and streams, and
//! verifying that a blob is what its descriptor says.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::{ImageMgrError, io_err};

/// A parsed `sha256:<64 hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Digest(String);

impl Sha256Digest {
    /// Parse `sha256:<64 lowercase hex>`; anything else (other algorithms,
    /// wrong length, path characters) is refused, so the hex part is safe to
    /// use as a file name.
    pub fn parse(s: &str) -> Result<Self, ImageMgrError> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| bad_digest(s))?;
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad_digest(s));
        }
        Ok(Self(hex.to_string()))
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.0)
    }
}

fn bad_digest(s: &str) -> ImageMgrError {
    ImageMgrError::BadDigest {
        digest: s.to_string(),
    }
}

/// A running SHA-256 that can also be used as a `Write` sink.
#[derive(Default, Clone)]
pub struct Hasher(Sha256);

impl Hasher {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Sha256Digest {
        Sha256Digest(hex(&self.0.finalize()))
    }
}

impl Write for Hasher {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// SHA-256 of a file's content.
pub fn sha256_file(path: &Path) -> Result<Sha256Digest, ImageMgrError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut h = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish())
}

/// Check that `path` hashes to `expected`.
pub fn verify_file(path: &Path, expected: &Sha256Digest) -> Result<(), ImageMgrError> {
    let actual = sha256_file(path)?;
    if &actual != expected {
        return Err(ImageMgrError::DigestMismatch {
            what: path.display().to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_verifies() {
        assert!(Sha256Digest::parse("sha512:00").is_err());
        assert!(Sha256Digest::parse("sha256:../../etc").is_err());
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d = Sha256Digest::parse(empty).unwrap();
        assert_eq!(d.to_string(), empty);
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("blob");
        std::fs::write(&f, b"").unwrap();
        verify_file(&f, &d).unwrap();
        std::fs::write(&f, b"x").unwrap();
        let e = verify_file(&f, &d).unwrap_err().to_string();
        assert!(e.contains("digest mismatch"), "{e}");
    }
}
