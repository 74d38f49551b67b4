//! The `dir` driver: volumes are plain directories under the pool path (bind-mounted from
//! `source` when one is given). Image volume = the unpacked tree; instance, snapshot and copy =
//! `cp -a --reflink=auto` of it; restore = copy then swap. No quotas.

use std::path::{Path, PathBuf};

use crate::copytree::sync_tree;
use crate::layout::{INSTANCE_MODE, Layout, volume_mode};
use crate::revert::Reverter;
use crate::util::{
    self, check_fingerprint, check_name, copy_tree, exists, mkdir_mode, remove_tree,
};
use crate::{
    ConfigMap, Driver, Error, Filler, Info, RefreshOutcome, Result, VolumeType, runner, transfer,
};

#[derive(Debug)]
pub(crate) struct Dir {
    layout: Layout,
    config: ConfigMap,
    source: PathBuf,
}

impl Dir {
    pub(crate) fn new(layout: Layout, mut config: ConfigMap) -> Self {
        // LXD's FillConfig: an empty source means the pool directory itself.
        let source = match config.get("source").filter(|s| !s.is_empty()) {
            Some(s) => PathBuf::from(s),
            None => layout.pool_path(),
        };
        config.insert("source".into(), source.display().to_string());
        Dir {
            layout,
            config,
            source,
        }
    }

    /// Each volume (and each snapshot) is a tree of its own for the block allocator
    /// (`util::mark_top_dir`); also applied to pools made before this existed.
    fn mark_top_dirs(&self) {
        for d in crate::layout::BASE_DIRS {
            util::mark_top_dir(&self.layout.pool_path().join(d));
        }
    }

    fn bind_mounted(&self) -> bool {
        self.source != self.layout.pool_path()
    }

    fn need_volume(&self, vt: VolumeType, name: &str) -> Result<PathBuf> {
        check_name(vt.kind(), name)?;
        let p = self.layout.volume(vt, name);
        if !exists(&p) {
            return Err(Error::NotFound(format!("{} {name:?}", vt.label())));
        }
        Ok(p)
    }

    fn need_free_volume(&self, vt: VolumeType, name: &str) -> Result<PathBuf> {
        check_name(vt.kind(), name)?;
        let p = self.layout.volume(vt, name);
        if exists(&p) {
            return Err(Error::AlreadyExists(format!("{} {name:?}", vt.label())));
        }
        Ok(p)
    }

    fn need_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<PathBuf> {
        check_name(vt.kind(), name)?;
        check_name("snapshot", snap)?;
        let p = self.layout.snapshot(vt, name, snap);
        if !exists(&p) {
            return Err(Error::NotFound(format!("Snapshot {name}/{snap}")));
        }
        Ok(p)
    }

    /// Copy `src` into a new volume `dst` via a temporary name, so a failed or interrupted copy
    /// never leaves a half volume behind.
    fn copy_into_new(&self, src: &Path, dst: &Path, mode: u32) -> Result<()> {
        let parent = dst.parent().unwrap_or(Path::new("/"));
        let tmp = parent.join(format!(".tmp-{}", util::nonce()));
        let mut rev = Reverter::new();
        let tmp_c = tmp.clone();
        rev.add("remove partial copy", move || remove_tree(&tmp_c));
        copy_tree(src, &tmp)?;
        util::set_mode(&tmp, mode)?;
        util::rename(&tmp, dst)?;
        rev.success();
        Ok(())
    }
}

impl Driver for Dir {
    fn info(&self) -> Info {
        Info {
            driver: "dir",
            optimized_images: false,
            snapshots: true,
            quotas: false,
            idmapped_mounts: util::supports_idmapped_mounts(&self.source),
            xattrs: true,
            coarse_timestamps: false,
            running_copy_freeze: true,
            remote: false,
            preserves_inodes: false,
            restore_any_snapshot: true,
        }
    }

    fn name(&self) -> &str {
        &self.layout.pool
    }

    fn config(&self) -> &ConfigMap {
        &self.config
    }

    fn pool_path(&self) -> PathBuf {
        self.layout.pool_path()
    }

    fn create_pool(&self) -> Result<()> {
        let pool = self.layout.pool_path();
        let mut rev = Reverter::new();
        if self.bind_mounted() {
            let meta = std::fs::metadata(&self.source).map_err(|_| {
                Error::Invalid(format!("Source path {:?} doesn't exist", self.source))
            })?;
            if !meta.is_dir() {
                return Err(Error::Invalid(format!(
                    "Source path {:?} isn't a directory",
                    self.source
                )));
            }
            if !util::is_dir_empty(&self.source)? {
                return Err(Error::Invalid(format!(
                    "Source path {:?} isn't empty",
                    self.source
                )));
            }
        }
        if exists(&pool) && !util::is_dir_empty(&pool)? {
            return Err(Error::AlreadyExists(format!(
                "Storage pool directory {pool:?}"
            )));
        }
        let created = !exists(&pool);
        self.layout.ensure_pool_dir()?;
        if created {
            let p = pool.clone();
            rev.add("remove pool directory", move || remove_tree(&p));
        }
        if self.mount_pool()? {
            rev.add("unmount pool", || self.unmount_pool().map(|_| ()));
        }
        for d in crate::layout::BASE_DIRS {
            let p = pool.join(d);
            mkdir_mode(&p, 0o711)?;
            util::mark_top_dir(&p);
            rev.add("remove pool subdirectory", move || remove_tree(&p));
        }
        rev.success();
        Ok(())
    }

    fn delete_pool(&self) -> Result<()> {
        let pool = self.layout.pool_path();
        if !exists(&pool) {
            return Ok(());
        }
        if self.bind_mounted() {
            self.mount_pool()?;
            for d in crate::layout::BASE_DIRS {
                remove_tree(&pool.join(d))?;
            }
            self.unmount_pool()?;
        }
        remove_tree(&pool)
    }

    fn mount_pool(&self) -> Result<bool> {
        if !self.bind_mounted() || util::is_mountpoint(&self.layout.pool_path())? {
            self.mark_top_dirs();
            return Ok(false);
        }
        self.layout.ensure_pool_dir()?;
        runner::run(
            "mount",
            [
                "--bind".as_ref(),
                self.source.as_os_str(),
                self.layout.pool_path().as_os_str(),
            ],
        )?;
        self.mark_top_dirs();
        Ok(true)
    }

    fn unmount_pool(&self) -> Result<bool> {
        if !self.bind_mounted() {
            return Ok(false);
        }
        util::unmount_all(&self.layout.pool_path())
    }

    fn resources(&self) -> Result<(u64, u64)> {
        util::fs_usage(&self.layout.pool_path())
    }

    fn image_volume_exists(&self, fp: &str) -> Result<bool> {
        check_fingerprint(fp)?;
        Ok(exists(&self.layout.image(fp)))
    }

    fn create_image_volume(&self, fp: &str, filler: Filler<'_>) -> Result<()> {
        check_fingerprint(fp)?;
        let dst = self.layout.image(fp);
        if exists(&dst) {
            return Err(Error::AlreadyExists(format!("Image volume {fp}")));
        }
        let tmp = self
            .layout
            .images()
            .join(format!(".{fp}.tmp-{}", util::nonce()));
        let mut rev = Reverter::new();
        mkdir_mode(&tmp, 0o700)?;
        let t = tmp.clone();
        rev.add("remove partial image volume", move || remove_tree(&t));
        util::run_filler(filler, &tmp, fp)?;
        util::rename(&tmp, &dst)?;
        rev.success();
        Ok(())
    }

    fn delete_image_volume(&self, fp: &str) -> Result<()> {
        check_fingerprint(fp)?;
        remove_tree(&self.layout.image(fp))
    }

    fn create_instance_from_image(&self, name: &str, fp: &str) -> Result<PathBuf> {
        check_fingerprint(fp)?;
        let dst = self.need_free_volume(VolumeType::Container, name)?;
        let img = self.layout.image(fp);
        if !exists(&img) {
            return Err(Error::NotFound(format!("Image volume {fp}")));
        }
        self.copy_into_new(&img, &dst, INSTANCE_MODE)?;
        Ok(dst)
    }

    fn volume_path(&self, vt: VolumeType, name: &str) -> PathBuf {
        self.layout.volume(vt, name)
    }

    fn volume_exists(&self, vt: VolumeType, name: &str) -> Result<bool> {
        check_name(vt.kind(), name)?;
        Ok(exists(&self.layout.volume(vt, name)))
    }

    fn create_volume(&self, vt: VolumeType, name: &str) -> Result<PathBuf> {
        let dst = self.need_free_volume(vt, name)?;
        let mut rev = Reverter::new();
        mkdir_mode(&dst, volume_mode(vt))?;
        let d = dst.clone();
        rev.add("remove volume directory", move || remove_tree(&d));
        if vt == VolumeType::Container {
            mkdir_mode(&dst.join("rootfs"), 0o755)?;
        }
        rev.success();
        Ok(dst)
    }

    fn delete_volume(&self, vt: VolumeType, name: &str) -> Result<()> {
        check_name(vt.kind(), name)?;
        remove_tree(&self.layout.snapshots_of(vt, name))?;
        remove_tree(&self.layout.volume(vt, name))
    }

    fn rename_volume(&self, vt: VolumeType, old: &str, new: &str) -> Result<()> {
        let src = self.need_volume(vt, old)?;
        let dst = self.need_free_volume(vt, new)?;
        let (snaps_old, snaps_new) = (
            self.layout.snapshots_of(vt, old),
            self.layout.snapshots_of(vt, new),
        );
        if exists(&snaps_new) {
            return Err(Error::AlreadyExists(format!("Snapshots of {new:?}")));
        }
        let mut rev = Reverter::new();
        util::rename(&src, &dst)?;
        rev.add("rename volume back", || util::rename(&dst, &src));
        if exists(&snaps_old) {
            util::rename(&snaps_old, &snaps_new)?;
        }
        rev.success();
        Ok(())
    }

    fn copy_volume(
        &self,
        vt: VolumeType,
        src: &str,
        dst: &str,
        with_snapshots: bool,
    ) -> Result<PathBuf> {
        let from = self.need_volume(vt, src)?;
        let to = self.need_free_volume(vt, dst)?;
        let snaps_to = self.layout.snapshots_of(vt, dst);
        if with_snapshots && exists(&snaps_to) {
            return Err(Error::AlreadyExists(format!("Snapshots of {dst:?}")));
        }
        let mut rev = Reverter::new();
        if with_snapshots {
            let snaps = self.list_volume_snapshots(vt, src)?;
            if !snaps.is_empty() {
                snapshots_dir(&snaps_to)?;
                let s = snaps_to.clone();
                rev.add("remove copied snapshots", move || remove_tree(&s));
                for snap in snaps {
                    self.copy_into_new(
                        &self.layout.snapshot(vt, src, &snap),
                        &snaps_to.join(&snap),
                        volume_mode(vt),
                    )?;
                }
            }
        }
        self.copy_into_new(&from, &to, volume_mode(vt))?;
        rev.success();
        Ok(to)
    }

    fn mount_volume(&self, vt: VolumeType, name: &str) -> Result<PathBuf> {
        self.need_volume(vt, name)
    }

    fn unmount_volume(&self, vt: VolumeType, name: &str) -> Result<()> {
        check_name(vt.kind(), name)
    }

    fn volume_usage(&self, vt: VolumeType, name: &str) -> Result<Option<u64>> {
        // LXD's dir driver reports usage only with project quotas; walking the tree on every
        // `lxc list` would be too slow.
        self.need_volume(vt, name)?;
        Ok(None)
    }

    fn set_volume_quota(&self, vt: VolumeType, name: &str, size: Option<u64>) -> Result<()> {
        self.need_volume(vt, name)?;
        match size {
            None => Ok(()),
            Some(_) => Err(Error::NotSupported(format!(
                "Storage pool \"{}\" (dir) cannot limit the size of its volumes",
                self.layout.pool
            ))),
        }
    }

    fn create_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<()> {
        let src = self.need_volume(vt, name)?;
        check_name("snapshot", snap)?;
        let dst = self.layout.snapshot(vt, name, snap);
        if exists(&dst) {
            return Err(Error::AlreadyExists(format!("Snapshot {name}/{snap}")));
        }
        let parent = self.layout.snapshots_of(vt, name);
        let mut rev = Reverter::new();
        if !exists(&parent) {
            snapshots_dir(&parent)?;
            let p = parent.clone();
            rev.add("remove snapshot directory", move || remove_tree(&p));
        }
        self.copy_into_new(&src, &dst, volume_mode(vt))?;
        rev.success();
        Ok(())
    }

    fn delete_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<()> {
        let p = self.need_snapshot(vt, name, snap)?;
        remove_tree(&p)?;
        let parent = self.layout.snapshots_of(vt, name);
        if util::is_dir_empty(&parent).unwrap_or(false) {
            remove_tree(&parent)?;
        }
        Ok(())
    }

    fn rename_volume_snapshot(
        &self,
        vt: VolumeType,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<()> {
        let src = self.need_snapshot(vt, name, old)?;
        check_name("snapshot", new)?;
        let dst = self.layout.snapshot(vt, name, new);
        if exists(&dst) {
            return Err(Error::AlreadyExists(format!("Snapshot {name}/{new}")));
        }
        util::rename(&src, &dst)
    }

    fn restore_volume_snapshot(
        &self,
        vt: VolumeType,
        name: &str,
        snap: &str,
        _remove_newer: Option<bool>,
    ) -> Result<Vec<String>> {
        let vol = self.need_volume(vt, name)?;
        let src = self.need_snapshot(vt, name, snap)?;
        // In place, only what differs, as LXD's rsync does: a restore right after a snapshot
        // costs a walk of both trees, not a copy.
        sync_tree(&src, &vol)?;
        util::set_mode(&vol, volume_mode(vt))?;
        Ok(Vec::new())
    }

    fn volume_snapshot_path(&self, vt: VolumeType, name: &str, snap: &str) -> PathBuf {
        self.layout.snapshot(vt, name, snap)
    }

    fn list_volume_snapshots(&self, vt: VolumeType, name: &str) -> Result<Vec<String>> {
        check_name(vt.kind(), name)?;
        util::list_dir_by_age(&self.layout.snapshots_of(vt, name))
    }

    fn create_volume_from_snapshot(
        &self,
        vt: VolumeType,
        name: &str,
        snap: &str,
        new_name: &str,
    ) -> Result<PathBuf> {
        let src = self.need_snapshot(vt, name, snap)?;
        let dst = self.need_free_volume(vt, new_name)?;
        self.copy_into_new(&src, &dst, volume_mode(vt))?;
        Ok(dst)
    }

    fn mount_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<PathBuf> {
        self.need_snapshot(vt, name, snap)
    }

    fn unmount_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<()> {
        self.need_snapshot(vt, name, snap).map(|_| ())
    }

    fn refresh_volume(
        &self,
        vt: VolumeType,
        src: &str,
        dst: &str,
        common: &[String],
        with_snapshots: bool,
    ) -> Result<RefreshOutcome> {
        // Snapshots are plain trees here: copy them straight into place, then rsync the volume.
        self.need_volume(vt, src)?;
        let to = self.need_volume(vt, dst)?;
        let mut out = RefreshOutcome::default();
        for s in self.list_volume_snapshots(vt, dst)? {
            if !common.contains(&s) {
                self.delete_volume_snapshot(vt, dst, &s)?;
                out.removed.push(s);
            }
        }
        if with_snapshots {
            let snaps_to = self.layout.snapshots_of(vt, dst);
            for s in transfer::snapshots_after(&self.list_volume_snapshots(vt, src)?, common) {
                if !exists(&snaps_to) {
                    snapshots_dir(&snaps_to)?;
                }
                self.copy_into_new(
                    &self.layout.snapshot(vt, src, &s),
                    &snaps_to.join(&s),
                    volume_mode(vt),
                )?;
                out.added.push(s);
            }
        }
        transfer::rsync(
            &self.layout.volume(vt, src),
            &to,
            transfer::RsyncOpts {
                xattrs: true,
                checksum: false,
            },
        )?;
        Ok(out)
    }
}

/// A volume's snapshot directory: each snapshot below it is a tree of its own for the block
/// allocator, like the volumes themselves (`util::mark_top_dir`).
fn snapshots_dir(p: &Path) -> Result<()> {
    mkdir_mode(p, 0o700)?;
    util::mark_top_dir(p);
    Ok(())
}
