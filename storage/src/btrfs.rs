//! The `btrfs` driver: a loop file (`$LXD_DIR/disks/<pool>.img`), a block device or a directory
//! on btrfs, mounted with `user_subvol_rm_allowed`. Image = read-only subvolume; instance =
//! writable snapshot of it; snapshots read-only; restore swaps in a writable snapshot; quotas via
//! qgroups, which btrfs enforces late: writes overshoot the limit by a few MiB before EDQUOT.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::layout::{INSTANCE_MODE, Layout, volume_mode};
use crate::revert::Reverter;
use crate::util::{self, check_fingerprint, check_name, exists, mkdir_mode};
use crate::{
    ConfigMap, Driver, Error, Filler, Info, RefreshOutcome, Result, VolumeType, parse_size, runner,
    transfer,
};

const DEFAULT_SIZE: &str = "5GiB";
const DEFAULT_MOUNT_OPTIONS: &str = "user_subvol_rm_allowed";
/// The inode number of every btrfs subvolume root (BTRFS_FIRST_FREE_OBJECTID).
const SUBVOL_ROOT_INO: u64 = 256;

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Loop(PathBuf),
    Device(PathBuf),
    Dir(PathBuf),
}

#[derive(Debug)]
pub(crate) struct Btrfs {
    layout: Layout,
    config: ConfigMap,
    source: Source,
}

pub(crate) fn version() -> Option<String> {
    let fs = fs::read_to_string("/proc/filesystems").ok()?;
    if !fs.lines().any(|l| l.trim_end().ends_with("btrfs")) {
        return None;
    }
    let out = runner::run("btrfs", ["--version"]).ok()?;
    out.split_whitespace()
        .find_map(|w| w.strip_prefix('v'))
        .map(str::to_string)
}

fn btrfs<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    runner::run("btrfs", args)
}

fn is_subvolume(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.is_dir() && m.ino() == SUBVOL_ROOT_INO)
        .unwrap_or(false)
}

/// `struct btrfs_ioctl_vol_args_v2` (4096 bytes).
#[repr(C)]
struct VolArgsV2 {
    fd: i64,
    transid: u64,
    flags: u64,
    unused: [u64; 4],
    name: [u8; 4040],
}
const _: () = assert!(std::mem::size_of::<VolArgsV2>() == 4096);

/// `BTRFS_IOC_SNAP_CREATE_V2`: `_IOW(0x94, 23, struct btrfs_ioctl_vol_args_v2)`.
const BTRFS_IOC_SNAP_CREATE_V2: libc::c_ulong = 0x5000_9417;
const BTRFS_SUBVOL_RDONLY: u64 = 1 << 1;

/// A snapshot of subvolume `src` at `dst` (`btrfs subvolume snapshot [-r]`), by the ioctl the
/// CLI uses: running the CLI cost 5.5 ms of each launch and snapshot, the ioctl well under 1.
fn subvol_snapshot(src: &Path, dst: &Path, readonly: bool) -> Result<()> {
    use std::os::fd::AsRawFd;
    let (Some(parent), Some(name)) = (dst.parent(), dst.file_name()) else {
        return Err(Error::Invalid(format!(
            "bad snapshot path {}",
            dst.display()
        )));
    };
    let name = name.as_encoded_bytes();
    let mut args = VolArgsV2 {
        fd: 0,
        transid: 0,
        flags: if readonly { BTRFS_SUBVOL_RDONLY } else { 0 },
        unused: [0; 4],
        name: [0; 4040],
    };
    if name.len() >= args.name.len() {
        return Err(Error::Invalid(format!(
            "snapshot name too long: {}",
            dst.display()
        )));
    }
    args.name[..name.len()].copy_from_slice(name);
    let open_dir = |p: &Path| {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(p)
            .map_err(|e| Error::io("open", p, e))
    };
    let src_dir = open_dir(src)?;
    let parent_dir = open_dir(parent)?;
    args.fd = i64::from(src_dir.as_raw_fd());
    // SAFETY: the ioctl reads a btrfs_ioctl_vol_args_v2 that `args` is, laid out as the kernel's
    // and alive for the call; both descriptors are open.
    let rc = unsafe {
        libc::ioctl(
            parent_dir.as_raw_fd(),
            BTRFS_IOC_SNAP_CREATE_V2,
            &args as *const VolArgsV2,
        )
    };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::Command {
            command: format!(
                "btrfs subvolume snapshot {}{} {}",
                if readonly { "-r " } else { "" },
                src.display(),
                dst.display()
            ),
            message: e.to_string(),
        });
    }
    Ok(())
}

fn set_readonly(path: &Path, ro: bool) -> Result<()> {
    btrfs([
        "property".as_ref(),
        "set".as_ref(),
        "-ts".as_ref(),
        path.as_os_str(),
        "ro".as_ref(),
        if ro { "true" } else { "false" }.as_ref(),
    ])
    .map(|_| ())
}

/// Subvolumes nested below `root` (not `root` itself), deepest first.
fn nested_subvolumes(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(_) => continue,
        };
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                let p = e.path();
                if is_subvolume(&p) {
                    found.push(p.clone());
                }
                stack.push(p);
            }
        }
    }
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    Ok(found)
}

/// Delete a subvolume and any subvolumes nested in it; a plain directory is removed as a tree.
fn subvol_delete(path: &Path) -> Result<()> {
    if !exists(path) {
        return Ok(());
    }
    if !is_subvolume(path) {
        return util::remove_tree(path);
    }
    if btrfs(["subvolume".as_ref(), "delete".as_ref(), path.as_os_str()]).is_ok() {
        return Ok(());
    }
    // Nested subvolumes (e.g. made by systemd inside the container) block the delete; a
    // read-only one must become writable first.
    let _ = set_readonly(path, false);
    for nested in nested_subvolumes(path)? {
        let _ = set_readonly(&nested, false);
        btrfs(["subvolume".as_ref(), "delete".as_ref(), nested.as_os_str()])?;
    }
    btrfs(["subvolume".as_ref(), "delete".as_ref(), path.as_os_str()]).map(|_| ())
}

impl Btrfs {
    pub(crate) fn new(layout: Layout, mut config: ConfigMap) -> Result<Self> {
        let given = config.get("source").filter(|s| !s.is_empty()).cloned();
        let source = match given {
            None => {
                let f = layout.loop_file();
                config.insert("source".into(), f.display().to_string());
                Source::Loop(f)
            }
            Some(s) => {
                let p = PathBuf::from(&s);
                match fs::metadata(&p) {
                    Ok(m) if m.file_type().is_block_device() => Source::Device(p),
                    Ok(m) if m.is_file() => Source::Loop(p),
                    _ if p == layout.loop_file() => Source::Loop(p),
                    _ if !p.is_absolute() => {
                        return Err(Error::Invalid(format!(
                            "Invalid btrfs source {s:?}: not an absolute path"
                        )));
                    }
                    _ => Source::Dir(p),
                }
            }
        };
        if matches!(source, Source::Loop(_)) {
            config
                .entry("size".into())
                .or_insert_with(|| DEFAULT_SIZE.to_string());
        }
        config
            .entry("btrfs.mount_options".into())
            .or_insert_with(|| DEFAULT_MOUNT_OPTIONS.to_string());
        Ok(Btrfs {
            layout,
            config,
            source,
        })
    }

    fn mount_options(&self) -> String {
        let opts = self
            .config
            .get("btrfs.mount_options")
            .map(String::as_str)
            .unwrap_or(DEFAULT_MOUNT_OPTIONS);
        if opts.split(',').any(|o| o == "user_subvol_rm_allowed") {
            opts.to_string()
        } else {
            format!("{opts},user_subvol_rm_allowed")
        }
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

    /// A writable snapshot of `src` as new volume `dst`, with the pool's default quota.
    fn clone_to_volume(&self, vt: VolumeType, src: &Path, dst: &Path) -> Result<()> {
        let mut rev = Reverter::new();
        subvol_snapshot(src, dst, false)?;
        let d = dst.to_path_buf();
        rev.add("delete new subvolume", move || subvol_delete(&d));
        util::set_mode(dst, volume_mode(vt))?;
        if let Some(size) = self.config.get("volume.size").filter(|s| !s.is_empty()) {
            self.set_limit(dst, Some(parse_size(size)?))?;
        }
        rev.success();
        Ok(())
    }

    /// Replace the volume at `vol` with a writable snapshot of `src`, keeping its quota; the
    /// swap is two renames the reverter can undo.
    fn replace_with_snapshot_of(&self, vol: &Path, src: &Path, parent: &Path) -> Result<()> {
        let limit = self.qgroup(vol).and_then(|(_, l)| l);
        let fresh = parent.join(format!(".restore-{}", util::nonce()));
        let old = parent.join(format!(".old-{}", util::nonce()));
        let mut rev = Reverter::new();
        subvol_snapshot(src, &fresh, false)?;
        let f = fresh.clone();
        rev.add("delete new subvolume", move || subvol_delete(&f));
        let mode = fs::symlink_metadata(vol)
            .map(|m| m.mode() & 0o7777)
            .unwrap_or(INSTANCE_MODE);
        util::set_mode(&fresh, mode)?;
        if limit.is_some() {
            self.set_limit(&fresh, limit)?;
        }
        util::rename(vol, &old)?;
        rev.add("put the volume back", || util::rename(&old, vol));
        util::rename(&fresh, vol)?;
        rev.success();
        if let Err(e) = subvol_delete(&old) {
            tracing::warn!("leftover after replacing {}: {e}", vol.display());
        }
        Ok(())
    }

    fn quota_enabled(&self) -> bool {
        btrfs([
            "qgroup".as_ref(),
            "show".as_ref(),
            self.layout.pool_path().as_os_str(),
        ])
        .is_ok()
    }

    /// (referenced bytes, limit) of the subvolume's own qgroup, when quotas are on.
    fn qgroup(&self, path: &Path) -> Option<(u64, Option<u64>)> {
        let out = btrfs([
            "qgroup".as_ref(),
            "show".as_ref(),
            "-rf".as_ref(),
            "--raw".as_ref(),
            path.as_os_str(),
        ])
        .ok()?;
        let line = out.lines().find(|l| l.starts_with("0/"))?;
        let cols: Vec<&str> = line.split_whitespace().collect();
        let rfer = cols.get(1)?.parse().ok()?;
        let limit = cols.get(3).and_then(|v| v.parse().ok());
        Some((rfer, limit))
    }

    fn set_limit(&self, path: &Path, size: Option<u64>) -> Result<()> {
        if size.is_none() && !self.quota_enabled() {
            return Ok(());
        }
        if !self.quota_enabled() {
            let pool = self.layout.pool_path();
            btrfs(["quota".as_ref(), "enable".as_ref(), pool.as_os_str()])?;
            btrfs([
                "quota".as_ref(),
                "rescan".as_ref(),
                "-w".as_ref(),
                pool.as_os_str(),
            ])?;
        }
        let value = size.map_or("none".to_string(), |s| s.to_string());
        btrfs([
            "qgroup".as_ref(),
            "limit".as_ref(),
            value.as_ref(),
            path.as_os_str(),
        ])
        .map(|_| ())
    }
}

impl Driver for Btrfs {
    fn info(&self) -> Info {
        Info {
            driver: "btrfs",
            optimized_images: true,
            snapshots: true,
            quotas: true,
            idmapped_mounts: true,
            xattrs: true,
            coarse_timestamps: false,
            running_copy_freeze: false,
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
        if exists(&pool) && !util::is_dir_empty(&pool)? {
            return Err(Error::AlreadyExists(format!(
                "Storage pool directory {pool:?}"
            )));
        }
        let mut rev = Reverter::new();
        match &self.source {
            Source::Loop(file) => {
                let size = parse_size(self.config.get("size").map_or(DEFAULT_SIZE, |s| s))?;
                if let Some(dir) = file.parent() {
                    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
                }
                let f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(file)
                    .map_err(|e| match e.kind() {
                        std::io::ErrorKind::AlreadyExists => {
                            Error::AlreadyExists(format!("Loop file {file:?}"))
                        }
                        _ => Error::io("create", file, e),
                    })?;
                let fc = file.clone();
                rev.add("remove loop file", move || util::remove_tree(&fc));
                f.set_len(size).map_err(|e| Error::io("resize", file, e))?;
                runner::run(
                    "mkfs.btrfs",
                    [
                        "-q".as_ref(),
                        "-L".as_ref(),
                        self.layout.pool.as_ref(),
                        file.as_os_str(),
                    ],
                )?;
            }
            Source::Device(dev) => {
                util::check_free_block_device(dev)?;
                // No -f: mkfs refuses a device that already holds a filesystem.
                runner::run(
                    "mkfs.btrfs",
                    [
                        "-q".as_ref(),
                        "-L".as_ref(),
                        self.layout.pool.as_ref(),
                        dev.as_os_str(),
                    ],
                )?;
            }
            Source::Dir(dir) => {
                if !exists(dir) {
                    if util::fs_magic(dir) != Some(util::BTRFS_MAGIC) {
                        return Err(Error::Invalid(format!(
                            "Source path {dir:?} is not on a btrfs filesystem"
                        )));
                    }
                    btrfs(["subvolume".as_ref(), "create".as_ref(), dir.as_os_str()])?;
                    let d = dir.clone();
                    rev.add("delete source subvolume", move || subvol_delete(&d));
                } else if util::fs_magic(dir) != Some(util::BTRFS_MAGIC) {
                    return Err(Error::Invalid(format!(
                        "Source path {dir:?} is not on a btrfs filesystem"
                    )));
                } else if !util::is_dir_empty(dir)? {
                    return Err(Error::Invalid(format!("Source path {dir:?} isn't empty")));
                }
            }
        }
        let created = !exists(&pool);
        self.layout.ensure_pool_dir()?;
        if created {
            let p = pool.clone();
            rev.add("remove pool directory", move || util::remove_tree(&p));
        }
        if self.mount_pool()? {
            rev.add("unmount pool", || self.unmount_pool().map(|_| ()));
        }
        self.layout.ensure_base_dirs()?;
        rev.success();
        Ok(())
    }

    fn delete_pool(&self) -> Result<()> {
        let pool = self.layout.pool_path();
        let source_exists = match &self.source {
            Source::Loop(f) | Source::Device(f) | Source::Dir(f) => exists(f),
        };
        if source_exists && exists(&pool) {
            self.mount_pool()?;
            if let Source::Dir(_) = self.source {
                for d in crate::layout::BASE_DIRS {
                    let base = pool.join(d);
                    for sub in fs::read_dir(&base).into_iter().flatten().flatten() {
                        let p = sub.path();
                        for nested in fs::read_dir(&p).into_iter().flatten().flatten() {
                            if is_subvolume(&nested.path()) {
                                subvol_delete(&nested.path())?;
                            }
                        }
                        subvol_delete(&p)?;
                    }
                    util::remove_tree(&base)?;
                }
            }
        }
        self.unmount_pool()?;
        if let Source::Loop(f) = &self.source {
            util::remove_tree(f)?;
        }
        if exists(&pool) {
            fs::remove_dir(&pool).map_err(|e| Error::io("remove", &pool, e))?;
        }
        Ok(())
    }

    fn mount_pool(&self) -> Result<bool> {
        let pool = self.layout.pool_path();
        if util::is_mountpoint(&pool)? {
            return Ok(false);
        }
        self.layout.ensure_pool_dir()?;
        let opts = self.mount_options();
        match &self.source {
            // `-o loop` gives the loop device autoclear: it goes away with the unmount.
            Source::Loop(file) => runner::run(
                "mount",
                [
                    "-t".as_ref(),
                    "btrfs".as_ref(),
                    "-o".as_ref(),
                    format!("loop,{opts}").as_ref(),
                    file.as_os_str(),
                    pool.as_os_str(),
                ],
            )?,
            Source::Device(dev) => runner::run(
                "mount",
                [
                    "-t".as_ref(),
                    "btrfs".as_ref(),
                    "-o".as_ref(),
                    opts.as_ref(),
                    dev.as_os_str(),
                    pool.as_os_str(),
                ],
            )?,
            Source::Dir(dir) => runner::run(
                "mount",
                ["--bind".as_ref(), dir.as_os_str(), pool.as_os_str()],
            )?,
        };
        Ok(true)
    }

    fn unmount_pool(&self) -> Result<bool> {
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
        btrfs(["subvolume".as_ref(), "create".as_ref(), tmp.as_os_str()])?;
        let (t, pool) = (tmp.clone(), self.layout.pool_path());
        rev.add("delete partial image subvolume", move || {
            // btrfs frees a deleted subvolume's space only when its cleaner runs (up to 30 s
            // later); files removed before a commit are freed by the commit. So a pool that just
            // ran full (ENOSPC during the unpack) is usable again at once.
            for e in fs::read_dir(&t).into_iter().flatten().flatten() {
                let _ = util::remove_tree(&e.path());
            }
            let _ = btrfs(["filesystem".as_ref(), "sync".as_ref(), pool.as_os_str()]);
            subvol_delete(&t)
        });
        util::run_filler(filler, &tmp, fp)?;
        util::rename(&tmp, &dst)?;
        let d = dst.clone();
        rev.add("delete image subvolume", move || subvol_delete(&d));
        set_readonly(&dst, true)?;
        rev.success();
        Ok(())
    }

    fn delete_image_volume(&self, fp: &str) -> Result<()> {
        check_fingerprint(fp)?;
        subvol_delete(&self.layout.image(fp))
    }

    fn create_instance_from_image(&self, name: &str, fp: &str) -> Result<PathBuf> {
        check_fingerprint(fp)?;
        let dst = self.need_free_volume(VolumeType::Container, name)?;
        let img = self.layout.image(fp);
        if !exists(&img) {
            return Err(Error::NotFound(format!("Image volume {fp}")));
        }
        self.clone_to_volume(VolumeType::Container, &img, &dst)?;
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
        btrfs(["subvolume".as_ref(), "create".as_ref(), dst.as_os_str()])?;
        let d = dst.clone();
        rev.add("delete volume subvolume", move || subvol_delete(&d));
        util::set_mode(&dst, volume_mode(vt))?;
        if vt == VolumeType::Container {
            mkdir_mode(&dst.join("rootfs"), 0o755)?;
        }
        if let Some(size) = self.config.get("volume.size").filter(|s| !s.is_empty()) {
            self.set_limit(&dst, Some(parse_size(size)?))?;
        }
        rev.success();
        Ok(dst)
    }

    fn delete_volume(&self, vt: VolumeType, name: &str) -> Result<()> {
        check_name(vt.kind(), name)?;
        let snaps = self.layout.snapshots_of(vt, name);
        for s in util::list_dir_by_age(&snaps)? {
            subvol_delete(&snaps.join(s))?;
        }
        util::remove_tree(&snaps)?;
        subvol_delete(&self.layout.volume(vt, name))
    }

    fn rename_volume(&self, vt: VolumeType, old: &str, new: &str) -> Result<()> {
        let src = self.need_volume(vt, old)?;
        let dst = self.need_free_volume(vt, new)?;
        let (so, sn) = (
            self.layout.snapshots_of(vt, old),
            self.layout.snapshots_of(vt, new),
        );
        if exists(&sn) {
            return Err(Error::AlreadyExists(format!("Snapshots of {new:?}")));
        }
        let mut rev = Reverter::new();
        util::rename(&src, &dst)?;
        rev.add("rename volume back", || util::rename(&dst, &src));
        if exists(&so) {
            util::rename(&so, &sn)?;
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
                mkdir_mode(&snaps_to, 0o700)?;
                let s = snaps_to.clone();
                rev.add("remove copied snapshots", move || {
                    for e in fs::read_dir(&s).into_iter().flatten().flatten() {
                        subvol_delete(&e.path())?;
                    }
                    util::remove_tree(&s)
                });
                for snap in snaps {
                    subvol_snapshot(
                        &self.layout.snapshot(vt, src, &snap),
                        &snaps_to.join(&snap),
                        true,
                    )?;
                }
            }
        }
        self.clone_to_volume(vt, &from, &to)?;
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
        let p = self.need_volume(vt, name)?;
        Ok(self.qgroup(&p).map(|(rfer, _)| rfer))
    }

    fn set_volume_quota(&self, vt: VolumeType, name: &str, size: Option<u64>) -> Result<()> {
        let p = self.need_volume(vt, name)?;
        self.set_limit(&p, size)
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
            mkdir_mode(&parent, 0o700)?;
            let p = parent.clone();
            rev.add("remove snapshot directory", move || util::remove_tree(&p));
        }
        subvol_snapshot(&src, &dst, true)?;
        rev.success();
        Ok(())
    }

    fn delete_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<()> {
        let p = self.need_snapshot(vt, name, snap)?;
        subvol_delete(&p)?;
        let parent = self.layout.snapshots_of(vt, name);
        if util::is_dir_empty(&parent).unwrap_or(false) {
            util::remove_tree(&parent)?;
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
        self.replace_with_snapshot_of(&vol, &src, &self.layout.volumes(vt))?;
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
        self.clone_to_volume(vt, &src, &dst)?;
        Ok(dst)
    }

    fn mount_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<PathBuf> {
        self.need_snapshot(vt, name, snap)
    }

    fn unmount_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<()> {
        self.need_snapshot(vt, name, snap).map(|_| ())
    }

    /// Within one btrfs filesystem a refresh is all copy-on-write: new snapshots are read-only
    /// snapshots of the source's, and the volume becomes a writable snapshot of the source.
    fn refresh_volume(
        &self,
        vt: VolumeType,
        src: &str,
        dst: &str,
        common: &[String],
        with_snapshots: bool,
    ) -> Result<RefreshOutcome> {
        let from = self.need_volume(vt, src)?;
        let to = self.need_volume(vt, dst)?;
        let mut out = RefreshOutcome {
            incremental: true,
            ..Default::default()
        };
        for s in self.list_volume_snapshots(vt, dst)? {
            if !common.contains(&s) {
                self.delete_volume_snapshot(vt, dst, &s)?;
                out.removed.push(s);
            }
        }
        if with_snapshots {
            let parent = self.layout.snapshots_of(vt, dst);
            for s in transfer::snapshots_after(&self.list_volume_snapshots(vt, src)?, common) {
                if !exists(&parent) {
                    mkdir_mode(&parent, 0o700)?;
                }
                subvol_snapshot(&self.layout.snapshot(vt, src, &s), &parent.join(&s), true)?;
                out.added.push(s);
            }
        }
        self.replace_with_snapshot_of(&to, &from, &self.layout.volumes(vt))?;
        Ok(out)
    }
}

/// Subvolume operations the migration streams need (`btrfs send`/`receive` run by the daemon,
/// which owns the websocket): snapshots in and out of place, and deletes.
pub mod stream {
    use super::*;

    /// A read-only snapshot of `src` at `dst` (a sendable subvolume).
    pub fn snapshot_readonly(src: &Path, dst: &Path) -> Result<()> {
        subvol_snapshot(src, dst, true)
    }

    /// A writable snapshot of `src` at `dst`.
    pub fn snapshot_writable(src: &Path, dst: &Path) -> Result<()> {
        subvol_snapshot(src, dst, false)
    }

    pub fn delete(path: &Path) -> Result<()> {
        subvol_delete(path)
    }

    pub fn is_subvolume(path: &Path) -> bool {
        super::is_subvolume(path)
    }

    /// Whether `path` is a subvolume `btrfs receive` made (it has a received UUID), i.e. one a
    /// later incremental stream from the same sender can name as its parent.
    pub fn was_received(path: &Path) -> bool {
        btrfs(["subvolume".as_ref(), "show".as_ref(), path.as_os_str()]).is_ok_and(|out| {
            out.lines().any(|l| {
                l.trim()
                    .strip_prefix("Received UUID:")
                    .is_some_and(|v| !v.trim().is_empty() && v.trim() != "-")
            })
        })
    }
}
