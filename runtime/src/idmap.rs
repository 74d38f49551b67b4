//! User-namespace id maps: the host map for unprivileged containers (from /etc/subuid and
//! /etc/subgid, as LXD does), probing and creating idmapped mounts, and shifting a rootfs on disk
//! for filesystems without them. It never changes a file outside the tree it is given.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Mutex;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

use crate::error::{Error, IoContext, NixContext, Result};
use crate::spec::{IdMap, IdRange};
use crate::sys;

/// LXD's fallback when root has no subordinate ids.
pub const FALLBACK_HOST_ID: u32 = 1_000_000;
pub const FALLBACK_COUNT: u32 = 1_000_000_000;

/// The map for unprivileged containers on this host: container root -> root's first range in
/// /etc/subuid and /etc/subgid, the whole range mapped.
pub fn host_idmap() -> IdMap {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    idmap_from_subid(&read("/etc/subuid"), &read("/etc/subgid"))
}

/// `host_idmap` from file contents.
pub fn idmap_from_subid(subuid: &str, subgid: &str) -> IdMap {
    let range = |text: &str| {
        let (host_id, count) =
            first_subid_range(text, "root", 0).unwrap_or((FALLBACK_HOST_ID, FALLBACK_COUNT));
        vec![IdRange {
            ns_id: 0,
            host_id,
            count,
        }]
    };
    IdMap {
        uid: range(subuid),
        gid: range(subgid),
    }
}

/// The first `start:count` range for `user` (or its numeric id) in a subuid/subgid file.
pub fn first_subid_range(text: &str, user: &str, id: u32) -> Option<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| {
            let mut f = l.split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != user && who != id {
                return None;
            }
            let start: u32 = start.trim().parse().ok()?;
            let count: u32 = count.trim().parse().ok()?;
            (count > 0 && start.checked_add(count - 1).is_some()).then_some((start, count))
        })
}

/// Container id -> host id.
pub fn to_host(ranges: &[IdRange], ns_id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let off = ns_id.checked_sub(r.ns_id)?;
        (off < r.count).then(|| r.host_id + off)
    })
}

/// Host id -> container id.
pub fn to_ns(ranges: &[IdRange], host_id: u32) -> Option<u32> {
    ranges.iter().find_map(|r| {
        let off = host_id.checked_sub(r.host_id)?;
        (off < r.count).then(|| r.ns_id + off)
    })
}

/// The text written to /proc/PID/uid_map or gid_map.
pub fn render_map(ranges: &[IdRange]) -> String {
    ranges
        .iter()
        .map(|r| format!("{} {} {}\n", r.ns_id, r.host_id, r.count))
        .collect()
}

/// Parses a /proc/PID/uid_map.
pub fn parse_map(text: &str) -> Vec<IdRange> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace().map(|x| x.parse::<u32>());
            Some(IdRange {
                ns_id: f.next()?.ok()?,
                host_id: f.next()?.ok()?,
                count: f.next()?.ok()?,
            })
        })
        .collect()
}

/// Writes the maps of a process that was created in a new user namespace. setgroups stays
/// "allow" (root writes the map), so systemd and login tools can call setgroups inside.
pub(crate) fn write_maps(pid: i32, map: &IdMap) -> Result<()> {
    for (file, ranges) in [("uid_map", &map.uid), ("gid_map", &map.gid)] {
        let p = format!("/proc/{pid}/{file}");
        let text = render_map(ranges);
        std::fs::write(&p, &text)
            .map_err(|e| Error::io(format!("write {:?} to", text.trim()), &p, e))?;
    }
    Ok(())
}

/// A user namespace with `map`, held by a short-lived child, returned as an fd (for
/// MOUNT_ATTR_IDMAP). Safe to call from a multi-threaded process: the child only pause()s until
/// we SIGKILL it. (Waiting for EOF on a pipe instead deadlocks when two threads do this at
/// once: each child inherits the other's write end.)
pub fn userns_fd(map: &IdMap) -> Result<OwnedFd> {
    // SAFETY: the child calls only pause(2), which is async-signal-safe, so this is sound even
    // if the caller has other threads.
    let pid = unsafe { sys::clone_fork(libc::CLONE_NEWUSER as libc::c_ulong) }
        .sys_ctx("create a user namespace")?;
    if pid == 0 {
        loop {
            // SAFETY: pause has no preconditions; SIGKILL ends the loop.
            unsafe { libc::pause() };
        }
    }
    let res = write_maps(pid, map).and_then(|()| {
        let p = format!("/proc/{pid}/ns/user");
        std::fs::File::open(&p)
            .map(OwnedFd::from)
            .path_ctx("open", Path::new(&p))
    });
    let child = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(child, nix::sys::signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(child, None);
    res
}

/// A detached copy of the mount tree at `source` (open_tree OPEN_TREE_CLONE), optionally
/// idmapped through `userns` and/or read-only. The caller attaches it with move_mount.
pub(crate) fn clone_tree(
    source: &Path,
    recursive: bool,
    userns: Option<BorrowedFd<'_>>,
    readonly: bool,
) -> Result<OwnedFd> {
    let c = sys::cpath(source)?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    let fd = sys::open_tree(libc::AT_FDCWD, &c, flags).path_ctx("clone the mount at", source)?;
    let mut attr = libc::mount_attr {
        attr_set: 0,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    if let Some(ns) = userns {
        attr.attr_set |= libc::MOUNT_ATTR_IDMAP;
        attr.userns_fd = ns.as_raw_fd() as u64;
    }
    if readonly {
        attr.attr_set |= libc::MOUNT_ATTR_RDONLY;
    }
    if attr.attr_set != 0 {
        sys::mount_setattr(fd.as_fd(), recursive, &attr).map_err(|e| {
            let what = if userns.is_some() {
                "create an idmapped mount of"
            } else {
                "make read-only the mount of"
            };
            Error::io(what, source, e)
        })?;
    }
    Ok(fd)
}

/// Whether an idmapped mount of `path` can be made (ext4, btrfs, tmpfs here; not zfs-fuse nor
/// overlayfs). Probed once per filesystem (device) and cached.
pub fn idmapped_mounts_supported(path: &Path) -> bool {
    static CACHE: Mutex<Option<HashMap<u64, bool>>> = Mutex::new(None);
    let Ok(st) = nix::sys::stat::stat(path) else {
        return false;
    };
    let key = st.st_dev;
    if let Some(v) = CACHE
        .lock()
        .ok()
        .and_then(|c| c.as_ref()?.get(&key).copied())
    {
        return v;
    }
    let map = IdMap {
        uid: vec![IdRange {
            ns_id: 0,
            host_id: FALLBACK_HOST_ID,
            count: 65536,
        }],
        gid: vec![IdRange {
            ns_id: 0,
            host_id: FALLBACK_HOST_ID,
            count: 65536,
        }],
    };
    let ok = userns_fd(&map)
        .and_then(|ns| clone_tree(path, false, Some(ns.as_fd()), false))
        .is_ok();
    if let Ok(mut c) = CACHE.lock() {
        c.get_or_insert_with(HashMap::new).insert(key, ok);
    }
    ok
}

const XATTR_CAPS: &str = "security.capability";
const XATTR_ACL_ACCESS: &str = "system.posix_acl_access";
const XATTR_ACL_DEFAULT: &str = "system.posix_acl_default";

/// Rewrites the owner of every inode under `path` through `map` (container id -> host id, or
/// back when `reverse`): lchown without following symlinks, keeping setuid/setgid bits, file
/// capabilities and POSIX ACLs (their ids translated). Stays on `path`'s filesystem; ids outside
/// the map are left as they are. The fallback for filesystems without idmapped mounts.
pub fn shift_tree(path: &Path, map: &IdMap, reverse: bool) -> Result<()> {
    let root = nix::fcntl::open(
        path,
        OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
        Mode::empty(),
    )
    .path_ctx("open", path)?;
    let st = nix::sys::stat::fstat(&root).path_ctx("stat", path)?;
    let mut s = Shifter {
        map,
        reverse,
        dev: st.st_dev,
        seen: HashSet::new(),
    };
    // The top directory itself, through its parent-less fd.
    s.shift_inode(root.as_fd(), None, &st, path)?;
    s.walk(root, path)
}

struct Shifter<'a> {
    map: &'a IdMap,
    reverse: bool,
    dev: u64,
    seen: HashSet<(u64, u64)>,
}

impl Shifter<'_> {
    fn id(&self, ranges: &[IdRange], id: u32) -> Option<u32> {
        if self.reverse {
            to_ns(ranges, id)
        } else {
            to_host(ranges, id)
        }
    }

    fn walk(&mut self, dir: OwnedFd, dir_path: &Path) -> Result<()> {
        let dup = dir.try_clone().path_ctx("duplicate fd of", dir_path)?;
        let mut d = nix::dir::Dir::from_fd(dup).path_ctx("read directory", dir_path)?;
        let mut subdirs = Vec::new();
        for ent in d.iter() {
            let ent = ent.path_ctx("read directory", dir_path)?;
            let name = ent.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let name = name.to_owned();
            let child_path = dir_path.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
            let st = match nix::sys::stat::fstatat(
                &dir,
                name.as_c_str(),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            ) {
                Ok(st) => st,
                Err(nix::errno::Errno::ENOENT) => continue,
                Err(e) => return Err(Error::io("stat", &child_path, crate::error::nix_io(e))),
            };
            if st.st_dev != self.dev {
                continue; // a mount point: not ours to shift
            }
            let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
            if kind != SFlag::S_IFDIR
                && st.st_nlink > 1
                && !self.seen.insert((st.st_dev, st.st_ino))
            {
                continue; // another name of a hard link we already shifted
            }
            self.shift_inode(dir.as_fd(), Some(&name), &st, &child_path)?;
            if kind == SFlag::S_IFDIR {
                subdirs.push((name, child_path));
            }
        }
        drop(d);
        for (name, child_path) in subdirs {
            let fd = nix::fcntl::openat(
                &dir,
                name.as_c_str(),
                OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_RDONLY,
                Mode::empty(),
            )
            .path_ctx("open", &child_path)?;
            self.walk(fd, &child_path)?;
        }
        Ok(())
    }

    /// Shifts one inode: `dir`+`name`, or `dir` itself when `name` is None.
    fn shift_inode(
        &self,
        dir: BorrowedFd<'_>,
        name: Option<&CString>,
        st: &libc::stat,
        path: &Path,
    ) -> Result<()> {
        let (uid, gid) = (
            self.id(&self.map.uid, st.st_uid).unwrap_or(st.st_uid),
            self.id(&self.map.gid, st.st_gid).unwrap_or(st.st_gid),
        );
        let kind = st.st_mode & libc::S_IFMT;
        let is_link = kind == libc::S_IFLNK;
        // xattrs are addressed through /proc/self/fd so no path is resolved twice.
        let xpath = match name {
            Some(n) => format!(
                "/proc/self/fd/{}/{}",
                dir.as_raw_fd(),
                String::from_utf8_lossy(n.as_bytes())
            ),
            None => format!("/proc/self/fd/{}", dir.as_raw_fd()),
        };
        let xpath_ok = name.is_none_or(|n| {
            !n.as_bytes().contains(&b'/') && std::str::from_utf8(n.as_bytes()).is_ok()
        });
        let mut saved: Vec<(&str, Vec<u8>)> = Vec::new();
        if !is_link && xpath_ok {
            for attr in [XATTR_CAPS, XATTR_ACL_ACCESS, XATTR_ACL_DEFAULT] {
                if let Some(v) = lgetxattr(&xpath, attr) {
                    saved.push((attr, v));
                }
            }
        }
        if uid != st.st_uid || gid != st.st_gid {
            let (fd, p, flags): (RawFd, &std::ffi::CStr, i32) = match name {
                Some(n) => (dir.as_raw_fd(), n.as_c_str(), libc::AT_SYMLINK_NOFOLLOW),
                None => (dir.as_raw_fd(), c"", libc::AT_EMPTY_PATH),
            };
            // SAFETY: `p` is a valid C string and `fd` a live directory descriptor.
            let rc = unsafe { libc::fchownat(fd, p.as_ptr(), uid, gid, flags) };
            if rc < 0 {
                return Err(Error::io(
                    format!("chown {uid}:{gid}"),
                    path,
                    std::io::Error::last_os_error(),
                ));
            }
            // chown clears setuid/setgid on non-directories: put them back.
            if !is_link
                && kind != libc::S_IFDIR
                && st.st_mode & (libc::S_ISUID | libc::S_ISGID) != 0
            {
                let m = Mode::from_bits_truncate(st.st_mode & 0o7777);
                let r = match name {
                    Some(n) => nix::sys::stat::fchmodat(
                        dir,
                        n.as_c_str(),
                        m,
                        nix::sys::stat::FchmodatFlags::FollowSymlink,
                    ),
                    None => nix::sys::stat::fchmod(dir, m),
                };
                r.path_ctx("chmod", path)?;
            }
        }
        for (attr, v) in saved {
            let v = match attr {
                XATTR_CAPS => self.shift_caps(v),
                _ => self.shift_acl(v),
            };
            // Ignored on failure: zfs-fuse has no xattrs at all, and a lost ACL must not stop
            // the container from starting.
            lsetxattr(&xpath, attr, &v);
        }
        Ok(())
    }

    /// VFS_CAP_REVISION_3 carries the namespace root uid; shift it. Revision 2 has none.
    fn shift_caps(&self, mut v: Vec<u8>) -> Vec<u8> {
        if v.len() == 24
            && u32::from_le_bytes([v[0], v[1], v[2], v[3]]) & 0xFF00_0000 == 0x0300_0000
        {
            let root = u32::from_le_bytes([v[20], v[21], v[22], v[23]]);
            if let Some(r) = self.id(&self.map.uid, root) {
                v[20..24].copy_from_slice(&r.to_le_bytes());
            }
        }
        v
    }

    /// POSIX ACL xattr: 4-byte version, then 8-byte entries (tag u16, perm u16, id u32);
    /// ACL_USER (2) and ACL_GROUP (8) entries carry ids.
    fn shift_acl(&self, mut v: Vec<u8>) -> Vec<u8> {
        let mut i = 4;
        while i + 8 <= v.len() {
            let tag = u16::from_le_bytes([v[i], v[i + 1]]);
            let id = u32::from_le_bytes([v[i + 4], v[i + 5], v[i + 6], v[i + 7]]);
            let new = match tag {
                2 => self.id(&self.map.uid, id),
                8 => self.id(&self.map.gid, id),
                _ => None,
            };
            if let Some(n) = new {
                v[i + 4..i + 8].copy_from_slice(&n.to_le_bytes());
            }
            i += 8;
        }
        v
    }
}

fn lgetxattr(path: &str, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are valid C strings; the buffer is writable for its length.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::ERANGE) {
            return None;
        }
        // SAFETY: a NULL buffer of size 0 asks for the value's size only.
        let need = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if need <= 0 {
            return None;
        }
        buf.resize(need as usize, 0);
        // SAFETY: as above, with the buffer grown to the reported size.
        let len =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if len < 0 {
            return None;
        }
        buf.truncate(len as usize);
        return Some(buf);
    }
    buf.truncate(len as usize);
    Some(buf)
}

fn lsetxattr(path: &str, name: &str, value: &[u8]) -> bool {
    let (Ok(p), Ok(n)) = (CString::new(path), CString::new(name)) else {
        return false;
    };
    // SAFETY: valid C strings and a readable value slice of the given length.
    unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        ) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_first_root_range() {
        let text = "# comment\nlxd:1000000:65536\nroot:100000:10000001\nroot:900000:5\n";
        assert_eq!(
            first_subid_range(text, "root", 0),
            Some((100_000, 10_000_001))
        );
        assert_eq!(
            first_subid_range("0:5000:10\n", "root", 0),
            Some((5000, 10))
        );
        assert_eq!(first_subid_range("root:x:1\nroot:1:0\n", "root", 0), None);
        assert_eq!(first_subid_range("root:4294967295:2\n", "root", 0), None);
    }

    #[test]
    fn host_map_from_files() {
        let m = idmap_from_subid("root:100000:10000001\n", "");
        assert_eq!(
            m.uid,
            vec![IdRange {
                ns_id: 0,
                host_id: 100_000,
                count: 10_000_001
            }]
        );
        assert_eq!(
            m.gid,
            vec![IdRange {
                ns_id: 0,
                host_id: FALLBACK_HOST_ID,
                count: FALLBACK_COUNT
            }]
        );
        assert_eq!(render_map(&m.uid), "0 100000 10000001\n");
        assert_eq!(parse_map("         0     100000   10000001\n"), m.uid);
    }

    #[test]
    fn mapping_both_ways() {
        let r = [
            IdRange {
                ns_id: 0,
                host_id: 100_000,
                count: 1000,
            },
            IdRange {
                ns_id: 1000,
                host_id: 5000,
                count: 1,
            },
        ];
        assert_eq!(to_host(&r, 0), Some(100_000));
        assert_eq!(to_host(&r, 999), Some(100_999));
        assert_eq!(to_host(&r, 1000), Some(5000));
        assert_eq!(to_host(&r, 1001), None);
        assert_eq!(to_ns(&r, 100_005), Some(5));
        assert_eq!(to_ns(&r, 5000), Some(1000));
        assert_eq!(to_ns(&r, 0), None);
    }

    #[test]
    fn acl_and_caps_ids_shift() {
        let map = IdMap {
            uid: vec![IdRange {
                ns_id: 0,
                host_id: 100_000,
                count: 65536,
            }],
            gid: vec![IdRange {
                ns_id: 0,
                host_id: 200_000,
                count: 65536,
            }],
        };
        let s = Shifter {
            map: &map,
            reverse: false,
            dev: 0,
            seen: HashSet::new(),
        };
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, id) in [(1u16, u32::MAX), (2, 1000), (8, 5), (32, u32::MAX)] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&7u16.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        let out = s.shift_acl(acl);
        let id_at =
            |i: usize| u32::from_le_bytes(out[4 + i * 8 + 4..4 + i * 8 + 8].try_into().unwrap());
        assert_eq!(
            [id_at(0), id_at(1), id_at(2), id_at(3)],
            [u32::MAX, 101_000, 200_005, u32::MAX]
        );

        let mut caps = vec![0u8; 24];
        caps[0..4].copy_from_slice(&0x0300_0001u32.to_le_bytes());
        let out = s.shift_caps(caps);
        assert_eq!(u32::from_le_bytes(out[20..24].try_into().unwrap()), 100_000);
        let rev = Shifter {
            map: &map,
            reverse: true,
            dev: 0,
            seen: HashSet::new(),
        };
        assert_eq!(
            u32::from_le_bytes(rev.shift_caps(out)[20..24].try_into().unwrap()),
            0
        );
    }
}
