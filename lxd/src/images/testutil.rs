//! Test helpers: build small tarballs in memory with the `tar` crate, including crafted headers
//! that the builder's own checks would refuse (`..`, absolute paths, hostile link targets).

use std::io::Write;

use tar::{EntryType, Header};

use super::Compression;

pub(crate) const METADATA: &str = "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: busybox\n  description: test image\ntemplates:\n  /etc/hostname:\n    when:\n    - create\n    - copy\n    template: hostname.tpl\n";

/// A tar builder that writes header names verbatim.
pub(crate) struct RawTar {
    b: tar::Builder<Vec<u8>>,
}

impl RawTar {
    pub(crate) fn new() -> Self {
        RawTar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: EntryType, path: &str, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(size);
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h
    }

    fn link_header(kind: EntryType, path: &str, target: &str) -> Header {
        let mut h = Self::header(kind, path, 0o777, 0);
        let ln = &mut h.as_old_mut().linkname;
        ln[..target.len()].copy_from_slice(target.as_bytes());
        h
    }

    pub(crate) fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(EntryType::Directory, path, mode, 0);
        h.set_cksum();
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }

    pub(crate) fn file(mut self, path: &str, data: &[u8]) -> Self {
        self = self.file_owned(path, data, 0o644, 0, 0);
        self
    }

    pub(crate) fn file_owned(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> Self {
        let mut h = Self::header(EntryType::Regular, path, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub(crate) fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::link_header(EntryType::Symlink, path, target);
        h.set_cksum();
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }

    pub(crate) fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::link_header(EntryType::Link, path, target);
        h.set_cksum();
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }

    pub(crate) fn chardev(mut self, path: &str, major: u32, minor: u32) -> Self {
        let mut h = Self::header(EntryType::Char, path, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_cksum();
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }

    pub(crate) fn fifo(mut self, path: &str) -> Self {
        let mut h = Self::header(EntryType::Fifo, path, 0o600, 0);
        h.set_cksum();
        self.b.append(&h, std::io::empty()).unwrap();
        self
    }

    /// A pax header carrying one xattr for the next entry.
    pub(crate) fn pax_xattr(mut self, key: &str, value: &str) -> Self {
        let kv = format!("SCHILY.xattr.{key}={value}");
        let mut len = kv.len() + 3;
        if format!("{len} {kv}\n").len() != len {
            len += 1;
        }
        let rec = format!("{len} {kv}\n");
        let mut h = Self::header(EntryType::XHeader, "PaxHeaders/x", 0o644, rec.len() as u64);
        h.set_cksum();
        self.b.append(&h, rec.as_bytes()).unwrap();
        self
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

/// A small valid unified image.
pub(crate) fn simple_image_tar() -> Vec<u8> {
    RawTar::new()
        .file("metadata.yaml", METADATA.as_bytes())
        .dir("rootfs/", 0o755)
        .dir("rootfs/etc/", 0o755)
        .file("rootfs/etc/hostname", b"image\n")
        .file_owned("rootfs/etc/shadow", b"root:*:\n", 0o640, 0, 42)
        .symlink("rootfs/etc/mtab", "/proc/self/mounts")
        .hardlink("rootfs/etc/hostname2", "rootfs/etc/hostname")
        .dir("rootfs/tmp/", 0o1777)
        .dir("templates/", 0o755)
        .file("templates/hostname.tpl", b"{{ container.name }}\n")
        .finish()
}

pub(crate) fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::Tar | Compression::Squashfs => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Bzip2 => {
            let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Xz => {
            let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::stream::encode_all(data, 1).unwrap(),
    }
}

pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Say a test was skipped on the real stderr (the harness swallows `eprintln!` of passing tests).
pub(crate) fn skip(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {msg}");
}
