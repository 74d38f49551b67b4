//! Filesystem helpers shared by the drivers: names, directories with LXD's modes, tree copy and
//! removal, mount table look-ups, usage walks. Nothing here knows which driver calls it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::IoContext;
use crate::{Error, Result, runner};

/// Instance, snapshot and pool names become path components and CLI arguments: refuse anything
/// that could climb out of a directory, look like an option, or break a zfs dataset name.
pub(crate) fn check_name(kind: &str, name: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Invalid(format!(
            "Invalid {kind} name {name:?}: {why}"
        )))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > 200 {
        return bad("too long");
    }
    if name.starts_with('.') || name.starts_with('-') {
        return bad("must not start with '.' or '-'");
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '@' | '#' | '%' | '\\') || c.is_control() || c.is_whitespace())
    {
        return bad(&format!("character {c:?} is not allowed"));
    }
    Ok(())
}

/// An image fingerprint: lowercase hex (sha256 is 64 characters; shorter ones appear in tests).
pub(crate) fn check_fingerprint(fp: &str) -> Result<()> {
    if fp.is_empty() || fp.len() > 64 || !fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Error::Invalid(format!("Invalid image fingerprint {fp:?}")));
    }
    Ok(())
}

/// A suffix unique within this host for temporary names.
pub(crate) fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{t:x}", std::process::id())
}

/// Create `path` (not its parents) if missing and set its mode.
pub(crate) fn mkdir_mode(path: &Path, mode: u32) -> Result<()> {
    match fs::create_dir(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("create directory", path, e)),
    }
    set_mode(path, mode)
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).ctx("set mode of", path)
}

pub(crate) fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

pub(crate) fn is_dir_empty(path: &Path) -> Result<bool> {
    Ok(fs::read_dir(path)
        .ctx("read directory", path)?
        .next()
        .is_none())
}

/// Copy a tree keeping ownership, modes, xattrs, ACLs, hardlinks, device nodes, symlinks and
/// mtimes; reflinks where the filesystem can (btrfs, xfs). `dst` must not exist.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    if exists(dst) {
        return Err(Error::AlreadyExists(dst.display().to_string()));
    }
    crate::copytree::copy_tree(src, dst)
}

/// Remove a tree if it exists.
pub(crate) fn remove_tree(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat", path, e)),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).ctx("remove", path),
        Ok(_) => fs::remove_file(path).ctx("remove", path),
    }
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    if exists(to) {
        return Err(Error::AlreadyExists(to.display().to_string()));
    }
    fs::rename(from, to).map_err(|e| Error::io("rename", from, e))
}

/// Undo `\040`-style escapes of /proc/self/mountinfo.
fn unescape_mount_path(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points of this mount namespace, from /proc/self/mountinfo.
pub(crate) fn mount_points() -> Result<Vec<PathBuf>> {
    let p = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(p).ctx("read", p)?;
    Ok(text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mount_path(m)))
        .collect())
}

pub(crate) fn is_mountpoint(path: &Path) -> Result<bool> {
    let path = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io("resolve", path, e)),
    };
    Ok(mount_points()?.contains(&path))
}

/// Unmount `path` if it is a mount point (all stacked mounts there). Returns whether it was.
pub(crate) fn unmount_all(path: &Path) -> Result<bool> {
    let mut did = false;
    while is_mountpoint(path)? {
        // A process that is briefly inside the mount (a concurrent copy, a helper being forked)
        // makes it busy: retry, then detach it lazily rather than leave the pool half-removed.
        let mut res = runner::run("umount", [path]);
        for _ in 0..20 {
            match &res {
                Err(crate::Error::Command { message, .. }) if message.contains("busy") => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    res = runner::run("umount", [path]);
                }
                _ => break,
            }
        }
        if let Err(e) = &res {
            tracing::warn!("{} stays busy ({e}); detaching it lazily", path.display());
            let p = path.as_os_str();
            runner::run("umount", [std::ffi::OsStr::new("-l"), p])?;
        }
        did = true;
    }
    Ok(did)
}

/// A block device given as a pool source must be free: not mounted, not holding a filesystem
/// or a zpool already (mkfs and zpool create would refuse with a less helpful message, or worse
/// succeed with `-f`).
pub(crate) fn check_free_block_device(dev: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(dev).map_err(|e| Error::io("stat", dev, e))?;
    let rdev = meta.rdev();
    let wanted = format!(
        "{}:{}",
        nix::sys::stat::major(rdev),
        nix::sys::stat::minor(rdev)
    );
    let info = Path::new("/proc/self/mountinfo");
    let text = fs::read_to_string(info).ctx("read", info)?;
    if let Some(mp) = text
        .lines()
        .find(|l| l.split(' ').nth(2) == Some(wanted.as_str()))
        .and_then(|l| l.split(' ').nth(4))
    {
        return Err(Error::Busy(format!(
            "Device {} is in use (mounted at {})",
            dev.display(),
            unescape_mount_path(mp)
        )));
    }
    if let Ok(kind) = runner::run(
        "blkid",
        ["-o", "value", "-s", "TYPE"]
            .iter()
            .map(std::ffi::OsStr::new)
            .chain([dev.as_os_str()]),
    ) && !kind.trim().is_empty()
    {
        return Err(Error::Invalid(format!(
            "Device {} already holds a {} filesystem; wipe it first",
            dev.display(),
            kind.trim()
        )));
    }
    Ok(())
}

/// The filesystem type (statfs f_type) of `path` or of its nearest existing ancestor.
pub(crate) fn fs_magic(path: &Path) -> Option<i64> {
    let mut p = Some(path);
    while let Some(cur) = p {
        if let Ok(st) = nix::sys::statfs::statfs(cur) {
            #[allow(clippy::unnecessary_cast)]
            return Some(st.filesystem_type().0 as i64);
        }
        p = cur.parent();
    }
    None
}

pub(crate) const EXT4_MAGIC: i64 = 0xEF53;
pub(crate) const BTRFS_MAGIC: i64 = 0x9123_683E;
pub(crate) const TMPFS_MAGIC: i64 = 0x0102_1994;
pub(crate) const XFS_MAGIC: i64 = 0x5846_5342;

/// Filesystems on which this kernel takes `mount_setattr(MOUNT_ATTR_IDMAP)` (reference/machine.md 3b).
pub(crate) fn supports_idmapped_mounts(path: &Path) -> bool {
    matches!(
        fs_magic(path),
        Some(EXT4_MAGIC | BTRFS_MAGIC | TMPFS_MAGIC | XFS_MAGIC)
    )
}

/// `FS_TOPDIR_FL` (`chattr +T`): the directory is the top of separate hierarchies.
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Mark `dir` as the top of directory hierarchies (`chattr +T`), so that ext4's Orlov allocator
/// puts each new tree below it (an instance, a snapshot) in a block group of its own. Without
/// it a new tree lands in the groups its parent used, and on an ext4 without a journal each new
/// inode is then searched past every inode freed there in the last minutes ("recently deleted"):
/// a 7.7k-file Debian copy right after a delete took 2-3 s instead of 0.2 s. A hint only:
/// filesystems that do not know the flag are left as they are.
pub(crate) fn mark_top_dir(dir: &Path) {
    use std::os::fd::AsRawFd;
    let Ok(f) = fs::File::open(dir) else {
        return;
    };
    let mut flags: libc::c_int = 0;
    // SAFETY: both ioctls take a pointer to an int, valid for the duration of the call.
    unsafe {
        if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) != 0
            || flags & FS_TOPDIR_FL != 0
        {
            return;
        }
        flags |= FS_TOPDIR_FL;
        if libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) != 0 {
            tracing::debug!(
                "chattr +T {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
    }
}

/// (used, total) bytes of the filesystem holding `path`.
pub(crate) fn fs_usage(path: &Path) -> Result<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(path)
        .map_err(|e| Error::io("statvfs", path, std::io::Error::from(e)))?;
    let frsize = st.fragment_size() as u64;
    let total = st.blocks() as u64 * frsize;
    let free = st.blocks_free() as u64 * frsize;
    Ok((total.saturating_sub(free), total))
}

/// Entries of a directory that are not dot-files, sorted by birth time, then name.
pub(crate) fn list_dir_by_age(path: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", path, e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.ctx("read directory", path)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let born = entry.metadata().ok().and_then(|m| m.created().ok());
        out.push((born, name));
    }
    out.sort();
    Ok(out.into_iter().map(|(_, n)| n).collect())
}

/// After a filler ran: the image volume must hold `rootfs/` and `metadata.yaml`; an image without
/// templates gets an empty `templates/` so every instance volume looks the same.
pub(crate) fn check_image_tree(dir: &Path, fp: &str) -> Result<()> {
    let bad = |what: &str| Error::Filler {
        fingerprint: fp.to_string(),
        message: format!("the unpacked image has no {what}"),
    };
    let rootfs = dir.join("rootfs");
    if !fs::symlink_metadata(&rootfs)
        .map(|m| m.is_dir())
        .unwrap_or(false)
    {
        return Err(bad("rootfs/ directory"));
    }
    if !fs::symlink_metadata(dir.join("metadata.yaml"))
        .map(|m| m.is_file())
        .unwrap_or(false)
    {
        return Err(bad("metadata.yaml"));
    }
    let templates = dir.join("templates");
    if !exists(&templates) {
        mkdir_mode(&templates, 0o755)?;
    }
    Ok(())
}

/// Run the caller's filler, turning its error into ours.
pub(crate) fn run_filler(filler: crate::Filler<'_>, dir: &Path, fp: &str) -> Result<()> {
    filler(dir).map_err(|e| Error::Filler {
        fingerprint: fp.to_string(),
        message: e.to_string(),
    })?;
    check_image_tree(dir, fp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn names() {
        for ok in ["c1", "C01", "default_c1", "snap0", "a.b", "x:y"] {
            check_name("instance", ok).unwrap();
        }
        for bad in [
            "", ".", "..", "../x", "a/b", "-rf", ".hidden", "a@b", "a b", "a\nb",
        ] {
            assert!(check_name("instance", bad).is_err(), "{bad:?}");
        }
        check_fingerprint("abc123").unwrap();
        for bad in ["", "ABC", "../x", "g1"] {
            assert!(check_fingerprint(bad).is_err());
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount_path(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount_path(r"/a\\b"), r"/a\\b");
        assert!(is_mountpoint(Path::new("/")).unwrap());
    }

    #[test]
    fn usage_and_copy() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a");
        fs::create_dir(&a).unwrap();
        fs::write(a.join("f"), vec![1u8; 100_000]).unwrap();
        fs::hard_link(a.join("f"), a.join("g")).unwrap();
        std::os::unix::fs::symlink("f", a.join("l")).unwrap();
        copy_tree(&a, &t.path().join("b")).unwrap();
        let b = t.path().join("b");
        assert_eq!(fs::metadata(b.join("g")).unwrap().nlink(), 2);
        assert_eq!(fs::read_link(b.join("l")).unwrap(), Path::new("f"));
        assert!(matches!(copy_tree(&a, &b), Err(Error::AlreadyExists(_))));
        remove_tree(&b).unwrap();
        remove_tree(&b).unwrap();
        assert!(!exists(&b));
        let (used, total) = fs_usage(t.path()).unwrap();
        assert!(used <= total && total > 0);
    }
}
