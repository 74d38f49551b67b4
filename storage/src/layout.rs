//! LXD's on-disk layout of a pool (`lxd/storage/drivers/volume.go BaseDirectories`): path
//! arithmetic only. Names reaching here were validated by the driver entry points.

use std::path::{Path, PathBuf};

use crate::util::mkdir_mode;
use crate::{Result, VolumeType};

/// Top-level volume directories of every pool.
pub(crate) const BASE_DIRS: [&str; 5] = [
    "containers",
    "containers-snapshots",
    "images",
    "custom",
    "custom-snapshots",
];

/// LXD gives instance and snapshot mount paths mode 0100: only root may traverse them.
pub(crate) const INSTANCE_MODE: u32 = 0o100;
/// The root of a custom volume is what a container sees at the disk device's path (LXD: 0711).
pub(crate) const CUSTOM_MODE: u32 = 0o711;

/// The mode of a volume's top directory.
pub(crate) fn volume_mode(vt: VolumeType) -> u32 {
    match vt {
        VolumeType::Container => INSTANCE_MODE,
        VolumeType::Custom => CUSTOM_MODE,
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) lxd_dir: PathBuf,
    pub(crate) pool: String,
}

impl Layout {
    pub(crate) fn new(lxd_dir: &Path, pool: &str) -> Self {
        Layout {
            lxd_dir: lxd_dir.to_path_buf(),
            pool: pool.to_string(),
        }
    }

    pub(crate) fn pool_path(&self) -> PathBuf {
        self.lxd_dir.join("storage-pools").join(&self.pool)
    }

    /// `<pool>/<type dir>`.
    pub(crate) fn volumes(&self, vt: VolumeType) -> PathBuf {
        self.pool_path().join(vt.dir())
    }

    pub(crate) fn volume(&self, vt: VolumeType, name: &str) -> PathBuf {
        self.volumes(vt).join(name)
    }

    pub(crate) fn snapshots_of(&self, vt: VolumeType, name: &str) -> PathBuf {
        self.pool_path().join(vt.snapshots_dir()).join(name)
    }

    pub(crate) fn snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> PathBuf {
        self.snapshots_of(vt, name).join(snap)
    }

    pub(crate) fn images(&self) -> PathBuf {
        self.pool_path().join("images")
    }

    pub(crate) fn image(&self, fp: &str) -> PathBuf {
        self.images().join(fp)
    }

    /// `$LXD_DIR/disks/<pool>.img`: the loop file of a btrfs or zfs pool created without a source.
    pub(crate) fn loop_file(&self) -> PathBuf {
        self.lxd_dir
            .join("disks")
            .join(format!("{}.img", self.pool))
    }

    /// Create `$LXD_DIR/storage-pools/<pool>` (mode 0711) and its parents.
    pub(crate) fn ensure_pool_dir(&self) -> Result<()> {
        let sp = self.lxd_dir.join("storage-pools");
        std::fs::create_dir_all(&sp).map_err(|e| crate::Error::io("create directory", &sp, e))?;
        mkdir_mode(&self.pool_path(), 0o711)
    }

    /// Create the volume directories inside the (mounted) pool.
    pub(crate) fn ensure_base_dirs(&self) -> Result<()> {
        for d in BASE_DIRS {
            mkdir_mode(&self.pool_path().join(d), 0o711)?;
        }
        Ok(())
    }
}
