//! Unpack a stored image into a directory (`<target>/{metadata.yaml,rootfs/,templates/}`),
//! keeping ownership, modes, xattrs, mtimes, symlinks, hardlinks and device nodes. Tarballs are
//! untrusted: nothing is ever written outside the target, and no entry goes through a symlink.

use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use tar::EntryType;

use super::compression::{Compression, detect_file, open_decompressed};
use super::{Error, IoContext, Result};

#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// chown entries to their uid/gid from the tarball (needs root; default: when root).
    pub preserve_ownership: bool,
    /// Apply xattrs (file capabilities, ACLs). Off for pools that cannot store them
    /// (zfs-fuse, `lxd_storage::Info::xattrs == false`), where setting one fails.
    pub xattrs: bool,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            preserve_ownership: nix::unistd::geteuid().is_root(),
            xattrs: true,
        }
    }
}

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> Error {
    Error::Unsafe {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

/// An entry path relative to the target: leading `/` and `.` dropped (as GNU tar does), `..`
/// refused.
fn sanitize(entry: &str, path: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err(unsafe_entry(entry, "path contains '..'")),
            Component::Prefix(_) => return Err(unsafe_entry(entry, "path has a prefix")),
        }
    }
    Ok(out)
}

/// Walk the parent directories of `rel` below `target`, creating missing ones (0755) when
/// `create`; a symlink or non-directory on the way is an error: an entry never goes through a
/// link, even one pointing inside the target.
fn check_parents(target: &Path, rel: &Path, entry: &str, create: bool) -> Result<()> {
    let mut cur = target.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(());
    };
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(unsafe_entry(entry, "a parent directory is a symlink"));
            }
            Ok(_) => return Err(unsafe_entry(entry, "a parent is not a directory")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                fs::create_dir(&cur).ctx("create directory", &cur)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(unsafe_entry(entry, "link target is not in the image"));
            }
            Err(e) => return Err(Error::io("stat", &cur, e)),
        }
    }
    Ok(())
}

/// Clear the way for a new entry at `dst`: an existing symlink or file is removed (never
/// followed); an existing directory stays if a directory is wanted, else must be empty.
fn prepare_dst(dst: &Path, want_dir: bool, entry: &str) -> Result<()> {
    match fs::symlink_metadata(dst) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("stat", dst, e)),
        Ok(m) if m.is_dir() => {
            if want_dir {
                Ok(())
            } else {
                fs::remove_dir(dst)
                    .map_err(|_| unsafe_entry(entry, "would replace a non-empty directory"))
            }
        }
        Ok(_) => fs::remove_file(dst).ctx("remove", dst),
    }
}

fn set_mtime(path: &Path, mtime: u64) -> Result<()> {
    let ts = TimeSpec::new(mtime as i64, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io("set mtime of", path, e.into()))
}

/// Unpack the tar stream `reader` into `target` (which must exist).
pub(crate) fn unpack_stream(reader: impl Read, target: &Path, opts: &UnpackOptions) -> Result<()> {
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(opts.preserve_ownership);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(opts.xattrs);
    ar.set_overwrite(true);
    let bad_tar = |e: std::io::Error| Error::Invalid(format!("Invalid tarball: {e}"));
    let mut dirs: Vec<(PathBuf, u64)> = Vec::new();
    for entry in ar.entries().map_err(bad_tar)? {
        let mut entry = entry.map_err(bad_tar)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = sanitize(&name, &entry.path().map_err(bad_tar)?)?;
        if rel.as_os_str().is_empty() {
            continue; // "./"
        }
        let dst = target.join(&rel);
        check_parents(target, &rel, &name, true)?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        match kind {
            EntryType::Directory => {
                prepare_dst(&dst, true, &name)?;
                entry
                    .unpack(&dst)
                    .map_err(|e| Error::io("unpack", &dst, e))?;
                dirs.push((dst, mtime));
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(bad_tar)?
                    .ok_or_else(|| unsafe_entry(&name, "hardlink without a target"))?;
                let src_rel = sanitize(&name, &link)?;
                if src_rel == rel {
                    continue; // a link to itself: nothing to do
                }
                if src_rel.as_os_str().is_empty() {
                    return Err(unsafe_entry(&name, "hardlink to the target directory"));
                }
                check_parents(target, &src_rel, &name, false)?;
                let src = target.join(&src_rel);
                match fs::symlink_metadata(&src) {
                    Ok(m) if !m.is_dir() => {}
                    Ok(_) => return Err(unsafe_entry(&name, "hardlink to a directory")),
                    Err(_) => {
                        return Err(unsafe_entry(&name, "hardlink target is not in the image"));
                    }
                }
                prepare_dst(&dst, false, &name)?;
                // link(2) does not follow a symlink source, so this links inside the target.
                fs::hard_link(&src, &dst).ctx("hardlink", &dst)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                prepare_dst(&dst, false, &name)?;
                let (sflag, dev) = match kind {
                    EntryType::Char | EntryType::Block => {
                        let major = header.device_major().ok().flatten().unwrap_or(0);
                        let minor = header.device_minor().ok().flatten().unwrap_or(0);
                        let f = if kind == EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (f, makedev(major.into(), minor.into()))
                    }
                    _ => (SFlag::S_IFIFO, 0),
                };
                if let Err(e) = mknod(&dst, sflag, Mode::from_bits_truncate(mode), dev) {
                    if nix::unistd::geteuid().is_root() {
                        return Err(Error::io("create device node", &dst, e.into()));
                    }
                    tracing::warn!("skipping device node {name}: {e}");
                    continue;
                }
                if opts.preserve_ownership {
                    std::os::unix::fs::lchown(&dst, Some(uid as u32), Some(gid as u32))
                        .ctx("chown", &dst)?;
                }
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).ctx("chmod", &dst)?;
                set_mtime(&dst, mtime)?;
            }
            _ => {
                // Regular files, symlinks, sparse and unknown types (written as regular files,
                // as POSIX asks). `prepare_dst` removed whatever was there, so tar's O_EXCL
                // create or symlink(2) never follows an existing link.
                prepare_dst(&dst, false, &name)?;
                entry
                    .unpack(&dst)
                    .map_err(|e| Error::io("unpack", &dst, e))?;
            }
        }
    }
    // Creating children changed the directories' mtimes: restore them last, deepest first.
    dirs.sort_by(|a, b| b.0.cmp(&a.0));
    for (d, mtime) in dirs {
        set_mtime(&d, mtime)?;
    }
    Ok(())
}

/// Unpack a (compressed) tarball into `target`, creating it if needed.
pub fn unpack_tarball(tarball: &Path, target: &Path, opts: &UnpackOptions) -> Result<()> {
    let (_, reader) = open_decompressed(tarball)?;
    fs::create_dir_all(target).ctx("create directory", target)?;
    unpack_stream(reader, target, opts)
}

/// A real directory at `path` (created if missing); a symlink there is refused.
fn ensure_real_dir(path: &Path, entry: &str) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(unsafe_entry(entry, "is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir(path).ctx("create directory", path)
        }
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// Unpack image `fp` from the image store into `target`, which ends up holding `metadata.yaml`,
/// `rootfs/` and `templates/`. A split image's squashfs rootfs goes through `unsquashfs`.
pub fn unpack_image(images_dir: &Path, fp: &str, target: &Path) -> Result<()> {
    unpack_image_with(images_dir, fp, target, &UnpackOptions::default())
}

/// `unpack_image` with explicit options (e.g. no xattrs on zfs-fuse).
pub fn unpack_image_with(
    images_dir: &Path,
    fp: &str,
    target: &Path,
    opts: &UnpackOptions,
) -> Result<()> {
    super::store::check_fingerprint(fp)?;
    let meta = images_dir.join(fp);
    let rootfs_file = images_dir.join(format!("{fp}.rootfs"));
    if !meta.is_file() {
        return Err(Error::NotFound(fp.to_string()));
    }
    unpack_tarball(&meta, target, opts)?;
    let rootfs = target.join("rootfs");
    if rootfs_file.is_file() {
        ensure_real_dir(&rootfs, "rootfs")?;
        match detect_file(&rootfs_file)? {
            Compression::Squashfs => {
                let mut cmd = std::process::Command::new("unsquashfs");
                cmd.args(["-f", "-n"]);
                if !opts.xattrs {
                    cmd.arg("-no-xattrs");
                }
                let out = cmd
                    .arg("-d")
                    .arg(&rootfs)
                    .arg(&rootfs_file)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .ctx("run unsquashfs on", &rootfs_file)?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    return Err(Error::Command {
                        command: format!("unsquashfs {}", rootfs_file.display()),
                        message: err
                            .lines()
                            .rfind(|l| !l.trim().is_empty())
                            .unwrap_or("failed")
                            .trim()
                            .to_string(),
                    });
                }
            }
            _ => unpack_tarball(&rootfs_file, &rootfs, opts)?,
        }
    }
    ensure_real_dir(&rootfs, "rootfs")
        .map_err(|_| Error::Invalid(format!("Image {fp} has no rootfs")))?;
    match fs::symlink_metadata(target.join("metadata.yaml")) {
        Ok(m) if m.is_file() => {}
        _ => return Err(Error::Invalid(format!("Image {fp} has no metadata.yaml"))),
    }
    ensure_real_dir(&target.join("templates"), "templates")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::testutil::*;
    use std::os::unix::fs::MetadataExt;

    fn unpack_bytes(tar: &[u8]) -> (tempfile::TempDir, Result<()>) {
        let outer = tempfile::tempdir().unwrap();
        let target = outer.path().join("target");
        fs::create_dir(&target).unwrap();
        let r = unpack_stream(tar, &target, &UnpackOptions::default());
        (outer, r)
    }

    /// Files that exist in `outer` but outside `outer/target` (other than what the test made).
    fn outside(outer: &Path) -> Vec<String> {
        fs::read_dir(outer)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "target" && n != "victim")
            .collect()
    }

    #[test]
    fn unpacks_a_valid_image() {
        let (outer, r) = unpack_bytes(&simple_image_tar());
        r.unwrap();
        let t = outer.path().join("target");
        assert_eq!(
            fs::read_to_string(t.join("rootfs/etc/hostname")).unwrap(),
            "image\n"
        );
        assert_eq!(
            fs::read_link(t.join("rootfs/etc/mtab")).unwrap(),
            Path::new("/proc/self/mounts")
        );
        let a = fs::metadata(t.join("rootfs/etc/hostname")).unwrap();
        let b = fs::metadata(t.join("rootfs/etc/hostname2")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            fs::metadata(t.join("rootfs/tmp")).unwrap().mode() & 0o7777,
            0o1777
        );
        assert_eq!(
            fs::metadata(t.join("rootfs/etc")).unwrap().mtime(),
            1_600_000_000
        );
        assert_eq!(a.mtime(), 1_600_000_000);
        let shadow = fs::metadata(t.join("rootfs/etc/shadow")).unwrap();
        assert_eq!(shadow.mode() & 0o777, 0o640);
        if is_root() {
            assert_eq!(shadow.gid(), 42);
        }
    }

    #[test]
    fn rejects_dotdot() {
        let tar = RawTar::new().file("rootfs/../../escape", b"x").finish();
        let (outer, r) = unpack_bytes(&tar);
        assert!(matches!(r, Err(Error::Unsafe { .. })), "{r:?}");
        assert!(outside(outer.path()).is_empty());
        assert!(!outer.path().parent().unwrap().join("escape").exists());
    }

    #[test]
    fn absolute_paths_land_inside() {
        let name = format!("/tmp/lxd-abs-escape-{}", std::process::id());
        let tar = RawTar::new().file(&name, b"x").finish();
        let (outer, r) = unpack_bytes(&tar);
        r.unwrap();
        assert!(!Path::new(&name).exists());
        assert!(
            outer
                .path()
                .join("target")
                .join(name.trim_start_matches('/'))
                .exists()
        );
    }

    #[test]
    fn rejects_writing_through_a_symlinked_parent() {
        let outer = tempfile::tempdir().unwrap();
        let victim = outer.path().join("victim");
        fs::create_dir(&victim).unwrap();
        let tar = RawTar::new()
            .symlink("rootfs", victim.to_str().unwrap())
            .file("rootfs/owned", b"x")
            .finish();
        let target = outer.path().join("target");
        fs::create_dir(&target).unwrap();
        let r = unpack_stream(&tar[..], &target, &UnpackOptions::default());
        assert!(matches!(r, Err(Error::Unsafe { .. })), "{r:?}");
        assert!(!victim.join("owned").exists());
        // Relative links that climb out are refused the same way.
        let tar = RawTar::new()
            .dir("a/", 0o755)
            .symlink("a/up", "../../victim")
            .file("a/up/owned2", b"x")
            .finish();
        let r = unpack_stream(&tar[..], &target, &UnpackOptions::default());
        assert!(matches!(r, Err(Error::Unsafe { .. })), "{r:?}");
        assert!(!victim.join("owned2").exists());
    }

    #[test]
    fn file_over_escaping_symlink_replaces_the_link() {
        let outer = tempfile::tempdir().unwrap();
        let victim = outer.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let tar = RawTar::new()
            .symlink("f", victim.to_str().unwrap())
            .file("f", b"overwritten")
            .symlink("d", outer.path().to_str().unwrap())
            .dir("d/", 0o777)
            .finish();
        let target = outer.path().join("target");
        fs::create_dir(&target).unwrap();
        unpack_stream(&tar[..], &target, &UnpackOptions::default()).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "overwritten");
        assert!(fs::symlink_metadata(target.join("d")).unwrap().is_dir());
        assert_ne!(fs::metadata(outer.path()).unwrap().mode() & 0o777, 0o777);
    }

    #[test]
    fn rejects_hardlinks_out_of_the_target() {
        let outer = tempfile::tempdir().unwrap();
        let victim = outer.path().join("victim");
        fs::write(&victim, "secret").unwrap();
        let target = outer.path().join("target");
        fs::create_dir(&target).unwrap();
        for tar in [
            RawTar::new().hardlink("h", "../victim").finish(),
            RawTar::new()
                .hardlink("h", victim.to_str().unwrap())
                .finish(),
            RawTar::new()
                .symlink("s", outer.path().to_str().unwrap())
                .hardlink("h", "s/victim")
                .finish(),
        ] {
            let r = unpack_stream(&tar[..], &target, &UnpackOptions::default());
            assert!(matches!(r, Err(Error::Unsafe { .. })), "{r:?}");
            if let Ok(m) = fs::symlink_metadata(target.join("h")) {
                assert_ne!(m.ino(), fs::metadata(&victim).unwrap().ino());
            }
        }
        assert_eq!(fs::metadata(&victim).unwrap().nlink(), 1);
        // A hardlink to a symlink links the symlink itself, never its target.
        let tar = RawTar::new()
            .symlink("s", victim.to_str().unwrap())
            .hardlink("h", "s")
            .finish();
        unpack_stream(&tar[..], &target, &UnpackOptions::default()).unwrap();
        assert!(
            fs::symlink_metadata(target.join("h"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::metadata(&victim).unwrap().nlink(), 1);
    }

    #[test]
    fn device_nodes_stay_inside() {
        let tar = RawTar::new()
            .dir("rootfs/dev/", 0o755)
            .chardev("rootfs/dev/null", 1, 3)
            .fifo("rootfs/run-fifo")
            .chardev("../outside-null", 1, 3)
            .finish();
        let (outer, r) = unpack_bytes(&tar);
        assert!(matches!(r, Err(Error::Unsafe { .. })), "{r:?}");
        assert!(outside(outer.path()).is_empty());
        let t = outer.path().join("target/rootfs");
        if is_root() {
            let m = fs::symlink_metadata(t.join("dev/null")).unwrap();
            assert_eq!(m.rdev(), makedev(1, 3));
            assert!(fs::symlink_metadata(t.join("run-fifo")).is_ok());
        }
    }

    #[test]
    fn xattrs_applied_unless_disabled() {
        if std::process::Command::new("getfattr")
            .arg("--version")
            .output()
            .is_err()
        {
            skip("xattrs_applied_unless_disabled: getfattr is not installed");
            return;
        }
        let tar = RawTar::new()
            .pax_xattr("user.lxd", "yes")
            .file("f", b"x")
            .finish();
        let read = |t: &Path| {
            std::process::Command::new("getfattr")
                .args(["--only-values", "-n", "user.lxd"])
                .arg(t.join("f"))
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        for (xattrs, want) in [(true, "yes"), (false, "")] {
            let d = tempfile::tempdir().unwrap();
            let opts = UnpackOptions {
                xattrs,
                ..UnpackOptions::default()
            };
            unpack_stream(&tar[..], d.path(), &opts).unwrap();
            assert_eq!(fs::read_to_string(d.path().join("f")).unwrap(), "x");
            assert_eq!(read(d.path()), want, "xattrs={xattrs}");
        }
    }

    #[test]
    fn garbage_is_an_invalid_tarball() {
        let (_o, r) = unpack_bytes(&[0x55u8; 2048]);
        assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    }

    #[test]
    fn unpack_image_unified_and_split() {
        let store = tempfile::tempdir().unwrap();
        let tar = simple_image_tar();
        fs::write(store.path().join("abcd"), compress(&tar, Compression::Xz)).unwrap();
        let out = store.path().join("u");
        unpack_image(store.path(), "abcd", &out).unwrap();
        assert!(out.join("rootfs/etc/hostname").is_file());
        assert!(out.join("templates/hostname.tpl").is_file());
        assert!(matches!(
            unpack_image(store.path(), "ffff", &out),
            Err(Error::NotFound(_))
        ));
        assert!(unpack_image(store.path(), "../x", &out).is_err());

        // Split: metadata tarball + rootfs tarball.
        let meta = RawTar::new()
            .file("metadata.yaml", METADATA.as_bytes())
            .finish();
        let rootfs = RawTar::new()
            .dir("etc/", 0o755)
            .file("etc/os", b"split\n")
            .finish();
        fs::write(
            store.path().join("beef"),
            compress(&meta, Compression::Gzip),
        )
        .unwrap();
        fs::write(
            store.path().join("beef.rootfs"),
            compress(&rootfs, Compression::Zstd),
        )
        .unwrap();
        let out = store.path().join("s");
        unpack_image(store.path(), "beef", &out).unwrap();
        assert_eq!(
            fs::read_to_string(out.join("rootfs/etc/os")).unwrap(),
            "split\n"
        );
        assert!(out.join("templates").is_dir());

        // Split whose metadata tarball plants a rootfs symlink: refused.
        let evil = RawTar::new()
            .file("metadata.yaml", METADATA.as_bytes())
            .symlink("rootfs", "/tmp")
            .finish();
        fs::write(store.path().join("dead"), &evil).unwrap();
        fs::write(store.path().join("dead.rootfs"), &rootfs).unwrap();
        let r = unpack_image(store.path(), "dead", &store.path().join("e"));
        assert!(matches!(r, Err(Error::Unsafe { .. })), "{r:?}");
    }

    #[test]
    fn unpack_image_squashfs_rootfs() {
        if std::process::Command::new("mksquashfs")
            .arg("-version")
            .output()
            .is_err()
        {
            skip("unpack_image_squashfs_rootfs: mksquashfs is not installed");
            return;
        }
        let store = tempfile::tempdir().unwrap();
        let src = store.path().join("src");
        fs::create_dir_all(src.join("etc")).unwrap();
        fs::write(src.join("etc/os"), "squash\n").unwrap();
        let sq = store.path().join("cafe.rootfs");
        let st = std::process::Command::new("mksquashfs")
            .arg(&src)
            .arg(&sq)
            .args(["-noappend", "-quiet"])
            .status()
            .unwrap();
        assert!(st.success());
        let meta = RawTar::new()
            .file("metadata.yaml", METADATA.as_bytes())
            .finish();
        fs::write(store.path().join("cafe"), &meta).unwrap();
        let out = store.path().join("o");
        unpack_image(store.path(), "cafe", &out).unwrap();
        assert_eq!(
            fs::read_to_string(out.join("rootfs/etc/os")).unwrap(),
            "squash\n"
        );
    }
}
