//! The image store `$LXD_DIR/images/`: import an uploaded unified tarball, or a metadata tarball
//! plus a rootfs (tar or squashfs), after validating it; export and delete stored images.
//! Files land in the store only once fully validated and fingerprinted.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use lxd_api::ImageMetadata;

use super::compression::{Compression, detect_file, open_decompressed};
use super::fingerprint::fingerprint_files;
use super::{Error, IoContext, Result};

/// metadata.yaml is small; anything bigger is not an image we want to parse.
const MAX_METADATA: u64 = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// One tarball holding metadata.yaml, rootfs/ and templates/.
    Unified,
    /// A metadata tarball plus a separate rootfs file (`<fp>.rootfs`).
    Split,
}

/// What an import produced.
#[derive(Debug, Clone)]
pub struct ImportedImage {
    pub fingerprint: String,
    /// Total bytes of the stored file(s).
    pub size: u64,
    pub metadata: ImageMetadata,
    pub kind: ImageKind,
    /// The API's image type; always "container" here.
    pub image_type: &'static str,
    /// Compression of the unified or metadata tarball.
    pub compression: Compression,
    /// Format of a split image's rootfs file.
    pub rootfs_format: Option<Compression>,
}

impl ImportedImage {
    pub fn architecture(&self) -> &str {
        &self.metadata.architecture
    }

    pub fn properties(&self) -> &std::collections::BTreeMap<String, String> {
        &self.metadata.properties
    }
}

pub(crate) fn check_fingerprint(fp: &str) -> Result<()> {
    if fp.is_empty() || fp.len() > 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid(format!("Invalid image fingerprint {fp:?}")));
    }
    Ok(())
}

/// Parse metadata.yaml (YAML or JSON) and insist on an architecture.
pub fn parse_metadata(text: &str) -> Result<ImageMetadata> {
    let meta: ImageMetadata = yaml_serde::from_str(text).map_err(|e| {
        let e = e.to_string();
        Error::Invalid(format!(
            "Invalid metadata.yaml: {}",
            e.lines().next().unwrap_or_default()
        ))
    })?;
    if meta.architecture.trim().is_empty() {
        return Err(Error::Invalid("metadata.yaml has no architecture".into()));
    }
    Ok(meta)
}

/// Read `metadata.yaml` out of a (compressed) tarball, streaming; also reports whether the
/// tarball has a `rootfs/`. Stops reading as soon as it has both.
pub fn read_tarball_metadata(path: &Path) -> Result<(Compression, ImageMetadata, bool)> {
    let (kind, reader) = open_decompressed(path)?;
    let mut ar = tar::Archive::new(reader);
    let bad = |e: std::io::Error| Error::Invalid(format!("Invalid image tarball: {e}"));
    let mut meta = None;
    let mut has_rootfs = false;
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let p = entry.path().map_err(bad)?.into_owned();
        let rel: PathBuf = p
            .components()
            .filter(|c| matches!(c, std::path::Component::Normal(_)))
            .collect();
        if rel == Path::new("metadata.yaml") && entry.header().entry_type().is_file() {
            if entry.size() > MAX_METADATA {
                return Err(Error::Invalid("metadata.yaml is too large".into()));
            }
            let mut text = String::new();
            (&mut entry)
                .take(MAX_METADATA)
                .read_to_string(&mut text)
                .map_err(|_| Error::Invalid("metadata.yaml is not UTF-8 text".into()))?;
            meta = Some(parse_metadata(&text)?);
        } else if rel.starts_with("rootfs") {
            has_rootfs = true;
        }
        if meta.is_some() && has_rootfs {
            break;
        }
    }
    let meta = meta.ok_or_else(|| Error::Invalid("Image tarball has no metadata.yaml".into()))?;
    Ok((kind, meta, has_rootfs))
}

fn check_expected(expected: Option<&str>, actual: &str) -> Result<()> {
    match expected {
        Some(e) if !e.eq_ignore_ascii_case(actual) => Err(Error::FingerprintMismatch {
            expected: e.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Move `src` to `dst`: rename, or copy + rename when they are on different filesystems.
fn move_file(src: &Path, dst: &Path) -> Result<()> {
    match fs::rename(src, dst) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
            let tmp = dst.with_extension("importing");
            let r = fs::copy(src, &tmp)
                .ctx("copy", src)
                .and_then(|_| fs::rename(&tmp, dst).ctx("rename", &tmp));
            if r.is_err() {
                let _ = fs::remove_file(&tmp);
                return r;
            }
            fs::remove_file(src).ctx("remove", src)
        }
        Err(e) => Err(Error::io("move", src, e)),
    }
}

/// Move validated files into the store under their final names; all or nothing.
fn install(images_dir: &Path, fp: &str, files: &[(&Path, String)]) -> Result<()> {
    fs::create_dir_all(images_dir).ctx("create directory", images_dir)?;
    for (_, name) in files {
        if images_dir.join(name).exists() {
            return Err(Error::AlreadyExists(fp.to_string()));
        }
    }
    let mut done: Vec<(PathBuf, &Path)> = Vec::new();
    for (src, name) in files {
        let dst = images_dir.join(name);
        let r = move_file(src, &dst).and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dst, fs::Permissions::from_mode(0o600)).ctx("chmod", &dst)
        });
        if let Err(e) = r {
            for (d, s) in done.into_iter().rev() {
                if move_file(&d, s).is_err() {
                    let _ = fs::remove_file(&d);
                }
            }
            return Err(e);
        }
        done.push((dst, src));
    }
    Ok(())
}

/// Import an uploaded unified image (a temp file, moved into `images_dir/<fp>` on success and
/// left in place on failure). `expected` verifies a downloaded image's fingerprint.
pub fn import_unified(
    images_dir: &Path,
    tarball: &Path,
    expected: Option<&str>,
) -> Result<ImportedImage> {
    let (compression, metadata, has_rootfs) = read_tarball_metadata(tarball)?;
    if !has_rootfs {
        return Err(Error::Invalid("Image tarball has no rootfs".into()));
    }
    let (fingerprint, size) = fingerprint_files(&[tarball])?;
    check_expected(expected, &fingerprint)?;
    install(images_dir, &fingerprint, &[(tarball, fingerprint.clone())])?;
    Ok(ImportedImage {
        fingerprint,
        size,
        metadata,
        kind: ImageKind::Unified,
        image_type: "container",
        compression,
        rootfs_format: None,
    })
}

/// Import a split image: a metadata tarball plus a rootfs (squashfs or tarball), stored as
/// `<fp>` and `<fp>.rootfs` where fp = sha256(metadata bytes ‖ rootfs bytes).
pub fn import_split(
    images_dir: &Path,
    metadata_tarball: &Path,
    rootfs: &Path,
    expected: Option<&str>,
) -> Result<ImportedImage> {
    let (compression, metadata, _) = read_tarball_metadata(metadata_tarball)?;
    let rootfs_format = detect_file(rootfs)
        .map_err(|_| Error::Invalid("The rootfs is neither a tarball nor squashfs".into()))?;
    if rootfs_format.is_tarball() {
        let (_, reader) = open_decompressed(rootfs)?;
        let mut ar = tar::Archive::new(reader);
        let first = ar
            .entries()
            .and_then(|mut it| it.next().transpose())
            .map_err(|e| Error::Invalid(format!("Invalid rootfs tarball: {e}")))?;
        if first.is_none() {
            return Err(Error::Invalid("The rootfs tarball is empty".into()));
        }
    }
    let (fingerprint, size) = fingerprint_files(&[metadata_tarball, rootfs])?;
    check_expected(expected, &fingerprint)?;
    install(
        images_dir,
        &fingerprint,
        &[
            (metadata_tarball, fingerprint.clone()),
            (rootfs, format!("{fingerprint}.rootfs")),
        ],
    )?;
    Ok(ImportedImage {
        fingerprint,
        size,
        metadata,
        kind: ImageKind::Split,
        image_type: "container",
        compression,
        rootfs_format: Some(rootfs_format),
    })
}

/// One file of an export: the multipart field name LXD uses, where it is, a download name.
#[derive(Debug, Clone)]
pub struct ExportPart {
    /// "metadata" or "rootfs" (multipart field names of a split export).
    pub field: &'static str,
    pub path: PathBuf,
    pub filename: String,
    pub size: u64,
}

impl ExportPart {
    pub fn open(&self) -> Result<fs::File> {
        fs::File::open(&self.path).ctx("open", &self.path)
    }
}

/// What `GET /1.0/images/<fp>/export` sends: one octet-stream for a unified image, or a
/// multipart body (`metadata` then `rootfs`) for a split one.
#[derive(Debug, Clone)]
pub struct Export {
    pub kind: ImageKind,
    pub parts: Vec<ExportPart>,
}

pub fn export_image(images_dir: &Path, fp: &str) -> Result<Export> {
    check_fingerprint(fp)?;
    let meta = images_dir.join(fp);
    let m = fs::metadata(&meta).map_err(|_| Error::NotFound(fp.to_string()))?;
    let ext = detect_file(&meta)?.extension();
    let rootfs = images_dir.join(format!("{fp}.rootfs"));
    match fs::metadata(&rootfs) {
        Ok(r) => Ok(Export {
            kind: ImageKind::Split,
            parts: vec![
                ExportPart {
                    field: "metadata",
                    path: meta,
                    filename: format!("meta-{fp}{ext}"),
                    size: m.len(),
                },
                ExportPart {
                    field: "rootfs",
                    filename: format!("{fp}{}", detect_file(&rootfs)?.extension()),
                    path: rootfs,
                    size: r.len(),
                },
            ],
        }),
        Err(_) => Ok(Export {
            kind: ImageKind::Unified,
            parts: vec![ExportPart {
                field: "metadata",
                path: meta,
                filename: format!("{fp}{ext}"),
                size: m.len(),
            }],
        }),
    }
}

/// Remove an image's file(s) from the store.
pub fn delete_image(images_dir: &Path, fp: &str) -> Result<()> {
    check_fingerprint(fp)?;
    let meta = images_dir.join(fp);
    if !meta.exists() {
        return Err(Error::NotFound(fp.to_string()));
    }
    let rootfs = images_dir.join(format!("{fp}.rootfs"));
    if rootfs.exists() {
        fs::remove_file(&rootfs).ctx("remove", &rootfs)?;
    }
    fs::remove_file(&meta).ctx("remove", &meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::testutil::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn imports_unified_in_every_compression() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("images");
        for c in [
            Compression::Tar,
            Compression::Gzip,
            Compression::Bzip2,
            Compression::Xz,
            Compression::Zstd,
        ] {
            let bytes = compress(&simple_image_tar(), c);
            let up = d.path().join("upload");
            fs::write(&up, &bytes).unwrap();
            let img = import_unified(&store, &up, None).unwrap();
            assert_eq!(img.fingerprint, hex::encode(Sha256::digest(&bytes)));
            assert_eq!(img.size, bytes.len() as u64);
            assert_eq!(img.kind, ImageKind::Unified);
            assert_eq!(img.compression, c);
            assert_eq!(img.architecture(), "x86_64");
            assert_eq!(img.properties()["os"], "busybox");
            assert_eq!(
                img.metadata.templates["/etc/hostname"].template,
                "hostname.tpl"
            );
            assert!(!up.exists());
            assert!(store.join(&img.fingerprint).is_file());
            // The same bytes again: 409, and the upload is left for the caller.
            fs::write(&up, &bytes).unwrap();
            assert!(matches!(
                import_unified(&store, &up, None),
                Err(Error::AlreadyExists(_))
            ));
            let ex = export_image(&store, &img.fingerprint).unwrap();
            assert_eq!(ex.kind, ImageKind::Unified);
            assert_eq!(
                ex.parts[0].filename,
                format!("{}{}", img.fingerprint, c.extension())
            );
            let mut back = Vec::new();
            ex.parts[0].open().unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, bytes);
            delete_image(&store, &img.fingerprint).unwrap();
            assert!(matches!(
                delete_image(&store, &img.fingerprint),
                Err(Error::NotFound(_))
            ));
        }
    }

    #[test]
    fn imports_split_and_fingerprints_the_concatenation() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("images");
        let meta = compress(
            &RawTar::new()
                .file("metadata.yaml", METADATA.as_bytes())
                .finish(),
            Compression::Xz,
        );
        let rootfs = compress(
            &RawTar::new()
                .dir("etc/", 0o755)
                .file("etc/os", b"x")
                .finish(),
            Compression::Gzip,
        );
        let (mp, rp) = (d.path().join("m"), d.path().join("r"));
        fs::write(&mp, &meta).unwrap();
        fs::write(&rp, &rootfs).unwrap();
        let mut h = Sha256::new();
        h.update(&meta);
        h.update(&rootfs);
        let fp = hex::encode(h.finalize());
        assert!(matches!(
            import_split(&store, &mp, &rp, Some("00ff")),
            Err(Error::FingerprintMismatch { .. })
        ));
        let img = import_split(&store, &mp, &rp, Some(&fp)).unwrap();
        assert_eq!(img.fingerprint, fp);
        assert_eq!(img.kind, ImageKind::Split);
        assert_eq!(img.size, (meta.len() + rootfs.len()) as u64);
        assert_eq!(img.rootfs_format, Some(Compression::Gzip));
        assert!(store.join(format!("{fp}.rootfs")).is_file());
        let ex = export_image(&store, &fp).unwrap();
        assert_eq!(ex.parts.len(), 2);
        assert_eq!(ex.parts[0].filename, format!("meta-{fp}.tar.xz"));
        assert_eq!(ex.parts[1].filename, format!("{fp}.tar.gz"));
        assert_eq!(ex.parts[1].field, "rootfs");
        delete_image(&store, &fp).unwrap();
        assert!(!store.join(format!("{fp}.rootfs")).exists());
    }

    #[test]
    fn rejects_garbage_with_one_line() {
        let d = tempfile::tempdir().unwrap();
        let store = d.path().join("images");
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"definitely not an image".repeat(40)),
            ("no metadata", RawTar::new().dir("rootfs/", 0o755).finish()),
            (
                "no rootfs",
                RawTar::new()
                    .file("metadata.yaml", METADATA.as_bytes())
                    .finish(),
            ),
            (
                "bad yaml",
                RawTar::new()
                    .file("metadata.yaml", b"architecture: [unclosed\n")
                    .dir("rootfs/", 0o755)
                    .finish(),
            ),
            (
                "no architecture",
                RawTar::new()
                    .file("metadata.yaml", b"creation_date: 1\n")
                    .dir("rootfs/", 0o755)
                    .finish(),
            ),
            (
                "truncated xz",
                compress(&simple_image_tar(), Compression::Xz)[..60].to_vec(),
            ),
        ];
        for (what, bytes) in cases {
            let up = d.path().join("up");
            fs::write(&up, &bytes).unwrap();
            let e = import_unified(&store, &up, None).unwrap_err();
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "{what}: {msg}");
            assert_eq!(e.http_status(), 400, "{what}: {msg}");
            assert!(up.exists(), "{what}: upload left for the caller");
        }
        // JSON metadata (LXD's test busybox image writes it that way) is valid YAML.
        let json = RawTar::new()
            .file(
                "metadata.yaml",
                br#"{"architecture":"x86_64","creation_date":1,"properties":{"os":"bb"}}"#,
            )
            .dir("rootfs/", 0o755)
            .finish();
        let up = d.path().join("json");
        fs::write(&up, &json).unwrap();
        assert_eq!(
            import_unified(&store, &up, None).unwrap().properties()["os"],
            "bb"
        );
        // A split rootfs that is neither tar nor squashfs.
        let (mp, rp) = (d.path().join("m"), d.path().join("r"));
        fs::write(
            &mp,
            RawTar::new()
                .file("metadata.yaml", METADATA.as_bytes())
                .finish(),
        )
        .unwrap();
        fs::write(&rp, b"junk junk junk").unwrap();
        let e = import_split(&store, &mp, &rp, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "The rootfs is neither a tarball nor squashfs"
        );
        assert!(export_image(&store, "../../etc").is_err());
    }
}
