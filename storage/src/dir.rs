//! The `dir` driver: volumes are plain directories under the pool path (bind-mounted from
//! `source` when one is given). Image volume = the unpacked tree; instance, snapshot and copy =
//! `cp -a --reflink=auto` of it; restore = copy then swap. No quotas.

use std::path::{Path, PathBuf};

use crate::layout::{INSTANCE_MODE, Layout};
use crate::revert::Reverter;
use crate::util::{
    self, check_fingerprint, check_name, copy_tree, exists, mkdir_mode, remove_tree,
};
use crate::{ConfigMap, Driver, Error, Filler, Info, Result, runner};

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

    fn bind_mounted(&self) -> bool {
        self.source != self.layout.pool_path()
    }

    fn need_instance(&self, name: &str) -> Result<PathBuf> {
        check_name("instance", name)?;
        let p = self.layout.instance(name);
        if !exists(&p) {
            return Err(Error::NotFound(format!("Instance volume {name:?}")));
        }
        Ok(p)
    }

    fn need_free_instance(&self, name: &str) -> Result<PathBuf> {
        check_name("instance", name)?;
        let p = self.layout.instance(name);
        if exists(&p) {
            return Err(Error::AlreadyExists(format!("Instance volume {name:?}")));
        }
        Ok(p)
    }

    fn need_snapshot(&self, name: &str, snap: &str) -> Result<PathBuf> {
        check_name("instance", name)?;
        check_name("snapshot", snap)?;
        let p = self.layout.snapshot(name, snap);
        if !exists(&p) {
            return Err(Error::NotFound(format!("Snapshot {name}/{snap}")));
        }
        Ok(p)
    }

    /// Copy `src` into a new instance volume `dst` via a temporary name, so a failed or
    /// interrupted copy never leaves a half instance behind.
    fn copy_into_new(&self, src: &Path, dst: &Path) -> Result<()> {
        let parent = dst.parent().unwrap_or(Path::new("/"));
        let tmp = parent.join(format!(".tmp-{}", util::nonce()));
        let mut rev = Reverter::new();
        let tmp_c = tmp.clone();
        rev.add("remove partial copy", move || remove_tree(&tmp_c));
        copy_tree(src, &tmp)?;
        util::set_mode(&tmp, INSTANCE_MODE)?;
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
        let dst = self.need_free_instance(name)?;
        let img = self.layout.image(fp);
        if !exists(&img) {
            return Err(Error::NotFound(format!("Image volume {fp}")));
        }
        self.copy_into_new(&img, &dst)?;
        Ok(dst)
    }

    fn create_instance_empty(&self, name: &str) -> Result<PathBuf> {
        let dst = self.need_free_instance(name)?;
        let mut rev = Reverter::new();
        mkdir_mode(&dst, INSTANCE_MODE)?;
        let d = dst.clone();
        rev.add("remove instance directory", move || remove_tree(&d));
        mkdir_mode(&dst.join("rootfs"), 0o755)?;
        rev.success();
        Ok(dst)
    }

    fn instance_path(&self, name: &str) -> PathBuf {
        self.layout.instance(name)
    }

    fn instance_exists(&self, name: &str) -> Result<bool> {
        check_name("instance", name)?;
        Ok(exists(&self.layout.instance(name)))
    }

    fn delete_instance(&self, name: &str) -> Result<()> {
        check_name("instance", name)?;
        remove_tree(&self.layout.snapshots_of(name))?;
        remove_tree(&self.layout.instance(name))
    }

    fn rename_instance(&self, old: &str, new: &str) -> Result<()> {
        let src = self.need_instance(old)?;
        let dst = self.need_free_instance(new)?;
        let (snaps_old, snaps_new) = (self.layout.snapshots_of(old), self.layout.snapshots_of(new));
        if exists(&snaps_new) {
            return Err(Error::AlreadyExists(format!("Snapshots of {new:?}")));
        }
        let mut rev = Reverter::new();
        util::rename(&src, &dst)?;
        rev.add("rename instance back", || util::rename(&dst, &src));
        if exists(&snaps_old) {
            util::rename(&snaps_old, &snaps_new)?;
        }
        rev.success();
        Ok(())
    }

    fn copy_instance(&self, src: &str, dst: &str, with_snapshots: bool) -> Result<PathBuf> {
        let from = self.need_instance(src)?;
        let to = self.need_free_instance(dst)?;
        let snaps_to = self.layout.snapshots_of(dst);
        if with_snapshots && exists(&snaps_to) {
            return Err(Error::AlreadyExists(format!("Snapshots of {dst:?}")));
        }
        let mut rev = Reverter::new();
        if with_snapshots {
            let snaps = self.list_snapshots(src)?;
            if !snaps.is_empty() {
                mkdir_mode(&snaps_to, 0o700)?;
                let s = snaps_to.clone();
                rev.add("remove copied snapshots", move || remove_tree(&s));
                for snap in snaps {
                    self.copy_into_new(&self.layout.snapshot(src, &snap), &snaps_to.join(&snap))?;
                }
            }
        }
        self.copy_into_new(&from, &to)?;
        rev.success();
        Ok(to)
    }

    fn mount_instance(&self, name: &str) -> Result<PathBuf> {
        self.need_instance(name)
    }

    fn unmount_instance(&self, name: &str) -> Result<()> {
        check_name("instance", name)
    }

    fn instance_usage(&self, name: &str) -> Result<Option<u64>> {
        let p = self.need_instance(name)?;
        util::tree_usage(&p).map(Some)
    }

    fn set_instance_quota(&self, name: &str, size: Option<u64>) -> Result<()> {
        self.need_instance(name)?;
        match size {
            None => Ok(()),
            Some(_) => Err(Error::NotSupported(
                "Quotas are not supported by the dir driver".into(),
            )),
        }
    }

    fn create_snapshot(&self, name: &str, snap: &str) -> Result<()> {
        let src = self.need_instance(name)?;
        check_name("snapshot", snap)?;
        let dst = self.layout.snapshot(name, snap);
        if exists(&dst) {
            return Err(Error::AlreadyExists(format!("Snapshot {name}/{snap}")));
        }
        let parent = self.layout.snapshots_of(name);
        let mut rev = Reverter::new();
        if !exists(&parent) {
            mkdir_mode(&parent, 0o700)?;
            let p = parent.clone();
            rev.add("remove snapshot directory", move || remove_tree(&p));
        }
        self.copy_into_new(&src, &dst)?;
        rev.success();
        Ok(())
    }

    fn delete_snapshot(&self, name: &str, snap: &str) -> Result<()> {
        let p = self.need_snapshot(name, snap)?;
        remove_tree(&p)?;
        let parent = self.layout.snapshots_of(name);
        if util::is_dir_empty(&parent).unwrap_or(false) {
            remove_tree(&parent)?;
        }
        Ok(())
    }

    fn rename_snapshot(&self, name: &str, old: &str, new: &str) -> Result<()> {
        let src = self.need_snapshot(name, old)?;
        check_name("snapshot", new)?;
        let dst = self.layout.snapshot(name, new);
        if exists(&dst) {
            return Err(Error::AlreadyExists(format!("Snapshot {name}/{new}")));
        }
        util::rename(&src, &dst)
    }

    fn restore_snapshot(&self, name: &str, snap: &str) -> Result<Vec<String>> {
        let inst = self.need_instance(name)?;
        let src = self.need_snapshot(name, snap)?;
        // Copy first, then swap: until the swap the instance is untouched, and the swap is two
        // renames that the reverter can undo.
        let containers = self.layout.containers();
        let fresh = containers.join(format!(".restore-{}", util::nonce()));
        let old = containers.join(format!(".old-{}", util::nonce()));
        let mut rev = Reverter::new();
        let f = fresh.clone();
        rev.add("remove restore copy", move || remove_tree(&f));
        copy_tree(&src, &fresh)?;
        util::rename(&inst, &old)?;
        rev.add("put the instance back", || util::rename(&old, &inst));
        util::rename(&fresh, &inst)?;
        rev.success();
        if let Err(e) = remove_tree(&old) {
            tracing::warn!("leftover after restore of {name}: {e}");
        }
        Ok(Vec::new())
    }

    fn snapshot_path(&self, name: &str, snap: &str) -> PathBuf {
        self.layout.snapshot(name, snap)
    }

    fn list_snapshots(&self, name: &str) -> Result<Vec<String>> {
        check_name("instance", name)?;
        util::list_dir_by_age(&self.layout.snapshots_of(name))
    }

    fn create_instance_from_snapshot(
        &self,
        name: &str,
        snap: &str,
        new_name: &str,
    ) -> Result<PathBuf> {
        let src = self.need_snapshot(name, snap)?;
        let dst = self.need_free_instance(new_name)?;
        self.copy_into_new(&src, &dst)?;
        Ok(dst)
    }
}
