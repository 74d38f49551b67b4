//! The `zfs` driver through the real `zfs`/`zpool` CLIs, restricted to what both zfs-fuse (pool
//! v23) and OpenZFS accept: no `zfs list -p`, no `receive -u`, no `clones` property. Layout
//! `<dataset>/{containers,images,custom,deleted/...}`; image = `images/<fp>@readonly`, instance =
//! clone, snapshots `@snapshot-<name>`; datasets mount at explicit `mountpoint=` paths.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::config::get_bool;
use crate::layout::{INSTANCE_MODE, Layout, volume_mode};
use crate::revert::Reverter;
use crate::util::{self, check_fingerprint, check_name, exists, mkdir_mode};
use crate::{
    ConfigMap, Driver, Error, Filler, Info, RefreshOutcome, Result, VolumeType, parse_size, runner,
    transfer,
};

const DEFAULT_SIZE: &str = "5GiB";
const USER_SNAPSHOT_PREFIX: &str = "snapshot-";
/// User property marking an image deleted while instances still clone it (LXD renames it to
/// `deleted/images/<fp>`; renaming an origin remounts its clones, which fails while they are in
/// use and is flaky on zfs-fuse, so we mark it in place).
const DELETED_PROP: &str = "lxd:deleted";
const TOP_DATASETS: [&str; 7] = [
    "containers",
    "images",
    "custom",
    "deleted",
    "deleted/containers",
    "deleted/images",
    "deleted/custom",
];

#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// A pool we create on `$LXD_DIR/disks/<pool>.img` (or another file).
    Loop(PathBuf),
    Device(PathBuf),
    /// An existing zpool or dataset given by name (`zfs.pool_name`).
    Existing,
}

#[derive(Debug)]
pub(crate) struct Zfs {
    layout: Layout,
    config: ConfigMap,
    source: Source,
    /// `zfs.pool_name`: the dataset everything lives under.
    dataset: String,
}

/// zfs-fuse has no kernel module; OpenZFS shows up in /sys/module/zfs.
fn is_fuse() -> bool {
    !Path::new("/sys/module/zfs").exists()
}

pub(crate) fn version() -> Option<String> {
    if let Ok(v) = fs::read_to_string("/sys/module/zfs/version") {
        return Some(v.trim().to_string());
    }
    // zfs-fuse: the tools exist and its daemon answers.
    let out = runner::run("zpool", ["upgrade", "-v"]).ok()?;
    let v = out
        .lines()
        .next()?
        .rsplit(' ')
        .next()?
        .trim_end_matches('.')
        .to_string();
    Some(format!("zfs-fuse (pool version {v})"))
}

/// Run `zfs args...`. A query (`list`, `get`) that fails without a word is retried: the
/// zfs-fuse CLI now and then exits silently while its daemon is busy with other commands
/// (seen with tests running concurrently); a query is safe to repeat, a change is not.
fn zfs<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let query = matches!(args.first().and_then(|a| a.to_str()), Some("list" | "get"));
    let mut tries = 0;
    loop {
        match runner::run("zfs", &args) {
            Err(Error::Command { message, .. })
                if query && tries < 3 && message.starts_with(runner::SILENT) =>
            {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// zfs-fuse unmounts asynchronously: a mount, rename, destroy or rollback right after an unmount
/// can fail with "dataset is busy" (or, for a rollback, "I/O error") for a moment. Retry those a
/// few times.
fn zfs_retry(args: &[&str]) -> Result<String> {
    retry_busy("zfs", args)
}

/// `zpool destroy`/`export` right after a dataset was unmounted: "pool is busy" for a moment.
fn zpool_retry(args: &[&str]) -> Result<String> {
    retry_busy("zpool", args)
}

fn retry_busy(cmd: &str, args: &[&str]) -> Result<String> {
    let run = || runner::run(cmd, args);
    let mut delay = std::time::Duration::from_millis(100);
    for _ in 0..5 {
        match run() {
            Err(Error::Command { message, .. })
                if message.contains("busy") || message.contains("I/O error") =>
            {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
    run()
}

fn zpool<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    runner::run("zpool", args)
}

fn dataset_exists(name: &str) -> Result<bool> {
    match zfs(["list", "-H", "-o", "name", name]) {
        Ok(_) => Ok(true),
        Err(Error::Command { message, .. }) if message.contains("does not exist") => Ok(false),
        Err(e) => Err(e),
    }
}

fn destroy_if_exists(ds: &str) -> Result<()> {
    if dataset_exists(ds)? {
        zfs_retry(&["destroy", "-r", ds])?;
    }
    Ok(())
}

fn get_prop(ds: &str, prop: &str) -> Result<String> {
    Ok(zfs(["get", "-H", "-p", "-o", "value", prop, ds])?
        .trim()
        .to_string())
}

/// `zfs send [-i FROM] SNAP | zfs receive [-F] DST`. zfs-fuse sometimes answers "I/O error"
/// after it has received the whole stream and remounted DST (reproduced: about one incremental
/// receive in ten right after DST was unmounted). The snapshot then exists on DST with SNAP's
/// guid, which ZFS only creates once the stream is complete, so that counts as success.
fn send_receive(from: Option<&str>, snap: &str, dst: &str, force: bool) -> Result<()> {
    let mut send = vec!["send"];
    if let Some(f) = from {
        send.extend(["-i", f]);
    }
    send.push(snap);
    let mut recv = vec!["receive"];
    if force {
        recv.push("-F");
    }
    recv.push(dst);
    let err = match runner::pipe("zfs", send, "zfs", recv) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    let Some((_, short)) = snap.split_once('@') else {
        return Err(err);
    };
    let received = format!("{dst}@{short}");
    if matches!(&err, Error::Command { message, .. } if message.contains("I/O error"))
        && dataset_exists(&received).unwrap_or(false)
        && get_prop(&received, "guid").ok() == get_prop(snap, "guid").ok()
    {
        tracing::warn!(
            "zfs receive into {dst} reported an I/O error after receiving {received}; kept"
        );
        return Ok(());
    }
    Err(err)
}

fn mountpoint_opt(path: &Path) -> String {
    format!("mountpoint={}", path.display())
}

impl Zfs {
    pub(crate) fn new(layout: Layout, mut config: ConfigMap) -> Result<Self> {
        let given = config.get("source").filter(|s| !s.is_empty()).cloned();
        let source = match &given {
            None => {
                let f = layout.loop_file();
                config.insert("source".into(), f.display().to_string());
                Source::Loop(f)
            }
            Some(s) if s.starts_with('/') => {
                let p = PathBuf::from(s);
                match fs::metadata(&p) {
                    Ok(m) if m.file_type().is_block_device() => Source::Device(p),
                    _ => Source::Loop(p),
                }
            }
            Some(s) => {
                config.insert("zfs.pool_name".into(), s.clone());
                Source::Existing
            }
        };
        let dataset = config
            .entry("zfs.pool_name".into())
            .or_insert_with(|| layout.pool.clone())
            .clone();
        if !matches!(source, Source::Existing) && dataset.contains('/') {
            return Err(Error::Invalid(format!(
                "zfs.pool_name {dataset:?} must be a plain pool name when the pool is created"
            )));
        }
        if matches!(source, Source::Loop(_)) {
            config
                .entry("size".into())
                .or_insert_with(|| DEFAULT_SIZE.to_string());
        }
        Ok(Zfs {
            layout,
            config,
            source,
            dataset,
        })
    }

    fn zpool_name(&self) -> &str {
        self.dataset.split('/').next().unwrap_or(&self.dataset)
    }

    fn ds(&self, rel: &str) -> String {
        format!("{}/{rel}", self.dataset)
    }

    fn vol_ds(&self, vt: VolumeType, name: &str) -> String {
        self.ds(&format!("{}/{name}", vt.dir()))
    }

    fn image_ds(&self, fp: &str) -> String {
        self.ds(&format!("images/{fp}"))
    }

    fn snap(&self, vt: VolumeType, name: &str, snap: &str) -> String {
        format!("{}@{USER_SNAPSHOT_PREFIX}{snap}", self.vol_ds(vt, name))
    }

    /// The temporary read-only clone that makes a snapshot's files visible (zfs-fuse has no
    /// `.zfs/snapshot` directory and cannot mount a snapshot). The length prefix keeps names
    /// unique whatever the volume and snapshot names contain.
    fn snapmount_ds(&self, vt: VolumeType, name: &str, snap: &str) -> String {
        self.ds(&format!(
            "deleted/{}/snap-{}-{name}-{snap}",
            vt.dir(),
            name.len()
        ))
    }

    /// Destroy the snapshot mounts left for a volume (all of them, or one snapshot's).
    fn drop_snapmounts(&self, vt: VolumeType, name: &str, snap: Option<&str>) -> Result<()> {
        let parent = self.ds(&format!("deleted/{}", vt.dir()));
        let prefix = match snap {
            Some(s) => self.snapmount_ds(vt, name, s),
            None => format!("{parent}/snap-{}-{name}-", name.len()),
        };
        let out = zfs([
            "list",
            "-H",
            "-o",
            "name",
            "-t",
            "filesystem",
            "-r",
            &parent,
        ])?;
        for ds in out.lines().filter(|l| l.starts_with(&prefix)) {
            if snap.is_some() && ds != prefix {
                continue;
            }
            Self::destroy(ds)?;
        }
        Ok(())
    }

    fn need_volume(&self, vt: VolumeType, name: &str) -> Result<String> {
        check_name(vt.kind(), name)?;
        let ds = self.vol_ds(vt, name);
        if !dataset_exists(&ds)? {
            return Err(Error::NotFound(format!("{} {name:?}", vt.label())));
        }
        Ok(ds)
    }

    fn need_free_volume(&self, vt: VolumeType, name: &str) -> Result<String> {
        check_name(vt.kind(), name)?;
        let ds = self.vol_ds(vt, name);
        if dataset_exists(&ds)? {
            return Err(Error::AlreadyExists(format!("{} {name:?}", vt.label())));
        }
        Ok(ds)
    }

    fn need_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<String> {
        check_name(vt.kind(), name)?;
        check_name("snapshot", snap)?;
        let s = self.snap(vt, name, snap);
        if !dataset_exists(&s)? {
            return Err(Error::NotFound(format!("Snapshot {name}/{snap}")));
        }
        Ok(s)
    }

    /// User snapshot names of a volume dataset, oldest first.
    fn user_snapshots(&self, ds: &str) -> Result<Vec<String>> {
        let prefix = format!("{ds}@{USER_SNAPSHOT_PREFIX}");
        Ok(self
            .snapshots_of(ds)?
            .iter()
            .filter_map(|s| s.strip_prefix(&prefix).map(str::to_string))
            .collect())
    }

    fn pool_imported(&self) -> bool {
        zpool(["list", "-H", "-o", "name", self.zpool_name()]).is_ok()
    }

    /// (dataset, origin) of every filesystem of the pool: the clone graph, since zfs-fuse has
    /// no `clones` property.
    fn origins(&self) -> Result<Vec<(String, String)>> {
        let out = zfs([
            "list",
            "-H",
            "-o",
            "name,origin",
            "-t",
            "filesystem",
            "-r",
            &self.dataset,
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect())
    }

    fn has_clones(&self, snapshot: &str) -> Result<bool> {
        Ok(self.origins()?.iter().any(|(_, o)| o == snapshot))
    }

    /// Snapshots of `ds` (full names), oldest first.
    fn snapshots_of(&self, ds: &str) -> Result<Vec<String>> {
        let out = zfs([
            "list", "-H", "-o", "name", "-t", "snapshot", "-s", "creation", "-r", ds,
        ])?;
        let prefix = format!("{ds}@");
        Ok(out
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_string)
            .collect())
    }

    fn any_snapshot_has_clones(&self, ds: &str) -> Result<bool> {
        let origins = self.origins()?;
        let prefix = format!("{ds}@");
        Ok(origins.iter().any(|(_, o)| o.starts_with(&prefix)))
    }

    fn is_mounted(ds: &str) -> Result<bool> {
        Ok(get_prop(ds, "mounted")? == "yes")
    }

    fn mount(ds: &str) -> Result<()> {
        if !Self::is_mounted(ds)? {
            zfs_retry(&["mount", ds])?;
        }
        Ok(())
    }

    fn unmount(ds: &str) -> Result<()> {
        if Self::is_mounted(ds)? {
            zfs_retry(&["umount", ds])?;
        }
        Ok(())
    }

    /// Point `ds` at `path` and mount it there.
    fn mount_at(ds: &str, path: &Path, mode: u32) -> Result<()> {
        zfs(["set", &mountpoint_opt(path), ds])?;
        Self::mount(ds)?;
        util::set_mode(path, mode)
    }

    fn destroy(ds: &str) -> Result<()> {
        zfs_retry(&["destroy", "-r", ds]).map(|_| ())
    }

    fn image_marked_deleted(ds: &str) -> Result<bool> {
        Ok(get_prop(ds, DELETED_PROP)? == "true")
    }

    /// After a dataset was destroyed: its origin may now be garbage, either an image marked
    /// deleted that has no clone left, or a hidden `copy-` snapshot of another instance.
    fn collect_origin(&self, origin: &str) -> Result<()> {
        let Some((ds, snap)) = origin.split_once('@') else {
            return Ok(());
        };
        if !dataset_exists(origin)? || self.has_clones(origin)? {
            return Ok(());
        }
        if ds.starts_with(&self.ds("images/")) {
            if Self::image_marked_deleted(ds)? {
                Self::destroy(ds)?;
            }
        } else if snap.starts_with("copy-") {
            zfs_retry(&["destroy", origin])?;
        }
        Ok(())
    }

    /// Refuse to change a dataset whose snapshots have clones (instances made with
    /// `zfs.clone_copy=true`): renaming or destroying it would take them down.
    fn check_no_dependents(&self, ds: &str, what: &str) -> Result<()> {
        if self.any_snapshot_has_clones(ds)? {
            return Err(Error::Busy(format!(
                "{what} has copies that depend on it (zfs.clone_copy); delete them first"
            )));
        }
        Ok(())
    }

    /// zfs.clone_copy: copies are clones only when set to true (or rebase). Unset means full
    /// send/receive copies here (LXD defaults to clones): a clone pins its origin, and an
    /// origin cannot then be renamed or deleted while the clone is in use.
    fn use_clones(&self) -> bool {
        matches!(
            self.config.get("zfs.clone_copy").map(String::as_str),
            Some("true" | "rebase")
        )
    }

    /// New instance dataset `dst` as a clone of `origin`, mounted at `path`, default quota set.
    fn clone_to(&self, origin: &str, dst: &str, path: &Path, mode: u32) -> Result<()> {
        let mut rev = Reverter::new();
        zfs(["clone", "-o", &mountpoint_opt(path), origin, dst])?;
        rev.add("destroy clone", move || {
            Self::destroy(dst)?;
            let _ = fs::remove_dir(path);
            Ok(())
        });
        Self::mount(dst)?;
        util::set_mode(path, mode)?;
        self.apply_default_quota(dst)?;
        rev.success();
        Ok(())
    }

    fn apply_default_quota(&self, ds: &str) -> Result<()> {
        if let Some(size) = self.config.get("volume.size").filter(|s| !s.is_empty()) {
            zfs(["set", &format!("refquota={}", parse_size(size)?), ds])?;
        }
        Ok(())
    }

    /// Full copy of `src` into new dataset `dst` by send/receive: the listed snapshots of
    /// `src` (oldest first) then its current state, mounted at `path`.
    fn send_copy(
        &self,
        src: &str,
        snaps: &[String],
        dst: &str,
        path: &Path,
        mode: u32,
    ) -> Result<()> {
        let mut rev = Reverter::new();
        let tmp_name = format!("copy-{}", util::nonce());
        let tmp = format!("{src}@{tmp_name}");
        zfs(["snapshot", &tmp])?;
        let t = tmp.clone();
        rev.add("destroy temporary snapshot", move || {
            zfs(["destroy", &t]).map(|_| ())
        });
        let mut chain: Vec<String> = snaps.to_vec();
        chain.push(tmp.clone());
        // A receive that fails half way can leave the dataset behind.
        rev.add("destroy received dataset", move || {
            destroy_if_exists(dst)?;
            let _ = fs::remove_dir(path);
            Ok(())
        });
        let mut prev: Option<&str> = None;
        for s in &chain {
            send_receive(prev, s, dst, prev.is_some())?;
            prev = Some(s);
        }
        zfs(["destroy", &format!("{dst}@{tmp_name}")])?;
        zfs(["destroy", &tmp])?;
        Self::mount_at(dst, path, mode)?;
        self.apply_default_quota(dst)?;
        rev.success();
        Ok(())
    }

    /// Mount every dataset of ours that has a path mountpoint and is not mounted.
    fn mount_all(&self) -> Result<bool> {
        let out = zfs([
            "list",
            "-H",
            "-o",
            "name,mountpoint,mounted",
            "-t",
            "filesystem",
            "-r",
            &self.dataset,
        ])?;
        let mut did = false;
        for line in out.lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            if let [name, mp, "no"] = cols[..]
                && mp.starts_with('/')
            {
                zfs_retry(&["mount", name])?;
                did = true;
            }
        }
        Ok(did)
    }
}

impl Driver for Zfs {
    fn info(&self) -> Info {
        let fuse = is_fuse();
        Info {
            driver: "zfs",
            optimized_images: true,
            snapshots: true,
            quotas: true,
            // zfs-fuse: mount_setattr(MOUNT_ATTR_IDMAP) gives EINVAL and setxattr ENOTSUP
            // (reference/machine.md 1).
            idmapped_mounts: !fuse,
            xattrs: !fuse,
            coarse_timestamps: fuse,
            running_copy_freeze: false,
            remote: false,
            preserves_inodes: true,
            restore_any_snapshot: get_bool(
                &self.config,
                &["zfs.remove_snapshots", "volume.zfs.remove_snapshots"],
                false,
            ),
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
                if self.pool_imported() {
                    return Err(Error::AlreadyExists(format!("ZFS pool {:?}", self.dataset)));
                }
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
                drop(f);
                zpool([
                    "create".as_ref(),
                    "-m".as_ref(),
                    "none".as_ref(),
                    self.dataset.as_ref(),
                    file.as_os_str(),
                ])?;
                rev.add("destroy zpool", || {
                    zpool(["destroy", self.zpool_name()]).map(|_| ())
                });
            }
            Source::Device(dev) => {
                util::check_free_block_device(dev)?;
                zpool([
                    "create".as_ref(),
                    "-m".as_ref(),
                    "none".as_ref(),
                    self.dataset.as_ref(),
                    dev.as_os_str(),
                ])?;
                rev.add("destroy zpool", || {
                    zpool(["destroy", self.zpool_name()]).map(|_| ())
                });
            }
            Source::Existing => {
                if dataset_exists(&self.dataset)? {
                    let children = zfs(["list", "-H", "-o", "name", "-r", &self.dataset])?;
                    if children.lines().count() > 1 {
                        return Err(Error::Invalid(format!(
                            "ZFS dataset {:?} isn't empty",
                            self.dataset
                        )));
                    }
                } else if self.dataset.contains('/') {
                    zfs(["create", "-p", "-o", "mountpoint=none", &self.dataset])?;
                    rev.add("destroy source dataset", || Self::destroy(&self.dataset));
                } else {
                    return Err(Error::NotFound(format!("ZFS pool {:?}", self.dataset)));
                }
            }
        }
        for d in TOP_DATASETS {
            let ds = self.ds(d);
            if !dataset_exists(&ds)? {
                zfs(["create", "-o", "mountpoint=none", &ds])?;
                if let Source::Existing = self.source {
                    rev.add("destroy dataset", move || Self::destroy(&ds));
                }
            }
        }
        let created = !exists(&pool);
        self.layout.ensure_pool_dir()?;
        if created {
            let p = pool.clone();
            rev.add("remove pool directory", move || util::remove_tree(&p));
        }
        self.layout.ensure_base_dirs()?;
        rev.success();
        Ok(())
    }

    fn delete_pool(&self) -> Result<()> {
        match &self.source {
            Source::Loop(_) | Source::Device(_) => {
                if !self.pool_imported() {
                    let _ = self.mount_pool();
                }
                if self.pool_imported() {
                    zpool_retry(&["destroy", self.zpool_name()])?;
                }
                if let Source::Loop(f) = &self.source {
                    util::remove_tree(f)?;
                }
            }
            Source::Existing => {
                for d in ["containers", "images", "custom", "deleted"] {
                    let ds = self.ds(d);
                    if dataset_exists(&ds)? {
                        Self::destroy(&ds)?;
                    }
                }
            }
        }
        util::remove_tree(&self.layout.pool_path())
    }

    fn mount_pool(&self) -> Result<bool> {
        let mut did = false;
        if !self.pool_imported() {
            match &self.source {
                Source::Loop(file) => {
                    let dir = file.parent().unwrap_or(Path::new("/"));
                    zpool([
                        "import".as_ref(),
                        "-d".as_ref(),
                        dir.as_os_str(),
                        self.zpool_name().as_ref(),
                    ])?;
                }
                _ => {
                    zpool(["import", self.zpool_name()])?;
                }
            }
            did = true;
        }
        self.layout.ensure_pool_dir()?;
        self.layout.ensure_base_dirs()?;
        // After a zfs-fuse restart the pool is imported but nothing is mounted.
        Ok(self.mount_all()? || did)
    }

    fn unmount_pool(&self) -> Result<bool> {
        if !self.pool_imported() {
            return Ok(false);
        }
        let export = get_bool(&self.config, &["zfs.export"], true);
        match self.source {
            Source::Loop(_) | Source::Device(_) if export => {
                zpool_retry(&["export", self.zpool_name()])?;
                Ok(true)
            }
            _ => {
                let out = zfs([
                    "list",
                    "-H",
                    "-o",
                    "name,mounted",
                    "-t",
                    "filesystem",
                    "-r",
                    &self.dataset,
                ])?;
                let mut mounted: Vec<&str> = out
                    .lines()
                    .filter_map(|l| l.strip_suffix("\tyes"))
                    .collect();
                mounted.sort_by_key(|n| std::cmp::Reverse(n.len()));
                for ds in &mounted {
                    zfs(["umount", ds])?;
                }
                Ok(!mounted.is_empty())
            }
        }
    }

    fn resources(&self) -> Result<(u64, u64)> {
        let used: u64 = get_prop(&self.dataset, "used")?.parse().unwrap_or(0);
        let avail: u64 = get_prop(&self.dataset, "available")?.parse().unwrap_or(0);
        Ok((used, used + avail))
    }

    fn image_volume_exists(&self, fp: &str) -> Result<bool> {
        check_fingerprint(fp)?;
        let ds = self.image_ds(fp);
        Ok(dataset_exists(&format!("{ds}@readonly"))? && !Self::image_marked_deleted(&ds)?)
    }

    fn create_image_volume(&self, fp: &str, filler: Filler<'_>) -> Result<()> {
        check_fingerprint(fp)?;
        if self.image_volume_exists(fp)? {
            return Err(Error::AlreadyExists(format!("Image volume {fp}")));
        }
        let ds = self.image_ds(fp);
        // An image deleted while clones still used it comes back instead of being re-unpacked.
        if dataset_exists(&format!("{ds}@readonly"))? {
            zfs(["inherit", DELETED_PROP, &ds])?;
            return Ok(());
        }
        if dataset_exists(&ds)? {
            // A leftover from an interrupted fill (no @readonly yet).
            Self::destroy(&ds)?;
        }
        let path = self.layout.image(fp);
        let mut rev = Reverter::new();
        zfs(["create", "-o", &mountpoint_opt(&path), &ds])?;
        let (d, p) = (ds.clone(), path.clone());
        rev.add("destroy partial image dataset", move || {
            Self::destroy(&d)?;
            let _ = fs::remove_dir(&p);
            Ok(())
        });
        Self::mount(&ds)?;
        util::run_filler(filler, &path, fp)?;
        zfs(["snapshot", &format!("{ds}@readonly")])?;
        // Images are only ever cloned: keep them unmounted.
        zfs(["set", "mountpoint=none", &ds])?;
        let _ = fs::remove_dir(&path);
        rev.success();
        Ok(())
    }

    fn delete_image_volume(&self, fp: &str) -> Result<()> {
        check_fingerprint(fp)?;
        let ds = self.image_ds(fp);
        if !dataset_exists(&ds)? {
            return Ok(());
        }
        if self.has_clones(&format!("{ds}@readonly"))? {
            zfs(["set", &format!("{DELETED_PROP}=true"), &ds])?;
        } else {
            Self::destroy(&ds)?;
        }
        let _ = fs::remove_dir(self.layout.image(fp));
        Ok(())
    }

    fn create_instance_from_image(&self, name: &str, fp: &str) -> Result<PathBuf> {
        check_fingerprint(fp)?;
        let vt = VolumeType::Container;
        let dst = self.need_free_volume(vt, name)?;
        if !self.image_volume_exists(fp)? {
            return Err(Error::NotFound(format!("Image volume {fp}")));
        }
        let path = self.layout.volume(vt, name);
        self.clone_to(
            &format!("{}@readonly", self.image_ds(fp)),
            &dst,
            &path,
            INSTANCE_MODE,
        )?;
        Ok(path)
    }

    fn instance_dataset(&self, name: &str) -> Option<String> {
        check_name("instance", name).ok()?;
        Some(self.vol_ds(VolumeType::Container, name))
    }

    fn adopt_received_instance(&self, name: &str, keep: &[String]) -> Result<PathBuf> {
        let ds = self.need_volume(VolumeType::Container, name)?;
        for full in self.snapshots_of(&ds)? {
            let short = full.split_once('@').map_or("", |(_, s)| s);
            let wanted = short
                .strip_prefix(USER_SNAPSHOT_PREFIX)
                .is_some_and(|s| keep.iter().any(|k| k == s));
            if !wanted {
                zfs(["destroy", &full])?;
            }
        }
        let path = self.layout.volume(VolumeType::Container, name);
        Self::mount_at(&ds, &path, volume_mode(VolumeType::Container))?;
        self.apply_default_quota(&ds)?;
        Ok(path)
    }

    fn volume_path(&self, vt: VolumeType, name: &str) -> PathBuf {
        self.layout.volume(vt, name)
    }

    fn volume_exists(&self, vt: VolumeType, name: &str) -> Result<bool> {
        check_name(vt.kind(), name)?;
        dataset_exists(&self.vol_ds(vt, name))
    }

    fn create_volume(&self, vt: VolumeType, name: &str) -> Result<PathBuf> {
        let dst = self.need_free_volume(vt, name)?;
        let path = self.layout.volume(vt, name);
        let mut rev = Reverter::new();
        zfs(["create", "-o", &mountpoint_opt(&path), &dst])?;
        rev.add("destroy volume dataset", || {
            Self::destroy(&dst)?;
            let _ = fs::remove_dir(&path);
            Ok(())
        });
        Self::mount(&dst)?;
        util::set_mode(&path, volume_mode(vt))?;
        if vt == VolumeType::Container {
            mkdir_mode(&path.join("rootfs"), 0o755)?;
        }
        self.apply_default_quota(&dst)?;
        rev.success();
        Ok(path)
    }

    fn delete_volume(&self, vt: VolumeType, name: &str) -> Result<()> {
        check_name(vt.kind(), name)?;
        let ds = self.vol_ds(vt, name);
        self.drop_snapmounts(vt, name, None)?;
        if dataset_exists(&ds)? {
            self.check_no_dependents(&ds, &format!("{} {name:?}", vt.label()))?;
            let origin = get_prop(&ds, "origin")?;
            Self::destroy(&ds)?;
            self.collect_origin(&origin)?;
        }
        let _ = fs::remove_dir(self.layout.volume(vt, name));
        util::remove_tree(&self.layout.snapshots_of(vt, name))
    }

    fn rename_volume(&self, vt: VolumeType, old: &str, new: &str) -> Result<()> {
        let src = self.need_volume(vt, old)?;
        let dst = self.need_free_volume(vt, new)?;
        let (old_path, new_path) = (self.layout.volume(vt, old), self.layout.volume(vt, new));
        self.check_no_dependents(&src, &format!("{} {old:?}", vt.label()))?;
        self.drop_snapmounts(vt, old, None)?;
        let mode = fs::symlink_metadata(&old_path)
            .map(|m| m.mode() & 0o7777)
            .unwrap_or(volume_mode(vt));
        let mut rev = Reverter::new();
        // zfs-fuse cannot rename a mounted dataset ("dataset is busy").
        Self::unmount(&src)?;
        rev.add("remount volume", || Self::mount(&src));
        zfs_retry(&["rename", &src, &dst])?;
        rev.add("rename volume back", || {
            zfs_retry(&["rename", &dst, &src])?;
            zfs(["set", &mountpoint_opt(&old_path), &src]).map(|_| ())
        });
        Self::mount_at(&dst, &new_path, mode)?;
        rev.success();
        let _ = fs::remove_dir(&old_path);
        let (so, sn) = (
            self.layout.snapshots_of(vt, old),
            self.layout.snapshots_of(vt, new),
        );
        if exists(&so) && !exists(&sn) {
            util::rename(&so, &sn)?;
        }
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
        let path = self.layout.volume(vt, dst);
        let snaps: Vec<String> = if with_snapshots {
            let prefix = format!("{from}@{USER_SNAPSHOT_PREFIX}");
            self.snapshots_of(&from)?
                .into_iter()
                .filter(|s| s.starts_with(&prefix))
                .collect()
        } else {
            Vec::new()
        };
        if snaps.is_empty() && self.use_clones() {
            // LXD's zfs.clone_copy: a hidden snapshot of the source, cloned.
            let snap = format!("{from}@copy-{}", util::nonce());
            let mut rev = Reverter::new();
            zfs(["snapshot", &snap])?;
            let s = snap.clone();
            rev.add("destroy copy snapshot", move || {
                zfs(["destroy", &s]).map(|_| ())
            });
            self.clone_to(&snap, &to, &path, volume_mode(vt))?;
            rev.success();
        } else {
            self.send_copy(&from, &snaps, &to, &path, volume_mode(vt))?;
        }
        Ok(path)
    }

    fn mount_volume(&self, vt: VolumeType, name: &str) -> Result<PathBuf> {
        let ds = self.need_volume(vt, name)?;
        Self::mount(&ds)?;
        Ok(self.layout.volume(vt, name))
    }

    fn unmount_volume(&self, vt: VolumeType, name: &str) -> Result<()> {
        let ds = self.need_volume(vt, name)?;
        Self::unmount(&ds)
    }

    fn volume_usage(&self, vt: VolumeType, name: &str) -> Result<Option<u64>> {
        let ds = self.need_volume(vt, name)?;
        Ok(get_prop(&ds, "used")?.parse().ok())
    }

    fn set_volume_quota(&self, vt: VolumeType, name: &str, size: Option<u64>) -> Result<()> {
        let ds = self.need_volume(vt, name)?;
        let value = size.map_or("refquota=none".to_string(), |s| format!("refquota={s}"));
        zfs(["set", &value, &ds]).map(|_| ()).map_err(|e| match e {
            Error::Command { message, .. } if message.contains("less than current used") => {
                Error::Invalid(format!(
                    "Quota for {name:?} is smaller than the space it already uses"
                ))
            }
            e => e,
        })
    }

    fn create_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<()> {
        self.need_volume(vt, name)?;
        check_name("snapshot", snap)?;
        let s = self.snap(vt, name, snap);
        if dataset_exists(&s)? {
            return Err(Error::AlreadyExists(format!("Snapshot {name}/{snap}")));
        }
        zfs(["snapshot", &s]).map(|_| ())
    }

    fn delete_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<()> {
        let s = self.need_snapshot(vt, name, snap)?;
        self.drop_snapmounts(vt, name, Some(snap))?;
        if self.has_clones(&s)? {
            return Err(Error::Busy(format!(
                "Snapshot {name}/{snap} has volumes cloned from it (zfs.clone_copy); delete them first"
            )));
        }
        zfs_retry(&["destroy", &s]).map(|_| ())
    }

    fn rename_volume_snapshot(
        &self,
        vt: VolumeType,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<()> {
        let s = self.need_snapshot(vt, name, old)?;
        check_name("snapshot", new)?;
        let n = self.snap(vt, name, new);
        if dataset_exists(&n)? {
            return Err(Error::AlreadyExists(format!("Snapshot {name}/{new}")));
        }
        self.drop_snapmounts(vt, name, Some(old))?;
        zfs(["rename", &s, &n]).map(|_| ())
    }

    fn restore_volume_snapshot(
        &self,
        vt: VolumeType,
        name: &str,
        snap: &str,
        remove_newer: Option<bool>,
    ) -> Result<Vec<String>> {
        let target = self.need_snapshot(vt, name, snap)?;
        let ds = self.vol_ds(vt, name);
        let all = self.snapshots_of(&ds)?;
        let pos = all.iter().position(|s| *s == target).unwrap_or(all.len());
        let newer = &all[pos.saturating_add(1).min(all.len())..];
        let user_prefix = format!("{ds}@{USER_SNAPSHOT_PREFIX}");
        let newer_user: Vec<String> = newer
            .iter()
            .filter_map(|s| s.strip_prefix(&user_prefix).map(str::to_string))
            .collect();
        let allowed = remove_newer.unwrap_or(self.info().restore_any_snapshot);
        if !newer_user.is_empty() && !allowed {
            return Err(Error::Invalid(format!(
                "Snapshot {snap:?} cannot be restored due to subsequent snapshot(s). Set zfs.remove_snapshots to override"
            )));
        }
        for s in &newer_user {
            self.drop_snapmounts(vt, name, Some(s))?;
        }
        for s in newer {
            if self.has_clones(s)? {
                return Err(Error::Busy(format!(
                    "Snapshot {snap:?} cannot be restored: a newer snapshot has dependent copies"
                )));
            }
        }
        if newer.is_empty() {
            zfs_retry(&["rollback", &target])?;
        } else {
            zfs_retry(&["rollback", "-r", &target])?;
        }
        Ok(newer_user)
    }

    fn volume_snapshot_path(&self, vt: VolumeType, name: &str, snap: &str) -> PathBuf {
        self.layout.snapshot(vt, name, snap)
    }

    fn list_volume_snapshots(&self, vt: VolumeType, name: &str) -> Result<Vec<String>> {
        check_name(vt.kind(), name)?;
        let ds = self.vol_ds(vt, name);
        if !dataset_exists(&ds)? {
            return Ok(Vec::new());
        }
        self.user_snapshots(&ds)
    }

    fn create_volume_from_snapshot(
        &self,
        vt: VolumeType,
        name: &str,
        snap: &str,
        new_name: &str,
    ) -> Result<PathBuf> {
        let s = self.need_snapshot(vt, name, snap)?;
        let dst = self.need_free_volume(vt, new_name)?;
        let path = self.layout.volume(vt, new_name);
        if self.use_clones() {
            self.clone_to(&s, &dst, &path, volume_mode(vt))?;
        } else {
            let mut rev = Reverter::new();
            // A receive that fails half way can leave the dataset behind.
            rev.add("destroy received dataset", || destroy_if_exists(&dst));
            send_receive(None, &s, &dst, false)?;
            let received = format!("{dst}@{USER_SNAPSHOT_PREFIX}{snap}");
            zfs(["destroy", &received])?;
            Self::mount_at(&dst, &path, volume_mode(vt))?;
            self.apply_default_quota(&dst)?;
            rev.success();
        }
        Ok(path)
    }

    fn mount_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<PathBuf> {
        let s = self.need_snapshot(vt, name, snap)?;
        let clone = self.snapmount_ds(vt, name, snap);
        let path = self.layout.snapshot(vt, name, snap);
        if dataset_exists(&clone)? {
            Self::mount(&clone)?;
            return Ok(path);
        }
        let parent = self.layout.snapshots_of(vt, name);
        fs::create_dir_all(&parent).map_err(|e| Error::io("create directory", &parent, e))?;
        let mut rev = Reverter::new();
        zfs([
            "clone",
            "-o",
            &mountpoint_opt(&path),
            "-o",
            "readonly=on",
            &s,
            &clone,
        ])?;
        rev.add("destroy snapshot mount", || Self::destroy(&clone));
        Self::mount(&clone)?;
        rev.success();
        Ok(path)
    }

    fn unmount_volume_snapshot(&self, vt: VolumeType, name: &str, snap: &str) -> Result<()> {
        check_name(vt.kind(), name)?;
        check_name("snapshot", snap)?;
        self.drop_snapmounts(vt, name, Some(snap))?;
        let _ = fs::remove_dir(self.layout.snapshot(vt, name, snap));
        let _ = fs::remove_dir(self.layout.snapshots_of(vt, name));
        Ok(())
    }

    /// Incremental when the target's latest shared snapshot is the very same snapshot as the
    /// source's (same guid: the target was made by send/receive): each missing snapshot, then
    /// the current state, goes as `zfs send -i | zfs receive -F`. Otherwise file by file.
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
        let base = match common.last() {
            Some(l) => {
                let (a, b) = (self.snap(vt, src, l), self.snap(vt, dst, l));
                (dataset_exists(&a)?
                    && dataset_exists(&b)?
                    && get_prop(&a, "guid")? == get_prop(&b, "guid")?)
                .then_some(a)
            }
            None => None,
        };
        let Some(base) = base else {
            return transfer::refresh_generic(self, vt, src, self, dst, common, with_snapshots);
        };
        let mut out = RefreshOutcome {
            incremental: true,
            ..Default::default()
        };
        for s in self.user_snapshots(&to)? {
            if !common.contains(&s) {
                self.delete_volume_snapshot(vt, dst, &s)?;
                out.removed.push(s);
            }
        }
        let path = self.layout.volume(vt, dst);
        let mode = fs::symlink_metadata(&path)
            .map(|m| m.mode() & 0o7777)
            .unwrap_or(volume_mode(vt));
        Self::unmount(&to)?;
        let mut prev = base;
        if with_snapshots {
            for s in transfer::snapshots_after(&self.user_snapshots(&from)?, common) {
                let next = self.snap(vt, src, &s);
                send_receive(Some(&prev), &next, &to, true)?;
                out.added.push(s);
                prev = next;
            }
        }
        let tmp_name = format!("refresh-{}", util::nonce());
        let tmp = format!("{from}@{tmp_name}");
        zfs(["snapshot", &tmp])?;
        let res = send_receive(Some(&prev), &tmp, &to, true);
        let _ = zfs(["destroy", &tmp]);
        let _ = destroy_if_exists(&format!("{to}@{tmp_name}"));
        let mounted = Self::mount_at(&to, &path, mode);
        res?;
        mounted?;
        Ok(out)
    }
}
