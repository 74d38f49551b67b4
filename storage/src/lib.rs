//! lxd-storage: storage pools as a driver plus a source (`dir`, `btrfs`, `zfs`), in LXD's on-disk
//! layout under `$LXD_DIR/storage-pools/<pool>`. Drivers declare their capabilities as data
//! (`Info`) and know nothing of the database: the daemon passes names, paths and config maps.
//!
//! Every call is synchronous (tools run through `std::process`); the daemon calls it from a
//! blocking thread. Multi-step changes undo their finished steps when a later one fails.

pub mod btrfs;
mod config;
mod copytree;
mod dir;
mod error;
mod layout;
mod revert;
mod runner;
mod transfer;
mod units;
mod util;
mod zfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use config::{validate_config, validate_update};
pub use error::{Error, Result};
pub use transfer::{copy_across, refresh_across};
pub use units::parse_size;

/// A config map as LXD sends it: string keys and string values.
pub type ConfigMap = BTreeMap<String, String>;

/// What fills a new image volume: it unpacks the image into the given directory, which must end
/// up holding `rootfs/` and `metadata.yaml` (and usually `templates/`).
pub type Filler<'a> =
    &'a mut dyn FnMut(&Path) -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// A driver's capabilities (LXD `drivers.Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub driver: &'static str,
    /// Instances are copy-on-write clones of the image volume (btrfs, zfs). Every driver keeps
    /// an image volume per pool; `dir` makes a full (reflink where possible) copy of it.
    pub optimized_images: bool,
    pub snapshots: bool,
    /// `set_instance_quota` works.
    pub quotas: bool,
    /// The runtime can present this pool's files through an idmapped mount.
    pub idmapped_mounts: bool,
    /// Files on this pool keep xattrs (file capabilities, ACLs); false on zfs-fuse.
    pub xattrs: bool,
    /// Timestamps have whole-second resolution (zfs-fuse): comparing files by size and mtime
    /// cannot tell a rewrite within the same second, so file copies compare contents.
    pub coarse_timestamps: bool,
    /// Freeze a running instance while copying or snapshotting it (true for dir, as LXD).
    pub running_copy_freeze: bool,
    pub remote: bool,
    /// Copies keep inode numbers (send/receive based drivers).
    pub preserves_inodes: bool,
    /// Restore works to any snapshot without deleting newer ones (zfs: only the latest).
    pub restore_any_snapshot: bool,
}

/// The kinds of volume a pool holds (LXD `drivers.VolumeType`): instance root filesystems and
/// custom filesystem volumes. Images have their own methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeType {
    Container,
    Custom,
}

impl VolumeType {
    /// The pool subdirectory (and zfs dataset) holding volumes of this type.
    pub fn dir(self) -> &'static str {
        match self {
            VolumeType::Container => "containers",
            VolumeType::Custom => "custom",
        }
    }

    /// The pool subdirectory holding their snapshots.
    pub fn snapshots_dir(self) -> &'static str {
        match self {
            VolumeType::Container => "containers-snapshots",
            VolumeType::Custom => "custom-snapshots",
        }
    }

    /// How errors name a volume of this type.
    pub(crate) fn label(self) -> &'static str {
        match self {
            VolumeType::Container => "Instance volume",
            VolumeType::Custom => "Custom volume",
        }
    }

    pub(crate) fn kind(self) -> &'static str {
        match self {
            VolumeType::Container => "instance",
            VolumeType::Custom => "volume",
        }
    }
}

/// What a refresh did to the target's snapshots, so the daemon can update its records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// Snapshots copied from the source, oldest first.
    pub added: Vec<String>,
    /// Target snapshots deleted because the source no longer has them (or they differ).
    pub removed: Vec<String>,
    /// The driver-native incremental path was used (zfs send -i, btrfs snapshots).
    pub incremental: bool,
}

/// One storage pool. All names are validated (no `/`, no leading `.` or `-`); paths follow LXD:
/// instances at `<pool>/containers/<name>/` holding `rootfs/`, `metadata.yaml`, `templates/`,
/// snapshots at `<pool>/containers-snapshots/<name>/<snap>/`, custom volumes at
/// `<pool>/custom/<name>/` (their snapshots in `custom-snapshots/`), images at `<pool>/images/<fp>/`.
///
/// The volume methods take a `VolumeType`; the `*_instance` and `*snapshot` methods without one
/// are the same operations on instance volumes.
pub trait Driver: Send + Sync + std::fmt::Debug {
    fn info(&self) -> Info;
    /// The pool's name.
    fn name(&self) -> &str;
    /// The pool config with the driver's defaults filled in (`source`, `size`, `zfs.pool_name`):
    /// what the daemon should store after `create_pool`.
    fn config(&self) -> &ConfigMap;
    /// `$LXD_DIR/storage-pools/<pool>`.
    fn pool_path(&self) -> PathBuf;

    /// Create the pool (loop file, filesystem, zpool, layout directories) and leave it mounted.
    fn create_pool(&self) -> Result<()>;
    /// Destroy the pool and everything in it; a `source` given by the user is kept but emptied.
    fn delete_pool(&self) -> Result<()>;
    /// Make the pool usable (after a restart or reboot). Idempotent; returns whether it did work.
    fn mount_pool(&self) -> Result<bool>;
    /// Returns whether anything was unmounted.
    fn unmount_pool(&self) -> Result<bool>;
    /// Check a new config for this pool (known keys, valid values); unknown keys are errors.
    fn validate_config(&self, config: &ConfigMap) -> Result<()> {
        validate_config(self.info().driver, config)
    }
    /// (used, total) bytes.
    fn resources(&self) -> Result<(u64, u64)>;

    fn image_volume_exists(&self, fingerprint: &str) -> Result<bool>;
    /// Create the image volume and run `filler` on its directory. On any failure nothing is left.
    fn create_image_volume(&self, fingerprint: &str, filler: Filler<'_>) -> Result<()>;
    /// Delete the image volume. zfs keeps it hidden while clones still use it.
    fn delete_image_volume(&self, fingerprint: &str) -> Result<()>;
    /// New instance volume from the image volume (which must exist); returns its path.
    fn create_instance_from_image(&self, name: &str, fingerprint: &str) -> Result<PathBuf>;

    /// `<pool>/<type dir>/<name>`: where the volume's files are when it is mounted.
    fn volume_path(&self, vt: VolumeType, name: &str) -> PathBuf;
    fn volume_exists(&self, vt: VolumeType, name: &str) -> Result<bool>;
    /// New empty volume (an instance volume gets an empty `rootfs/`); returns its path.
    fn create_volume(&self, vt: VolumeType, name: &str) -> Result<PathBuf>;
    /// Delete the volume and all its snapshots. A missing volume is not an error.
    fn delete_volume(&self, vt: VolumeType, name: &str) -> Result<()>;
    /// Rename the volume and its snapshots.
    fn rename_volume(&self, vt: VolumeType, old: &str, new: &str) -> Result<()>;
    /// Copy a volume (and, if asked, its snapshots) to a new name in this pool; returns its path.
    fn copy_volume(
        &self,
        vt: VolumeType,
        src: &str,
        dst: &str,
        with_snapshots: bool,
    ) -> Result<PathBuf>;
    /// Make the volume's files available at `volume_path`; returns it.
    fn mount_volume(&self, vt: VolumeType, name: &str) -> Result<PathBuf>;
    fn unmount_volume(&self, vt: VolumeType, name: &str) -> Result<()>;
    /// Bytes used, when the driver can tell cheaply (None on dir).
    fn volume_usage(&self, vt: VolumeType, name: &str) -> Result<Option<u64>>;
    /// Limit the volume to `size` bytes; `None` removes the limit.
    fn set_volume_quota(&self, vt: VolumeType, name: &str, size: Option<u64>) -> Result<()>;

    fn create_volume_snapshot(&self, vt: VolumeType, name: &str, snapshot: &str) -> Result<()>;
    fn delete_volume_snapshot(&self, vt: VolumeType, name: &str, snapshot: &str) -> Result<()>;
    fn rename_volume_snapshot(
        &self,
        vt: VolumeType,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<()>;
    /// Make the volume's contents those of the snapshot. Returns the snapshots the driver had to
    /// delete to do so (zfs, when allowed), so the daemon can forget them. `remove_newer`
    /// overrides the pool's `zfs.remove_snapshots` for this volume.
    fn restore_volume_snapshot(
        &self,
        vt: VolumeType,
        name: &str,
        snapshot: &str,
        remove_newer: Option<bool>,
    ) -> Result<Vec<String>>;
    /// `<pool>/<type>-snapshots/<name>/<snap>`. On zfs the snapshot is there only while mounted
    /// with `mount_volume_snapshot`.
    fn volume_snapshot_path(&self, vt: VolumeType, name: &str, snapshot: &str) -> PathBuf;
    /// Snapshot names, oldest first.
    fn list_volume_snapshots(&self, vt: VolumeType, name: &str) -> Result<Vec<String>>;
    /// New volume from a snapshot of another; returns its path.
    fn create_volume_from_snapshot(
        &self,
        vt: VolumeType,
        name: &str,
        snapshot: &str,
        new_name: &str,
    ) -> Result<PathBuf>;
    /// A read-only view of a snapshot's files (for copies to another pool); returns its path.
    fn mount_volume_snapshot(&self, vt: VolumeType, name: &str, snapshot: &str) -> Result<PathBuf>;
    fn unmount_volume_snapshot(&self, vt: VolumeType, name: &str, snapshot: &str) -> Result<()>;

    /// Bring the existing volume `dst` up to date with `src` (both in this pool): target
    /// snapshots not in `common` are deleted, source snapshots after the last of `common` are
    /// added (when `with_snapshots`), then the volume's contents become the source's. `common`
    /// names the snapshots both already share, oldest first. The default copies files with rsync;
    /// drivers override it with their native incremental transfer.
    fn refresh_volume(
        &self,
        vt: VolumeType,
        src: &str,
        dst: &str,
        common: &[String],
        with_snapshots: bool,
    ) -> Result<RefreshOutcome> {
        transfer::refresh_generic(self, vt, src, self, dst, common, with_snapshots)
    }

    /// The zfs dataset holding instance `name`, for migration by `zfs send`/`receive` (the
    /// daemon runs the streams); None for drivers without one.
    fn instance_dataset(&self, _name: &str) -> Option<String> {
        None
    }

    /// Take over the dataset `zfs receive` made for instance `name`: destroy its snapshots
    /// other than the instance snapshots in `keep` (the sender's temporary one, the source
    /// snapshot a snapshot copy came from), mount it where instances live; returns its path.
    fn adopt_received_instance(&self, name: &str, keep: &[String]) -> Result<PathBuf> {
        let _ = keep;
        Err(Error::NotSupported(format!(
            "Receiving instance {name} as a native stream"
        )))
    }

    // Instance volumes: the same operations with `VolumeType::Container`.

    /// New empty instance volume (an empty `rootfs/`); returns its path.
    fn create_instance_empty(&self, name: &str) -> Result<PathBuf> {
        self.create_volume(VolumeType::Container, name)
    }
    /// `<pool>/containers/<name>`.
    fn instance_path(&self, name: &str) -> PathBuf {
        self.volume_path(VolumeType::Container, name)
    }
    fn instance_exists(&self, name: &str) -> Result<bool> {
        self.volume_exists(VolumeType::Container, name)
    }
    /// Delete the instance volume and all its snapshots.
    fn delete_instance(&self, name: &str) -> Result<()> {
        self.delete_volume(VolumeType::Container, name)
    }
    /// Rename the instance volume and its snapshots.
    fn rename_instance(&self, old: &str, new: &str) -> Result<()> {
        self.rename_volume(VolumeType::Container, old, new)
    }
    /// Copy an instance volume (and, if asked, its snapshots) to a new name; returns its path.
    fn copy_instance(&self, src: &str, dst: &str, with_snapshots: bool) -> Result<PathBuf> {
        self.copy_volume(VolumeType::Container, src, dst, with_snapshots)
    }
    /// Make the instance's files available at `instance_path`; returns it.
    fn mount_instance(&self, name: &str) -> Result<PathBuf> {
        self.mount_volume(VolumeType::Container, name)
    }
    fn unmount_instance(&self, name: &str) -> Result<()> {
        self.unmount_volume(VolumeType::Container, name)
    }
    /// Bytes used, when the driver can tell.
    fn instance_usage(&self, name: &str) -> Result<Option<u64>> {
        self.volume_usage(VolumeType::Container, name)
    }
    /// Limit the instance volume to `size` bytes; `None` removes the limit.
    fn set_instance_quota(&self, name: &str, size: Option<u64>) -> Result<()> {
        self.set_volume_quota(VolumeType::Container, name, size)
    }
    fn create_snapshot(&self, name: &str, snapshot: &str) -> Result<()> {
        self.create_volume_snapshot(VolumeType::Container, name, snapshot)
    }
    fn delete_snapshot(&self, name: &str, snapshot: &str) -> Result<()> {
        self.delete_volume_snapshot(VolumeType::Container, name, snapshot)
    }
    fn rename_snapshot(&self, name: &str, old: &str, new: &str) -> Result<()> {
        self.rename_volume_snapshot(VolumeType::Container, name, old, new)
    }
    /// Make the instance's contents those of the snapshot (see `restore_volume_snapshot`).
    fn restore_snapshot(&self, name: &str, snapshot: &str) -> Result<Vec<String>> {
        self.restore_volume_snapshot(VolumeType::Container, name, snapshot, None)
    }
    fn snapshot_path(&self, name: &str, snapshot: &str) -> PathBuf {
        self.volume_snapshot_path(VolumeType::Container, name, snapshot)
    }
    /// Snapshot names, oldest first.
    fn list_snapshots(&self, name: &str) -> Result<Vec<String>> {
        self.list_volume_snapshots(VolumeType::Container, name)
    }
    /// New instance volume from a snapshot of another; returns its path.
    fn create_instance_from_snapshot(
        &self,
        name: &str,
        snapshot: &str,
        new_name: &str,
    ) -> Result<PathBuf> {
        self.create_volume_from_snapshot(VolumeType::Container, name, snapshot, new_name)
    }
}

/// The driver for `driver` on pool `pool_name`, with `config` validated and its defaults filled.
/// Does not touch the disk: call `create_pool` for a new pool, `mount_pool` for an existing one.
pub fn load(
    driver: &str,
    pool_name: &str,
    lxd_dir: &Path,
    config: &ConfigMap,
) -> Result<Box<dyn Driver>> {
    util::check_name("storage pool", pool_name)?;
    validate_config(driver, config)?;
    let layout = layout::Layout::new(lxd_dir, pool_name);
    Ok(match driver {
        "dir" => Box::new(dir::Dir::new(layout, config.clone())),
        "btrfs" => Box::new(btrfs::Btrfs::new(layout, config.clone())?),
        "zfs" => Box::new(zfs::Zfs::new(layout, config.clone())?),
        other => {
            return Err(Error::NotSupported(format!(
                "Storage driver {other:?} is not supported"
            )));
        }
    })
}

/// The drivers this host can run, with their versions (`GET /1.0` `storage_supported_drivers`).
pub fn supported_drivers() -> Vec<(&'static str, String)> {
    let mut out = vec![("dir", "1".to_string())];
    if let Some(v) = btrfs::version() {
        out.push(("btrfs", v));
    }
    if let Some(v) = zfs::version() {
        out.push(("zfs", v));
    }
    out
}
