//! Image formats for the daemon: compression detection, fingerprints, import into the image store
//! (`$LXD_DIR/images/<fp>[.rootfs]`), safe unpacking, pongo2-subset templates and export.
//! Pure library code: no HTTP, no database; it never writes outside the directories it is given.

pub mod compression;
pub mod fingerprint;
pub mod publish;
pub mod store;
pub mod templates;
pub mod unpack;

use std::path::{Path, PathBuf};

pub use compression::{Compression, detect_compression, open_decompressed};
pub use fingerprint::{HashingWriter, fingerprint_files};
pub use store::{
    Export, ExportPart, ImageKind, ImportedImage, delete_image, export_image, import_split,
    import_unified, read_tarball_metadata,
};
pub use templates::{TemplateContext, Trigger, apply_templates, render_template};
pub use unpack::{UnpackOptions, unpack_image, unpack_image_with, unpack_tarball};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The filler a storage pool's `create_image_volume` wants: unpack image `fp` from the store
/// into the volume directory it is given. Pass `xattrs: false` for pools without xattrs.
pub fn volume_filler<'a>(
    images_dir: &'a Path,
    fp: &'a str,
    opts: UnpackOptions,
) -> impl FnMut(&Path) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> + 'a {
    move |dir: &Path| unpack_image_with(images_dir, fp, dir, &opts).map_err(Into::into)
}

/// Errors of the images module; `http_status` says how the API layer answers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not an image we accept (bad compression, not a tarball, bad metadata.yaml, ...).
    #[error("{0}")]
    Invalid(String),
    /// A tarball entry that would escape the target directory or go through a symlink.
    #[error("Unsafe entry {entry:?} in image: {reason}")]
    Unsafe { entry: String, reason: String },
    #[error("Image with fingerprint {0} already exists")]
    AlreadyExists(String),
    #[error("Image {0} not found")]
    NotFound(String),
    #[error("Image fingerprint mismatch: got {actual}, expected {expected}")]
    FingerprintMismatch { expected: String, actual: String },
    #[error("Template {name}: {message}")]
    Template { name: String, message: String },
    #[error("{command}: {message}")]
    Command { command: String, message: String },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            Error::Invalid(_)
            | Error::Unsafe { .. }
            | Error::FingerprintMismatch { .. }
            | Error::Template { .. } => 400,
            Error::AlreadyExists(_) => 409,
            Error::NotFound(_) => 404,
            Error::Io { .. } | Error::Command { .. } => 500,
        }
    }
}

pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod busybox_tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    /// The realistic case: the project's busybox image, imported, unpacked, templated.
    #[test]
    fn busybox_image_import_unpack_template() {
        if !testutil::is_root() || !Path::new("/bin/busybox").exists() {
            testutil::skip("busybox_image_import_unpack_template: needs root and busybox-static");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-busybox-image.sh");
        let st = std::process::Command::new("sh")
            .arg(&script)
            .arg(d.path())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let store = d.path().join("images");
        let img = import_unified(&store, &d.path().join("busybox.tar.xz"), None).unwrap();
        assert_eq!(img.compression, Compression::Xz);
        assert_eq!(img.properties()["os"], "busybox");
        let target = d.path().join("vol");
        let t = std::time::Instant::now();
        unpack_image(&store, &img.fingerprint, &target).unwrap();
        eprintln!("unpack of the busybox image: {:?}", t.elapsed());
        let bb = std::fs::symlink_metadata(target.join("rootfs/bin/sh")).unwrap();
        assert!(bb.file_type().is_symlink());
        // The script stores everything as root (tar --owner=0).
        assert_eq!(
            std::fs::metadata(target.join("rootfs/root"))
                .unwrap()
                .mode()
                & 0o777,
            0o700
        );
        assert_eq!(
            std::fs::metadata(target.join("rootfs/tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        let cfg = BTreeMap::new();
        let ctx = TemplateContext {
            name: "bb1",
            architecture: "x86_64",
            privileged: false,
            ephemeral: false,
            config: &cfg,
            root_owner: (0, 0),
        };
        // The same image through the storage-facing filler.
        let mut filler = volume_filler(&store, &img.fingerprint, UnpackOptions::default());
        let vol = d.path().join("vol2");
        std::fs::create_dir(&vol).unwrap();
        filler(&vol).unwrap();
        assert!(vol.join("rootfs/bin/busybox").is_file());
        let w = apply_templates(&target, Trigger::Create, &ctx).unwrap();
        assert_eq!(w, vec!["/etc/hostname", "/etc/hosts"]);
        assert_eq!(
            std::fs::read_to_string(target.join("rootfs/etc/hostname")).unwrap(),
            "bb1\n"
        );
        let ex = export_image(&store, &img.fingerprint).unwrap();
        assert_eq!(ex.parts[0].filename, format!("{}.tar.xz", img.fingerprint));
    }
}
