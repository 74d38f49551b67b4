//! Copying a volume tree the way `cp -a` does (ownership, modes incl. setuid, xattrs and ACLs,
//! hardlinks, symlinks, device nodes, FIFOs, mtimes), but creating entries on several threads.
//! On ext4 each new inode costs a fixed amount of kernel time, so an image of a few hundred files
//! copied in parallel launches an instance in half the time. Data goes through
//! copy_file_range, which reflinks where the filesystem can (btrfs, xfs).

use std::collections::HashMap;
use std::fs::{self, File};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Special,
}

#[derive(Debug)]
struct Entry {
    rel: PathBuf,
    kind: Kind,
    meta: fs::Metadata,
}

fn kind_of(m: &fs::Metadata) -> Kind {
    let t = m.file_type();
    if t.is_dir() {
        Kind::Dir
    } else if t.is_symlink() {
        Kind::Symlink
    } else if t.is_file() {
        Kind::File
    } else {
        Kind::Special
    }
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<Entry>) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = fs::read_dir(&dir)
        .map_err(|e| Error::io("read directory", &dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("read directory", &dir, e))?;
    names.sort();
    for name in names {
        let r = rel.join(&name);
        let p = root.join(&r);
        let meta = fs::symlink_metadata(&p).map_err(|e| Error::io("stat", &p, e))?;
        let kind = kind_of(&meta);
        out.push(Entry {
            rel: r.clone(),
            kind,
            meta,
        });
        if kind == Kind::Dir {
            walk(root, &r, out)?;
        }
    }
    Ok(())
}

fn errno(op: &'static str, path: &Path, e: nix::Error) -> Error {
    Error::io(op, path, std::io::Error::from(e))
}

/// Copy the extended attributes of `src` to `dst` (neither followed if a symlink). Filesystems
/// without xattr support (zfs-fuse) are not an error: there is nothing to keep there.
fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    let names = match xattr::list(src) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(Error::io("list xattrs of", src, e)),
    };
    for name in names {
        let Some(value) = xattr::get(src, &name).map_err(|e| Error::io("read xattr of", src, e))?
        else {
            continue;
        };
        match xattr::set(dst, &name, &value) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
            Err(e) => return Err(Error::io("set xattr on", dst, e)),
        }
    }
    Ok(())
}

/// Ownership, xattrs, mode (after chown, which clears setuid/setgid) and times. Every metadata
/// change dirties the inode again, so what a fresh entry already has is not rewritten: new
/// entries belong to us (root) and files are created with their final permission bits.
fn copy_metadata(
    src: &Path,
    dst: &Path,
    m: &fs::Metadata,
    kind: Kind,
    created_mode: Option<u32>,
) -> Result<()> {
    let owner_differs = (m.uid(), m.gid()) != *OUR_IDS;
    if owner_differs {
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            dst,
            Some(Uid::from_raw(m.uid())),
            Some(Gid::from_raw(m.gid())),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| errno("chown", dst, e))?;
    }
    copy_xattrs(src, dst)?;
    let want = m.mode() & 0o7777;
    // chown clears setuid/setgid; a umask may have trimmed the creation mode.
    let needs_chmod = created_mode != Some(want) || (owner_differs && want & 0o6000 != 0);
    if kind != Kind::Symlink && needs_chmod {
        fs::set_permissions(dst, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| Error::io("chmod", dst, e))?;
    }
    let at = TimeSpec::new(m.atime(), m.atime_nsec());
    let mt = TimeSpec::new(m.mtime(), m.mtime_nsec());
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &at,
        &mt,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| errno("set times on", dst, e))
}

/// Our (uid, gid): what a newly created entry is owned by.
static OUR_IDS: std::sync::LazyLock<(u32, u32)> = std::sync::LazyLock::new(|| {
    (
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
});

/// The process umask (read from /proc, since umask(2) can only be read by changing it).
static UMASK: std::sync::LazyLock<u32> = std::sync::LazyLock::new(|| {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
});

/// Creates the file with its permission bits (minus umask); returns the mode it got.
fn copy_file_data(src: &Path, dst: &Path, len: u64, mode: u32) -> Result<u32> {
    let from = File::open(src).map_err(|e| Error::io("open", src, e))?;
    // Setuid/setgid and sticky bits are set after the owner, never at creation.
    let create_mode = mode & 0o777;
    let mut to = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_compat(create_mode)
        .open(dst)
        .map_err(|e| Error::io("create", dst, e))?;
    let created = create_mode & !*UMASK;
    let mut left = len;
    while left > 0 {
        let chunk = usize::try_from(left.min(1 << 30)).unwrap_or(1 << 30);
        match nix::fcntl::copy_file_range(&from, None, &to, None, chunk) {
            Ok(0) => break,
            Ok(n) => left -= n as u64,
            Err(
                nix::errno::Errno::EXDEV
                | nix::errno::Errno::EINVAL
                | nix::errno::Errno::ENOSYS
                | nix::errno::Errno::EOPNOTSUPP,
            ) => {
                // Not supported between these files: plain copy of the rest.
                let mut from = from;
                std::io::Seek::seek(&mut from, std::io::SeekFrom::Start(len - left))
                    .map_err(|e| Error::io("read", src, e))?;
                std::io::copy(&mut from, &mut to).map_err(|e| Error::io("copy to", dst, e))?;
                return Ok(created);
            }
            Err(e) => return Err(errno("copy to", dst, e)),
        }
    }
    Ok(created)
}

trait ModeCompat {
    fn mode_compat(&mut self, mode: u32) -> &mut Self;
}

impl ModeCompat for fs::OpenOptions {
    fn mode_compat(&mut self, mode: u32) -> &mut Self {
        std::os::unix::fs::OpenOptionsExt::mode(self, mode)
    }
}

fn create_entry(src_root: &Path, dst_root: &Path, e: &Entry) -> Result<()> {
    let src = src_root.join(&e.rel);
    let dst = dst_root.join(&e.rel);
    let mut created = None;
    match e.kind {
        Kind::File => created = Some(copy_file_data(&src, &dst, e.meta.len(), e.meta.mode())?),
        Kind::Symlink => {
            let target = fs::read_link(&src).map_err(|err| Error::io("read link", &src, err))?;
            std::os::unix::fs::symlink(&target, &dst)
                .map_err(|err| Error::io("create symlink", &dst, err))?;
        }
        Kind::Special => {
            let kind = SFlag::from_bits_truncate(e.meta.mode() & libc::S_IFMT);
            nix::sys::stat::mknod(
                &dst,
                kind,
                Mode::from_bits_truncate(e.meta.mode() & 0o7777),
                e.meta.rdev(),
            )
            .map_err(|err| errno("create node", &dst, err))?;
        }
        Kind::Dir => return Ok(()),
    }
    copy_metadata(&src, &dst, &e.meta, e.kind, created)
}

/// Create the entries of `work` under `dst`, on several threads.
fn create_all(src: &Path, dst: &Path, work: &[&Entry]) -> Result<()> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 4);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<()> {
                    for e in work.iter().skip(t).step_by(threads) {
                        create_entry(src, dst, e)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("copy thread panicked".into())))
            })
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(())
}

/// Make `dst` (an existing tree) hold exactly what `src` holds, touching only what differs, as
/// `rsync -a --delete` does: an entry of the same kind whose size and mtime (files), target
/// (symlinks) or device (nodes) match is kept, with its ownership and mode corrected; anything
/// else is replaced, and what `src` lacks is removed. Directory metadata is applied last.
pub(crate) fn sync_tree(src: &Path, dst: &Path) -> Result<()> {
    let root_meta = fs::symlink_metadata(src).map_err(|e| Error::io("stat", src, e))?;
    if !root_meta.is_dir() || !fs::symlink_metadata(dst).is_ok_and(|m| m.is_dir()) {
        return Err(Error::Invalid(format!(
            "{} and {} must be directories",
            src.display(),
            dst.display()
        )));
    }
    let (mut want, mut have) = (Vec::new(), Vec::new());
    walk(src, Path::new(""), &mut want)?;
    walk(dst, Path::new(""), &mut have)?;
    let wanted: HashMap<&Path, &Entry> = want.iter().map(|e| (e.rel.as_path(), e)).collect();
    let same = |a: &Entry, b: &Entry| -> bool {
        if a.kind != b.kind {
            return false;
        }
        match a.kind {
            Kind::Dir => true,
            Kind::File => {
                a.meta.len() == b.meta.len()
                    && (a.meta.mtime(), a.meta.mtime_nsec())
                        == (b.meta.mtime(), b.meta.mtime_nsec())
            }
            Kind::Symlink => {
                fs::read_link(src.join(&a.rel)).ok() == fs::read_link(dst.join(&b.rel)).ok()
            }
            Kind::Special => {
                a.meta.rdev() == b.meta.rdev()
                    && a.meta.mode() & libc::S_IFMT == b.meta.mode() & libc::S_IFMT
            }
        }
    };
    // What goes: entries src lacks or holds differently (whole subtrees for directories).
    let mut kept: std::collections::HashSet<&Path> = std::collections::HashSet::new();
    let mut removed: Vec<&Path> = Vec::new();
    for e in &have {
        if removed.iter().any(|r| e.rel.starts_with(r)) {
            continue;
        }
        match wanted.get(e.rel.as_path()) {
            Some(w) if same(w, e) => {
                kept.insert(e.rel.as_path());
            }
            _ => {
                let p = dst.join(&e.rel);
                if e.kind == Kind::Dir {
                    fs::remove_dir_all(&p).map_err(|err| Error::io("remove", &p, err))?;
                } else {
                    fs::remove_file(&p).map_err(|err| Error::io("remove", &p, err))?;
                }
                if e.kind == Kind::Dir {
                    removed.push(e.rel.as_path());
                }
            }
        }
    }
    // What comes: new directories, then new entries in parallel, then hardlinks.
    for e in want.iter().filter(|e| e.kind == Kind::Dir) {
        if !kept.contains(e.rel.as_path()) {
            let p = dst.join(&e.rel);
            fs::create_dir(&p).map_err(|err| Error::io("create", &p, err))?;
        }
    }
    let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut work: Vec<&Entry> = Vec::new();
    for e in want.iter().filter(|e| e.kind != Kind::Dir) {
        let is_kept = kept.contains(e.rel.as_path());
        if e.meta.nlink() > 1 {
            let key = (e.meta.dev(), e.meta.ino());
            if let Some(f) = first.get(&key) {
                if !is_kept {
                    links.push((f.clone(), e.rel.clone()));
                }
                continue;
            }
            first.insert(key, e.rel.clone());
        }
        if is_kept {
            let d = dst.join(&e.rel);
            let m = fs::symlink_metadata(&d).map_err(|err| Error::io("stat", &d, err))?;
            if (m.mode(), m.uid(), m.gid()) != (e.meta.mode(), e.meta.uid(), e.meta.gid()) {
                copy_metadata(&src.join(&e.rel), &d, &e.meta, e.kind, None)?;
            }
        } else {
            work.push(e);
        }
    }
    create_all(src, dst, &work)?;
    for (from, to) in links {
        let (a, b) = (dst.join(&from), dst.join(&to));
        fs::hard_link(&a, &b).map_err(|e| Error::io("link", &b, e))?;
    }
    for e in want.iter().rev().filter(|e| e.kind == Kind::Dir) {
        copy_metadata(
            &src.join(&e.rel),
            &dst.join(&e.rel),
            &e.meta,
            Kind::Dir,
            None,
        )?;
    }
    copy_metadata(src, dst, &root_meta, Kind::Dir, None)
}

/// Copy `src` to `dst` (which must not exist), like `cp -a --reflink=auto`.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let root_meta = fs::symlink_metadata(src).map_err(|e| Error::io("stat", src, e))?;
    if !root_meta.is_dir() {
        return Err(Error::Invalid(format!(
            "{} is not a directory",
            src.display()
        )));
    }
    let mut entries = Vec::new();
    walk(src, Path::new(""), &mut entries)?;

    // Directories first (in walk order, parents before children), writable by us for now.
    fs::create_dir(dst).map_err(|e| Error::io("create", dst, e))?;
    for e in entries.iter().filter(|e| e.kind == Kind::Dir) {
        let p = dst.join(&e.rel);
        fs::create_dir(&p).map_err(|err| Error::io("create", &p, err))?;
    }
    // Hardlinked inodes: copy the first name, link the others afterwards.
    let mut first: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut work: Vec<&Entry> = Vec::new();
    for e in entries.iter().filter(|e| e.kind != Kind::Dir) {
        if e.meta.nlink() > 1 {
            let key = (e.meta.dev(), e.meta.ino());
            if let Some(f) = first.get(&key) {
                links.push((f.clone(), e.rel.clone()));
                continue;
            }
            first.insert(key, e.rel.clone());
        }
        work.push(e);
    }
    create_all(src, dst, &work)?;
    for (from, to) in links {
        let (a, b) = (dst.join(&from), dst.join(&to));
        fs::hard_link(&a, &b).map_err(|e| Error::io("link", &b, e))?;
    }
    // Directory metadata last, deepest first, so setting times and modes sticks.
    for e in entries.iter().rev().filter(|e| e.kind == Kind::Dir) {
        copy_metadata(
            &src.join(&e.rel),
            &dst.join(&e.rel),
            &e.meta,
            Kind::Dir,
            None,
        )?;
    }
    copy_metadata(src, dst, &root_meta, Kind::Dir, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn copies_a_tree_like_cp_a() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("a/b")).unwrap();
        fs::write(src.join("a/b/file"), b"data").unwrap();
        fs::set_permissions(src.join("a/b/file"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::hard_link(src.join("a/b/file"), src.join("a/hard")).unwrap();
        symlink("/etc/passwd", src.join("a/link")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o640)).unwrap();
        fs::set_permissions(src.join("a"), fs::Permissions::from_mode(0o711)).unwrap();
        fs::write(src.join("owned"), b"x").unwrap();
        let root = nix::unistd::geteuid().is_root();
        if root {
            std::os::unix::fs::chown(src.join("owned"), Some(1000), Some(1000)).unwrap();
            fs::set_permissions(src.join("owned"), fs::Permissions::from_mode(0o2640)).unwrap();
        }
        let dst = t.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("a/b/file")).unwrap(), b"data");
        let m = fs::metadata(dst.join("a/b/file")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o4755);
        assert_eq!(m.ino(), fs::metadata(dst.join("a/hard")).unwrap().ino());
        assert_ne!(m.ino(), fs::metadata(src.join("a/b/file")).unwrap().ino());
        assert_eq!(
            fs::read_link(dst.join("a/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(
            fs::symlink_metadata(dst.join("fifo"))
                .unwrap()
                .file_type()
                .is_fifo_compat()
        );
        assert_eq!(fs::metadata(dst.join("a")).unwrap().mode() & 0o7777, 0o711);
        assert_eq!(
            fs::metadata(dst.join("a/b/file")).unwrap().mtime(),
            fs::metadata(src.join("a/b/file")).unwrap().mtime()
        );
        if root {
            let m = fs::metadata(dst.join("owned")).unwrap();
            assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o2640));
        }
        assert!(copy_tree(&src, &dst).is_err(), "destination exists");
    }

    /// Every path under `root` with its kind, size, mode, owner and content or link target.
    fn listing(root: &Path) -> Vec<String> {
        let mut entries = Vec::new();
        walk(root, Path::new(""), &mut entries).unwrap();
        entries
            .iter()
            .map(|e| {
                let p = root.join(&e.rel);
                let what = match e.kind {
                    Kind::File => format!("{:?}", fs::read(&p).unwrap()),
                    Kind::Symlink => format!("{:?}", fs::read_link(&p).unwrap()),
                    _ => String::new(),
                };
                format!(
                    "{} {:?} {:o} {}:{} {what}",
                    e.rel.display(),
                    e.kind,
                    e.meta.mode(),
                    e.meta.uid(),
                    e.meta.gid()
                )
            })
            .collect()
    }

    #[test]
    fn sync_makes_a_changed_tree_equal_and_keeps_unchanged_files() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("etc/sub")).unwrap();
        fs::write(src.join("etc/keep"), b"same").unwrap();
        fs::write(src.join("etc/sub/changed"), b"original").unwrap();
        fs::write(src.join("etc/mode"), b"m").unwrap();
        symlink("keep", src.join("etc/link")).unwrap();
        fs::create_dir(src.join("was-a-dir")).unwrap();
        let dst = t.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let kept_ino = fs::metadata(dst.join("etc/keep")).unwrap().ino();
        // The instance changes after its snapshot.
        fs::write(dst.join("etc/sub/changed"), b"edited, longer").unwrap();
        fs::write(dst.join("etc/new"), b"new").unwrap();
        fs::create_dir_all(dst.join("newdir/deep")).unwrap();
        fs::set_permissions(dst.join("etc/mode"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(dst.join("etc/link")).unwrap();
        symlink("elsewhere", dst.join("etc/link")).unwrap();
        fs::remove_dir(dst.join("was-a-dir")).unwrap();
        fs::write(dst.join("was-a-dir"), b"file now").unwrap();
        sync_tree(&src, &dst).unwrap();
        assert_eq!(listing(&src), listing(&dst));
        assert_eq!(
            fs::metadata(dst.join("etc/keep")).unwrap().ino(),
            kept_ino,
            "an unchanged file is left alone"
        );
        assert_eq!(
            fs::metadata(dst.join("etc")).unwrap().mtime(),
            fs::metadata(src.join("etc")).unwrap().mtime()
        );
    }

    trait FifoCompat {
        fn is_fifo_compat(&self) -> bool;
    }
    impl FifoCompat for fs::FileType {
        fn is_fifo_compat(&self) -> bool {
            std::os::unix::fs::FileTypeExt::is_fifo(self)
        }
    }
}
