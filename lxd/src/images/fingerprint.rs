//! Image fingerprints (LXD `doc/reference/image_format.md`): sha256 of the unified tarball, or
//! of the metadata tarball's bytes followed by the rootfs file's bytes for a split image.
//! Always streamed; a writer adapter hashes an upload while it is written to disk.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{IoContext, Result};

/// sha256 over the concatenation of `files`, and their total size.
pub fn fingerprint_files(files: &[&Path]) -> Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1024 * 1024];
    for path in files {
        let mut f = File::open(path).ctx("open", path)?;
        loop {
            let n = f.read(&mut buf).ctx("read", path)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            total += n as u64;
        }
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Wraps a writer and hashes everything written through it (an upload going to a temp file).
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The hex sha256 and byte count so far, and the inner writer.
    pub fn finish(self) -> (String, u64, W) {
        (
            hex::encode(self.hasher.finalize()),
            self.written,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_hash_of_concatenation() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::write(&a, b"meta").unwrap();
        std::fs::write(&b, b"rootfs").unwrap();
        let (fp, size) = fingerprint_files(&[&a, &b]).unwrap();
        assert_eq!(size, 10);
        assert_eq!(fp, hex::encode(Sha256::digest(b"metarootfs")));
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"meta").unwrap();
        w.write_all(b"rootfs").unwrap();
        let (fp2, n, inner) = w.finish();
        assert_eq!((fp2, n, inner.len()), (fp, 10, 10));
        assert!(fingerprint_files(&[&d.path().join("missing")]).is_err());
    }
}
