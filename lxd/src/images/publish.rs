//! Packing an instance (or snapshot) volume into a unified image tarball for `lxc publish`:
//! `metadata.yaml` (given), `templates/` and `rootfs/` with ownership, modes, mtimes,
//! symlinks, hardlinks, device nodes and xattrs, compressed as `images.compression_algorithm`
//! says, fingerprinted while it is written. Ownership shifted on disk for an unprivileged
//! container is mapped back to container ids, so the image is the same however it was stored.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use lxd_api::ImageMetadata;
use lxd_runtime::spec::IdMap;

use super::compression::Compression;
use super::fingerprint::HashingWriter;
use super::{Error, IoContext, Result};

/// The compression of a published image from `images.compression_algorithm` (LXD accepts a
/// command with arguments; only the command name matters here).
pub fn compression_for(algorithm: &str) -> Result<Compression> {
    match algorithm.split_whitespace().next().unwrap_or("gzip") {
        "" | "gzip" | "pigz" => Ok(Compression::Gzip),
        "bzip2" => Ok(Compression::Bzip2),
        "xz" => Ok(Compression::Xz),
        "zstd" => Ok(Compression::Zstd),
        "none" => Ok(Compression::Tar),
        other => Err(Error::Invalid(format!(
            "Unsupported image compression algorithm \"{other}\""
        ))),
    }
}

/// What a pack produced: the fingerprint and size of the tarball at `out`.
#[derive(Debug, Clone)]
pub struct Packed {
    pub fingerprint: String,
    pub size: u64,
}

/// Map an id stored on disk back to the container's id (the inverse of the shift).
fn unshift(ranges: &[lxd_runtime::spec::IdRange], host: u32) -> u32 {
    for r in ranges {
        if host >= r.host_id && host - r.host_id < r.count {
            return r.ns_id + (host - r.host_id);
        }
    }
    host
}

/// Write the image tarball for `volume` (holding `rootfs/` and maybe `templates/`) to `out`.
/// `shifted` is the id map the files on disk were shifted with, if any. `progress` gets the
/// bytes of file content packed so far.
pub fn pack_image(
    volume: &Path,
    metadata: &ImageMetadata,
    compression: Compression,
    shifted: Option<&IdMap>,
    out: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Packed> {
    let file = File::create(out).ctx("create", out)?;
    let hashing = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let packed = match compression {
        Compression::Tar => {
            let w = write_tar(hashing, volume, metadata, shifted, progress)?;
            finish(w, out)?
        }
        Compression::Gzip => {
            let enc = flate2::write::GzEncoder::new(hashing, flate2::Compression::default());
            let enc = write_tar(enc, volume, metadata, shifted, progress)?;
            finish(enc.finish().ctx("compress", out)?, out)?
        }
        Compression::Bzip2 => {
            let enc = bzip2::write::BzEncoder::new(hashing, bzip2::Compression::default());
            let enc = write_tar(enc, volume, metadata, shifted, progress)?;
            finish(enc.finish().ctx("compress", out)?, out)?
        }
        Compression::Xz => {
            let enc = liblzma::write::XzEncoder::new(hashing, 6);
            let enc = write_tar(enc, volume, metadata, shifted, progress)?;
            finish(enc.finish().ctx("compress", out)?, out)?
        }
        Compression::Zstd => {
            let enc = zstd::Encoder::new(hashing, 3).ctx("compress", out)?;
            let enc = write_tar(enc, volume, metadata, shifted, progress)?;
            finish(enc.finish().ctx("compress", out)?, out)?
        }
        Compression::Squashfs => {
            return Err(Error::Invalid(
                "Publishing squashfs images is not supported".into(),
            ));
        }
    };
    Ok(packed)
}

fn finish(w: HashingWriter<BufWriter<File>>, out: &Path) -> Result<Packed> {
    let (fingerprint, size, mut inner) = w.finish();
    inner.flush().ctx("write", out)?;
    inner
        .into_inner()
        .map_err(|e| Error::io("write", out, e.into_error()))?
        .sync_all()
        .ctx("sync", out)?;
    Ok(Packed { fingerprint, size })
}

fn write_tar<W: Write>(
    w: W,
    volume: &Path,
    metadata: &ImageMetadata,
    shifted: Option<&IdMap>,
    progress: &mut dyn FnMut(u64),
) -> Result<W> {
    let mut b = tar::Builder::new(w);
    b.mode(tar::HeaderMode::Complete);
    let yaml = yaml_serde::to_string(metadata)
        .map_err(|e| Error::Invalid(format!("Cannot encode metadata.yaml: {e}")))?;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(yaml.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(u64::try_from(metadata.creation_date).unwrap_or(0));
    b.append_data(&mut h, "metadata.yaml", yaml.as_bytes())
        .ctx("write", Path::new("metadata.yaml"))?;
    let mut walker = Walker {
        builder: &mut b,
        shifted,
        links: HashMap::new(),
        progress,
    };
    let templates = volume.join("templates");
    if templates.is_dir() {
        walker.entry(&templates, Path::new("templates"), None)?;
    }
    let rootfs = volume.join("rootfs");
    if !rootfs.is_dir() {
        return Err(Error::Invalid(format!(
            "{} has no rootfs",
            volume.display()
        )));
    }
    walker.entry(&rootfs, Path::new("rootfs"), None)?;
    b.into_inner().ctx("write", volume)
}

struct Walker<'a, W: Write> {
    builder: &'a mut tar::Builder<W>,
    shifted: Option<&'a IdMap>,
    /// Regular files with more than one link, by (dev, inode): the first path packed.
    links: HashMap<(u64, u64), PathBuf>,
    progress: &'a mut dyn FnMut(u64),
}

impl<W: Write> Walker<'_, W> {
    fn entry(&mut self, path: &Path, name: &Path, meta: Option<fs::Metadata>) -> Result<()> {
        let meta = match meta {
            Some(m) => m,
            None => fs::symlink_metadata(path).ctx("stat", path)?,
        };
        let ft = meta.file_type();
        let mut h = tar::Header::new_gnu();
        let (uid, gid) = match self.shifted {
            Some(m) => (unshift(&m.uid, meta.uid()), unshift(&m.gid, meta.gid())),
            None => (meta.uid(), meta.gid()),
        };
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mode(meta.mode() & 0o7777);
        h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        h.set_size(0);
        self.xattrs(path)?;
        let b = &mut *self.builder;
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, name, std::io::empty())
                .ctx("pack", path)?;
            let mut children: Vec<_> = fs::read_dir(path)
                .ctx("read directory", path)?
                .collect::<std::io::Result<Vec<_>>>()
                .ctx("read directory", path)?;
            children.sort_by_key(|e| e.file_name());
            for c in children {
                let m = c.metadata().ctx("stat", &c.path())?;
                self.entry(&c.path(), &name.join(c.file_name()), Some(m))?;
            }
        } else if ft.is_symlink() {
            let target = fs::read_link(path).ctx("read link", path)?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, name, &target).ctx("pack", path)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, name, first).ctx("pack", path)?;
                    return Ok(());
                }
                self.links.insert(key, name.to_path_buf());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(meta.len());
            let f = File::open(path).ctx("open", path)?;
            b.append_data(&mut h, name, f).ctx("pack", path)?;
            (self.progress)(meta.len());
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            });
            let rdev = meta.rdev();
            let (major, minor) = (libc::major(rdev), libc::minor(rdev));
            h.set_device_major(major).ctx("pack", path)?;
            h.set_device_minor(minor).ctx("pack", path)?;
            b.append_data(&mut h, name, std::io::empty())
                .ctx("pack", path)?;
        }
        // Sockets are not part of an image.
        Ok(())
    }

    /// xattrs (file capabilities, ACLs) as pax `SCHILY.xattr.*` records, which unpacking
    /// applies.
    fn xattrs(&mut self, path: &Path) -> Result<()> {
        let Ok(names) = xattr::list(path) else {
            return Ok(());
        };
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        for n in names {
            let Some(key) = n.to_str() else { continue };
            if let Ok(Some(v)) = xattr::get(path, &n) {
                pax.push((format!("SCHILY.xattr.{key}"), v));
            }
        }
        if !pax.is_empty() {
            self.builder
                .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .ctx("pack", path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn packs_a_volume_that_imports_and_unpacks_back() {
        let d = tempfile::tempdir().unwrap();
        let vol = d.path().join("vol");
        fs::create_dir_all(vol.join("rootfs/etc")).unwrap();
        fs::create_dir_all(vol.join("templates")).unwrap();
        fs::write(vol.join("templates/hostname.tpl"), "{{ container.name }}\n").unwrap();
        fs::write(vol.join("rootfs/etc/hostname"), "c1\n").unwrap();
        fs::set_permissions(
            vol.join("rootfs/etc/hostname"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::symlink("hostname", vol.join("rootfs/etc/name")).unwrap();
        fs::hard_link(
            vol.join("rootfs/etc/hostname"),
            vol.join("rootfs/etc/hostname2"),
        )
        .unwrap();
        let meta = ImageMetadata {
            architecture: "x86_64".into(),
            creation_date: 1_700_000_000,
            properties: [("os".to_string(), "busybox".to_string())].into(),
            ..Default::default()
        };
        for c in [
            Compression::Gzip,
            Compression::Xz,
            Compression::Zstd,
            Compression::Tar,
        ] {
            let out = d.path().join(format!("img{}", c.extension()));
            let mut seen = 0;
            let p = pack_image(&vol, &meta, c, None, &out, &mut |n| seen += n).unwrap();
            // The template (21 bytes) and the file once: the hardlink is a link entry.
            assert_eq!(seen, 21 + 3, "the hardlink is packed once");
            assert_eq!(p.size, fs::metadata(&out).unwrap().len());
            let store = d.path().join(format!("store{}", c.extension()));
            let img = crate::images::import_unified(&store, &out, Some(&p.fingerprint)).unwrap();
            assert_eq!(img.properties()["os"], "busybox");
            assert_eq!(img.compression, c);
            let target = d.path().join(format!("unpacked{}", c.extension()));
            crate::images::unpack_image(&store, &p.fingerprint, &target).unwrap();
            let f = target.join("rootfs/etc/hostname");
            assert_eq!(fs::read_to_string(&f).unwrap(), "c1\n");
            assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, 0o640);
            assert_eq!(
                fs::read_link(target.join("rootfs/etc/name")).unwrap(),
                Path::new("hostname")
            );
            assert!(target.join("templates/hostname.tpl").is_file());
        }
        assert!(compression_for("squashfs").is_err());
        assert_eq!(compression_for("xz -9").unwrap(), Compression::Xz);
    }

    #[test]
    fn shifted_ids_are_mapped_back() {
        let m = IdMap {
            uid: vec![lxd_runtime::spec::IdRange {
                ns_id: 0,
                host_id: 1_000_000,
                count: 65536,
            }],
            gid: vec![],
        };
        assert_eq!(unshift(&m.uid, 1_000_000), 0);
        assert_eq!(unshift(&m.uid, 1_001_000), 1000);
        assert_eq!(unshift(&m.uid, 5), 5);
    }
}
