//! Moving volume contents where no native transfer applies: between pools (any drivers) and for
//! refreshes a driver cannot do incrementally. Files go through `rsync -aH --numeric-ids`, which
//! keeps on-disk ownership as it is (shifted or not: the daemon records which).

use std::path::Path;

use crate::revert::Reverter;
use crate::{Driver, Error, RefreshOutcome, Result, VolumeType, runner};

/// How files are compared and what metadata goes along.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RsyncOpts {
    /// Copy xattrs and ACLs, which both sides must support (zfs-fuse has neither).
    pub(crate) xattrs: bool,
    /// Compare contents, not size and mtime (a side has whole-second timestamps).
    pub(crate) checksum: bool,
}

impl RsyncOpts {
    pub(crate) fn between(a: &crate::Info, b: &crate::Info) -> Self {
        RsyncOpts {
            xattrs: a.xattrs && b.xattrs,
            checksum: a.coarse_timestamps || b.coarse_timestamps,
        }
    }
}

/// Make `dst` hold exactly what `src` holds (`rsync --delete`).
pub(crate) fn rsync(src: &Path, dst: &Path, opts: RsyncOpts) -> Result<()> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "-aH".into(),
        "--numeric-ids".into(),
        "--delete".into(),
        "--sparse".into(),
        // Compare mtimes to the nanosecond: the default (whole seconds) misses a file rewritten
        // with the same size within the second it was copied.
        "--modify-window=-1".into(),
    ];
    if opts.xattrs {
        args.push("-XA".into());
    }
    if opts.checksum {
        args.push("--checksum".into());
    }
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    let mut d = dst.as_os_str().to_owned();
    d.push("/");
    args.push(s);
    args.push(d);
    match runner::run("rsync", &args) {
        Ok(_) => Ok(()),
        // 24: files vanished while copying a running source; what is left is consistent.
        Err(Error::Command { message, .. }) if message.contains("(code 24)") => Ok(()),
        Err(e) => Err(e),
    }
}

/// The snapshots of `src` (oldest first) that come after the last snapshot both sides share.
pub(crate) fn snapshots_after(src: &[String], common: &[String]) -> Vec<String> {
    match common.last().and_then(|l| src.iter().position(|s| s == l)) {
        Some(i) => src[i + 1..].to_vec(),
        None => src
            .iter()
            .filter(|s| !common.contains(s))
            .cloned()
            .collect(),
    }
}

/// Copy one view of the source (a snapshot or the volume) onto the target volume's files.
fn sync_from<S: Driver + ?Sized>(
    src_pool: &S,
    vt: VolumeType,
    src: &str,
    snapshot: Option<&str>,
    dst_path: &Path,
    opts: RsyncOpts,
) -> Result<()> {
    match snapshot {
        Some(s) => {
            let from = src_pool.mount_volume_snapshot(vt, src, s)?;
            let res = rsync(&from, dst_path, opts);
            let un = src_pool.unmount_volume_snapshot(vt, src, s);
            res.and(un)
        }
        None => {
            let from = src_pool.mount_volume(vt, src)?;
            rsync(&from, dst_path, opts)
        }
    }
}

/// Refresh `dst` on `dst_pool` from `src` on `src_pool` file by file (see `Driver::refresh_volume`).
/// Each snapshot added is complete before the next starts, so a refresh that fails half way
/// can simply be run again.
pub(crate) fn refresh_generic<S: Driver + ?Sized, D: Driver + ?Sized>(
    src_pool: &S,
    vt: VolumeType,
    src: &str,
    dst_pool: &D,
    dst: &str,
    common: &[String],
    with_snapshots: bool,
) -> Result<RefreshOutcome> {
    let opts = RsyncOpts::between(&src_pool.info(), &dst_pool.info());
    let src_snaps = src_pool.list_volume_snapshots(vt, src)?;
    if !src_pool.volume_exists(vt, src)? {
        return Err(Error::NotFound(format!("{} {src:?}", vt.label())));
    }
    let dst_path = dst_pool.mount_volume(vt, dst)?;
    let mut out = RefreshOutcome::default();
    for s in dst_pool.list_volume_snapshots(vt, dst)? {
        if !common.contains(&s) {
            dst_pool.delete_volume_snapshot(vt, dst, &s)?;
            out.removed.push(s);
        }
    }
    if with_snapshots {
        for s in snapshots_after(&src_snaps, common) {
            sync_from(src_pool, vt, src, Some(&s), &dst_path, opts)?;
            dst_pool.create_volume_snapshot(vt, dst, &s)?;
            out.added.push(s);
        }
    }
    sync_from(src_pool, vt, src, None, &dst_path, opts)?;
    Ok(out)
}

/// Copy a volume (or one of its snapshots, `src_snapshot`) of `src_pool` to a new volume `dst`
/// on another pool, with its snapshots when `with_snapshots`. On failure nothing is left on the
/// target pool. Returns the new volume's path.
pub fn copy_across(
    src_pool: &dyn Driver,
    vt: VolumeType,
    src: &str,
    src_snapshot: Option<&str>,
    dst_pool: &dyn Driver,
    dst: &str,
    with_snapshots: bool,
) -> Result<std::path::PathBuf> {
    if !src_pool.volume_exists(vt, src)? {
        return Err(Error::NotFound(format!("{} {src:?}", vt.label())));
    }
    let opts = RsyncOpts::between(&src_pool.info(), &dst_pool.info());
    let path = dst_pool.create_volume(vt, dst)?;
    let mut rev = Reverter::new();
    rev.add("delete partial copy", || dst_pool.delete_volume(vt, dst));
    if src_snapshot.is_none() && with_snapshots {
        for s in src_pool.list_volume_snapshots(vt, src)? {
            sync_from(src_pool, vt, src, Some(&s), &path, opts)?;
            dst_pool.create_volume_snapshot(vt, dst, &s)?;
        }
    }
    sync_from(src_pool, vt, src, src_snapshot, &path, opts)?;
    rev.success();
    Ok(path)
}

/// Refresh `dst` on `dst_pool` from `src` on another pool (see `Driver::refresh_volume`).
pub fn refresh_across(
    src_pool: &dyn Driver,
    vt: VolumeType,
    src: &str,
    dst_pool: &dyn Driver,
    dst: &str,
    common: &[String],
    with_snapshots: bool,
) -> Result<RefreshOutcome> {
    refresh_generic(src_pool, vt, src, dst_pool, dst, common, with_snapshots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: &[&str]) -> Vec<String> {
        x.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn snapshots_after_the_last_common() {
        assert_eq!(snapshots_after(&v(&["a", "b"]), &[]), v(&["a", "b"]));
        assert_eq!(
            snapshots_after(&v(&["a", "b", "c"]), &v(&["a"])),
            v(&["b", "c"])
        );
        assert!(snapshots_after(&v(&["a", "b"]), &v(&["a", "b"])).is_empty());
    }

    #[test]
    fn rsync_mirrors_a_tree() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        std::fs::create_dir_all(a.join("d")).unwrap();
        std::fs::write(a.join("d/f"), "1").unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("stale"), "x").unwrap();
        if rsync(&a, &b, RsyncOpts::default()).is_err() {
            eprintln!("rsync not installed: skipping");
            return;
        }
        assert_eq!(std::fs::read_to_string(b.join("d/f")).unwrap(), "1");
        assert!(!b.join("stale").exists());
    }
}
