//! Recognise an image file by its magic bytes (plain tar, gzip, bzip2, xz, zstd, squashfs) and
//! open it as a stream of decompressed bytes. Never reads a whole file into memory.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::{Error, IoContext, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// An uncompressed tarball.
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    /// A squashfs filesystem (a split image's rootfs only).
    Squashfs,
}

impl Compression {
    /// The file extension LXD uses on export (`.tar.xz`, `.squashfs`, ...).
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Tar => ".tar",
            Compression::Gzip => ".tar.gz",
            Compression::Bzip2 => ".tar.bz2",
            Compression::Xz => ".tar.xz",
            Compression::Zstd => ".tar.zst",
            Compression::Squashfs => ".squashfs",
        }
    }

    pub fn is_tarball(self) -> bool {
        self != Compression::Squashfs
    }
}

/// Classify the first bytes of a file (at least 262 bytes are needed to see a plain tar).
pub fn detect_compression(head: &[u8]) -> Option<Compression> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some(Compression::Gzip)
    } else if head.starts_with(b"BZh") {
        Some(Compression::Bzip2)
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Some(Compression::Xz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some(Compression::Zstd)
    } else if head.starts_with(b"hsqs") {
        Some(Compression::Squashfs)
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some(Compression::Tar)
    } else {
        None
    }
}

/// Detect the format of the file at `path`.
pub fn detect_file(path: &Path) -> Result<Compression> {
    let mut f = File::open(path).ctx("open", path)?;
    let mut head = Vec::with_capacity(512);
    (&mut f)
        .take(512)
        .read_to_end(&mut head)
        .ctx("read", path)?;
    detect_compression(&head).ok_or_else(|| {
        Error::Invalid(format!(
            "Unsupported image format in {}: not a tarball (tar, gz, bz2, xz, zstd) or squashfs",
            path.file_name().unwrap_or_default().to_string_lossy()
        ))
    })
}

/// Open a tarball (compressed or not) as a stream of tar bytes.
pub fn open_decompressed(path: &Path) -> Result<(Compression, Box<dyn Read + Send>)> {
    let kind = detect_file(path)?;
    let mut f = File::open(path).ctx("open", path)?;
    f.seek(SeekFrom::Start(0)).ctx("seek", path)?;
    let buf = BufReader::with_capacity(256 * 1024, f);
    let reader: Box<dyn Read + Send> = match kind {
        Compression::Tar => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(buf)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buf)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buf).ctx("start zstd decoder for", path)?,
        ),
        Compression::Squashfs => {
            return Err(Error::Invalid(
                "A squashfs file is not a tarball (only a split image's rootfs may be squashfs)"
                    .into(),
            ));
        }
    };
    Ok((kind, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::testutil::*;

    #[test]
    fn detects_and_decodes_every_format() {
        let dir = tempfile::tempdir().unwrap();
        let tar = simple_image_tar();
        for c in [
            Compression::Tar,
            Compression::Gzip,
            Compression::Bzip2,
            Compression::Xz,
            Compression::Zstd,
        ] {
            let p = dir.path().join(format!("img{}", c.extension()));
            std::fs::write(&p, compress(&tar, c)).unwrap();
            assert_eq!(detect_file(&p).unwrap(), c);
            let (k, mut r) = open_decompressed(&p).unwrap();
            assert_eq!(k, c);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, tar, "{c:?}");
        }
        let p = dir.path().join("garbage");
        std::fs::write(&p, b"hello, this is not an image").unwrap();
        let Err(e) = open_decompressed(&p) else {
            panic!("garbage accepted")
        };
        assert!(e.to_string().starts_with("Unsupported image format"), "{e}");
        assert_eq!(detect_compression(b"hsqs\0\0"), Some(Compression::Squashfs));
        assert_eq!(detect_compression(b""), None);
    }
}
