//! lxd-storage: storage pools as a driver plus a source (`dir`, `btrfs`, `zfs`), in LXD's on-disk
//! layout under `$LXD_DIR/storage-pools/<pool>`. Drivers declare their capabilities as data
//! (`Info`) and know nothing of the database: the daemon passes names, paths and config maps.
//!
//! Every call is synchronous (tools run through `std::process`); the daemon calls it from a
//! blocking thread. Multi-step changes undo their finished steps when a later one fails.

mod btrfs;
mod config;
mod copytree;
mod dir;
mod error;
mod layout;
mod revert;
mod runner;
mod units;
mod util;
mod zfs;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use config::{validate_config, validate_update};
pub use error::{Error, Result};
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
    /// Freeze a running instance while copying or snapshotting it (true for dir, as LXD).
    pub running_copy_freeze: bool,
    pub remote: bool,
    /// Copies keep inode numbers (send/receive based drivers).
    pub preserves_inodes: bool,
    /// Restore works to any snapshot without deleting newer ones (zfs: only the latest).
    pub restore_any_snapshot: bool,
}

/// One storage pool. All names are validated (no `/`, no leading `.` or `-`); paths follow LXD:
/// instances at `<pool>/containers/<name>/` holding `rootfs/`, `metadata.yaml`, `templates/`,
/// snapshots at `<pool>/containers-snapshots/<name>/<snap>/`, images at `<pool>/images/<fp>/`.
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
    /// Delete the image volume. zfs keeps it hidden under `deleted/` while clones still use it.
    fn delete_image_volume(&self, fingerprint: &str) -> Result<()>;

    /// New instance volume from the image volume (which must exist); returns its path.
    fn create_instance_from_image(&self, name: &str, fingerprint: &str) -> Result<PathBuf>;
    /// New empty instance volume (an empty `rootfs/`); returns its path.
    fn create_instance_empty(&self, name: &str) -> Result<PathBuf>;
    /// `<pool>/containers/<name>`.
    fn instance_path(&self, name: &str) -> PathBuf;
    fn instance_exists(&self, name: &str) -> Result<bool>;
    /// Delete the instance volume and all its snapshots.
    fn delete_instance(&self, name: &str) -> Result<()>;
    /// Rename the instance volume and its snapshots.
    fn rename_instance(&self, old: &str, new: &str) -> Result<()>;
    /// Copy an instance volume (and, if asked, its snapshots) to a new name; returns its path.
    fn copy_instance(&self, src: &str, dst: &str, with_snapshots: bool) -> Result<PathBuf>;
    /// Make the instance's files available at `instance_path`; returns it.
    fn mount_instance(&self, name: &str) -> Result<PathBuf>;
    fn unmount_instance(&self, name: &str) -> Result<()>;
    /// Bytes used, when the driver can tell.
    fn instance_usage(&self, name: &str) -> Result<Option<u64>>;
    /// Limit the instance volume to `size` bytes; `None` removes the limit.
    fn set_instance_quota(&self, name: &str, size: Option<u64>) -> Result<()>;

    fn create_snapshot(&self, name: &str, snapshot: &str) -> Result<()>;
    fn delete_snapshot(&self, name: &str, snapshot: &str) -> Result<()>;
    fn rename_snapshot(&self, name: &str, old: &str, new: &str) -> Result<()>;
    /// Make the instance's contents those of the snapshot. Returns the snapshots the driver had
    /// to delete to do so (zfs with `zfs.remove_snapshots=true`), so the daemon can forget them.
    fn restore_snapshot(&self, name: &str, snapshot: &str) -> Result<Vec<String>>;
    /// `<pool>/containers-snapshots/<name>/<snap>`. On zfs the snapshot is not mounted there.
    fn snapshot_path(&self, name: &str, snapshot: &str) -> PathBuf;
    /// Snapshot names, oldest first.
    fn list_snapshots(&self, name: &str) -> Result<Vec<String>>;
    /// New instance volume from a snapshot of another; returns its path.
    fn create_instance_from_snapshot(
        &self,
        name: &str,
        snapshot: &str,
        new_name: &str,
    ) -> Result<PathBuf>;
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
