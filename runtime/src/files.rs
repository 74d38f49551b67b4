//! `lxd forkfile`: file operations inside an instance for the files API (stat, read, write,
//! mkdir, symlink, list, delete). A running instance is entered through its init's user and
//! mount namespaces; a stopped one is worked on in its rootfs with ids translated when the
//! rootfs is shifted on disk. Every path is resolved with openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS), so nothing in the container can lead to a host path. Data is
//! streamed, never held whole in memory.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, NixContext, Result};
use crate::idmap;
use crate::mounts::open_in_root;
use crate::spec::IdMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileOp {
    /// Metadata of the path itself (symlinks are not followed).
    Stat,
    /// Header, then the file's bytes (symlinks inside the root are followed).
    Read,
    /// The directory's entry names in the header.
    List,
    /// Creates or replaces (or appends to) a file with the bytes on stdin.
    Write,
    Mkdir,
    Symlink,
    Delete,
}

/// One request to `lxd forkfile` (as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRequest {
    pub op: FileOp,
    /// Absolute path inside the instance.
    pub path: String,
    /// Running instance: its init, whose user and mount namespaces are joined.
    #[serde(default)]
    pub init_pid: Option<i32>,
    /// Stopped instance: its rootfs on the host.
    #[serde(default)]
    pub rootfs: Option<PathBuf>,
    /// Stopped instance whose rootfs is shifted on disk: ids are translated through this map.
    #[serde(default)]
    pub shifted: Option<IdMap>,
    /// Owner and mode for created files (container ids); default 0:0, 0644 / 0755.
    #[serde(default)]
    pub uid: Option<u32>,
    #[serde(default)]
    pub gid: Option<u32>,
    #[serde(default)]
    pub mode: Option<u32>,
    /// Write: append rather than truncate.
    #[serde(default)]
    pub append: bool,
    /// Symlink: what the link points to.
    #[serde(default)]
    pub target: Option<String>,
    /// Mkdir: create missing parents. Delete: remove a directory with its contents.
    #[serde(default)]
    pub recursive: bool,
}

/// The JSON line written first on stdout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileHeader {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// HTTP status LXD would answer with (404, 403, 409, 400, 500) when `ok` is false.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub status: Option<u16>,
    /// "file", "directory", "symlink" or "other".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub r#type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mtime: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entries: Option<Vec<String>>,
}

/// The HTTP status LXD uses for an errno.
pub fn http_status(errno: Option<i32>) -> u16 {
    match errno {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => 404,
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => 403,
        Some(libc::EEXIST) | Some(libc::ENOTEMPTY) | Some(libc::EISDIR) => 409,
        Some(libc::ELOOP) | Some(libc::EXDEV) | Some(libc::EINVAL) => 400,
        _ => 500,
    }
}

/// The HTTP status for an error of a file request.
pub fn status_of(e: &Error) -> u16 {
    match e {
        Error::Invalid(_) => 400,
        Error::NotRunning => 404,
        e => http_status(e.errno()),
    }
}

/// Runs the request with stdin/stdout and exits: 0 when done, 1 after an error header.
pub fn forkfile(req: &FileRequest) -> ! {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = match run(req, &mut std::io::stdin().lock(), &mut out) {
        Ok(()) => 0,
        Err(e) => {
            let h = FileHeader {
                ok: false,
                status: Some(status_of(&e)),
                error: Some(e.to_string()),
                ..Default::default()
            };
            let _ = write_header(&mut out, &h);
            1
        }
    };
    let _ = out.flush();
    std::process::exit(code)
}

fn write_header(out: &mut dyn Write, h: &FileHeader) -> Result<()> {
    let mut line = serde_json::to_vec(h).map_err(|e| Error::Invalid(e.to_string()))?;
    line.push(b'\n');
    out.write_all(&line).sys_ctx("write the reply")
}

/// How ids on disk relate to the container's.
#[derive(Debug, Clone)]
struct Ids(Option<IdMap>);

impl Ids {
    fn to_ns_uid(&self, id: u32) -> u32 {
        match &self.0 {
            Some(m) => idmap::to_ns(&m.uid, id).unwrap_or(65534),
            None => id,
        }
    }
    fn to_ns_gid(&self, id: u32) -> u32 {
        match &self.0 {
            Some(m) => idmap::to_ns(&m.gid, id).unwrap_or(65534),
            None => id,
        }
    }
    fn to_disk(&self, uid: u32, gid: u32) -> Result<(u32, u32)> {
        match &self.0 {
            Some(m) => Ok((
                idmap::to_host(&m.uid, uid)
                    .ok_or_else(|| Error::Invalid(format!("uid {uid} is outside the id map")))?,
                idmap::to_host(&m.gid, gid)
                    .ok_or_else(|| Error::Invalid(format!("gid {gid} is outside the id map")))?,
            )),
            None => Ok((uid, gid)),
        }
    }
}

/// The instance's root as a directory fd, entering namespaces for a running instance.
fn open_root(req: &FileRequest) -> Result<(OwnedFd, Ids)> {
    match (req.init_pid, &req.rootfs) {
        (Some(pid), _) => {
            enter(pid)?;
            let root = nix::fcntl::open(
                "/",
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .path_ctx("open", Path::new("/"))?;
            Ok((root, Ids(None)))
        }
        (None, Some(rootfs)) => {
            let root = nix::fcntl::open(
                rootfs.as_path(),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .path_ctx("open", rootfs)?;
            Ok((root, Ids(req.shifted.clone())))
        }
        (None, None) => Err(Error::Invalid(
            "a file request needs init_pid or rootfs".into(),
        )),
    }
}

/// Joins init's user (when it has its own) and mount namespaces and becomes the container's
/// root, so files are created with the container's ids and through its idmapped mounts.
pub(crate) fn enter(pid: i32) -> Result<()> {
    let open = |ns: &str| -> Result<std::fs::File> {
        let p = format!("/proc/{pid}/ns/{ns}");
        std::fs::File::open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotRunning,
            _ => Error::io("open", &p, e),
        })
    };
    let user = open("user")?;
    let mnt = open("mnt")?;
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self/ns/user")
        .path_ctx("stat", Path::new("/proc/self/ns/user"))?;
    let userns = user.metadata().map(|m| m.ino()).ok() != Some(own.ino());
    crate::sys::set_dumpable(false);
    if userns {
        nix::sched::setns(&user, CloneFlags::CLONE_NEWUSER).sys_ctx("enter the user namespace")?;
    }
    nix::sched::setns(&mnt, CloneFlags::CLONE_NEWNS).sys_ctx("enter the mount namespace")?;
    if userns {
        nix::unistd::setgroups(&[])
            .or_else(|e| {
                if e == nix::errno::Errno::EPERM {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .sys_ctx("clear groups")?;
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .sys_ctx("become gid 0")?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .sys_ctx("become uid 0")?;
    }
    Ok(())
}

fn shown(path: &str) -> String {
    format!("/{}", path.trim_start_matches('/'))
}

/// Parent path and final name; `.`/`..` as the final name is refused.
fn split(path: &str) -> Result<(String, String)> {
    let p = path.trim_end_matches('/');
    let (parent, name) = match p.rfind('/') {
        Some(i) => (&p[..i], &p[i + 1..]),
        None => ("", p),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(Error::Invalid(format!("invalid path {}", shown(path))));
    }
    Ok((
        if parent.is_empty() {
            "/".into()
        } else {
            parent.to_string()
        },
        name.to_string(),
    ))
}

fn open_at(root: BorrowedFd<'_>, path: &str, flags: OFlag, mode: u32) -> Result<OwnedFd> {
    open_in_root(root, path, flags | OFlag::O_CLOEXEC, mode)
        .path_ctx("open", Path::new(&shown(path)))
}

fn header_for(fd: BorrowedFd<'_>, ids: &Ids) -> Result<FileHeader> {
    let st = nix::sys::stat::fstat(fd).sys_ctx("stat")?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        _ => "other",
    };
    let target = (kind == "symlink")
        .then(|| nix::fcntl::readlinkat(fd, c"").ok())
        .flatten()
        .map(|t| t.to_string_lossy().into_owned());
    Ok(FileHeader {
        ok: true,
        r#type: Some(kind.into()),
        mode: Some(st.st_mode & 0o7777),
        uid: Some(ids.to_ns_uid(st.st_uid)),
        gid: Some(ids.to_ns_gid(st.st_gid)),
        size: Some(st.st_size as u64),
        mtime: Some(st.st_mtime),
        target,
        ..Default::default()
    })
}

/// The request, with the data streams given (unit-testable on a plain directory).
pub fn run(req: &FileRequest, input: &mut dyn Read, out: &mut dyn Write) -> Result<()> {
    if !req.path.starts_with('/') {
        return Err(Error::Invalid(format!(
            "path {:?} is not absolute",
            req.path
        )));
    }
    let (root, ids) = open_root(req)?;
    let root = root.as_fd();
    let path = req.path.as_str();
    match req.op {
        FileOp::Stat => {
            let fd = open_at(root, path, OFlag::O_PATH | OFlag::O_NOFOLLOW, 0)?;
            write_header(out, &header_for(fd.as_fd(), &ids)?)
        }
        FileOp::Read => {
            // O_NONBLOCK: a FIFO planted in the container must not hang us; only regular
            // files are read, and then in blocking mode again.
            let fd = open_at(
                root,
                path,
                OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
                0,
            )?;
            let mut h = header_for(fd.as_fd(), &ids)?;
            match h.r#type.as_deref() {
                Some("directory") => {
                    h.entries = Some(list(fd.as_fd(), path)?);
                    write_header(out, &h)
                }
                Some("file") => {
                    nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::empty()))
                        .path_ctx("read", Path::new(&shown(path)))?;
                    write_header(out, &h)?;
                    copy(&mut std::fs::File::from(fd), out, path)
                }
                _ => Err(Error::Invalid(format!(
                    "{} is not a regular file or directory",
                    shown(path)
                ))),
            }
        }
        FileOp::List => {
            let fd = open_at(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, 0)?;
            let mut h = header_for(fd.as_fd(), &ids)?;
            h.entries = Some(list(fd.as_fd(), path)?);
            write_header(out, &h)
        }
        FileOp::Write => {
            let mut flags = OFlag::O_WRONLY | OFlag::O_CREAT;
            flags |= if req.append {
                OFlag::O_APPEND
            } else {
                OFlag::O_TRUNC
            };
            let (parent, _) = split(path)?;
            open_at(root, &parent, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
            let existed = open_at(root, path, OFlag::O_PATH, 0).is_ok();
            // O_NONBLOCK until we know it is a regular file (see Read).
            let fd = open_at(
                root,
                path,
                flags | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
                0o600,
            )?;
            let st = nix::sys::stat::fstat(&fd).sys_ctx("stat")?;
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                return Err(Error::Invalid(format!(
                    "{} is not a regular file",
                    shown(path)
                )));
            }
            let keep = if req.append {
                OFlag::O_APPEND
            } else {
                OFlag::empty()
            };
            nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(keep))
                .path_ctx("write", Path::new(&shown(path)))?;
            if (!existed && ids.0.is_some()) || req.uid.is_some() || req.gid.is_some() {
                let (u, g) = ids.to_disk(req.uid.unwrap_or(0), req.gid.unwrap_or(0))?;
                nix::unistd::fchown(&fd, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
                    .path_ctx("chown", Path::new(&shown(path)))?;
            }
            if !existed || req.mode.is_some() {
                let m = Mode::from_bits_truncate(req.mode.unwrap_or(0o644) & 0o7777);
                nix::sys::stat::fchmod(&fd, m).path_ctx("chmod", Path::new(&shown(path)))?;
            }
            let mut f = std::fs::File::from(fd);
            copy(input, &mut f, path)?;
            write_header(out, &header_for(f.as_fd(), &ids)?)
        }
        FileOp::Mkdir => {
            if req.recursive {
                let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
                for i in 1..=comps.len() {
                    let p = format!("/{}", comps[..i].join("/"));
                    if open_at(root, &p, OFlag::O_PATH | OFlag::O_DIRECTORY, 0).is_err() {
                        mkdir(root, &p, req, &ids)?;
                    }
                }
            } else {
                mkdir(root, path, req, &ids)?;
            }
            let fd = open_at(root, path, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
            write_header(out, &header_for(fd.as_fd(), &ids)?)
        }
        FileOp::Symlink => {
            let target = req
                .target
                .as_deref()
                .ok_or_else(|| Error::Invalid("a symlink needs a target".into()))?;
            let (parent, name) = split(path)?;
            let pfd = open_at(root, &parent, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
            nix::unistd::symlinkat(target, &pfd, name.as_str())
                .path_ctx("create symlink", Path::new(&shown(path)))?;
            if ids.0.is_some() || req.uid.is_some() || req.gid.is_some() {
                let (u, g) = ids.to_disk(req.uid.unwrap_or(0), req.gid.unwrap_or(0))?;
                nix::unistd::fchownat(
                    &pfd,
                    name.as_str(),
                    Some(Uid::from_raw(u)),
                    Some(Gid::from_raw(g)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .path_ctx("chown", Path::new(&shown(path)))?;
            }
            let fd = open_at(root, path, OFlag::O_PATH | OFlag::O_NOFOLLOW, 0)?;
            write_header(out, &header_for(fd.as_fd(), &ids)?)
        }
        FileOp::Delete => {
            let (parent, name) = split(path)?;
            let pfd = open_at(root, &parent, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
            remove(pfd.as_fd(), &name, req.recursive, path)?;
            write_header(
                out,
                &FileHeader {
                    ok: true,
                    ..Default::default()
                },
            )
        }
    }
}

fn mkdir(root: BorrowedFd<'_>, path: &str, req: &FileRequest, ids: &Ids) -> Result<()> {
    let (parent, name) = split(path)?;
    let pfd = open_at(root, &parent, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)?;
    let mode = Mode::from_bits_truncate(req.mode.unwrap_or(0o755) & 0o7777);
    nix::sys::stat::mkdirat(&pfd, name.as_str(), mode)
        .path_ctx("create directory", Path::new(&shown(path)))?;
    let fd = nix::fcntl::openat(
        &pfd,
        name.as_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .path_ctx("open", Path::new(&shown(path)))?;
    // New inodes already belong to whoever we are (the container's root, or host root on an
    // unshifted rootfs): chown only for an explicit owner or a shifted rootfs.
    if ids.0.is_some() || req.uid.is_some() || req.gid.is_some() {
        let (u, g) = ids.to_disk(req.uid.unwrap_or(0), req.gid.unwrap_or(0))?;
        nix::unistd::fchown(&fd, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
            .path_ctx("chown", Path::new(&shown(path)))?;
    }
    // mkdir applied the umask; the mode asked for is the mode given.
    nix::sys::stat::fchmod(&fd, mode).path_ctx("chmod", Path::new(&shown(path)))?;
    Ok(())
}

fn list(dir: BorrowedFd<'_>, path: &str) -> Result<Vec<String>> {
    let fd = nix::fcntl::openat(
        dir,
        c".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .path_ctx("open", Path::new(&shown(path)))?;
    let mut d = nix::dir::Dir::from_fd(fd).path_ctx("read directory", Path::new(&shown(path)))?;
    let mut names = Vec::new();
    for e in d.iter() {
        let e = e.path_ctx("read directory", Path::new(&shown(path)))?;
        let n = e.file_name().to_string_lossy().into_owned();
        if n != "." && n != ".." {
            names.push(n);
        }
    }
    names.sort();
    Ok(names)
}

/// Removes `name` in `dir`; directories only when empty unless `recursive`. Never follows a
/// symlink: a link is removed, not what it points to.
fn remove(dir: BorrowedFd<'_>, name: &str, recursive: bool, shown_path: &str) -> Result<()> {
    let p = Path::new(shown_path);
    let st =
        nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).path_ctx("stat", p)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .path_ctx("delete", p);
    }
    if recursive {
        let sub = nix::fcntl::openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .path_ctx("open", p)?;
        for child in list(sub.as_fd(), shown_path)? {
            remove(
                sub.as_fd(),
                &child,
                true,
                &format!("{}/{child}", shown_path.trim_end_matches('/')),
            )?;
        }
    }
    nix::unistd::unlinkat(dir, name, nix::unistd::UnlinkatFlags::RemoveDir).path_ctx("delete", p)
}

fn copy(input: &mut dyn Read, out: &mut dyn Write, path: &str) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("read", shown(path), e)),
        };
        out.write_all(&buf[..n])
            .path_ctx("write", Path::new(&shown(path)))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn req(op: FileOp, root: &Path, path: &str) -> FileRequest {
        FileRequest {
            op,
            path: path.into(),
            init_pid: None,
            rootfs: Some(root.to_path_buf()),
            shifted: None,
            uid: None,
            gid: None,
            mode: None,
            append: false,
            target: None,
            recursive: false,
        }
    }

    fn call(r: &FileRequest, input: &[u8]) -> Result<(FileHeader, Vec<u8>)> {
        let mut out = Vec::new();
        run(r, &mut &input[..], &mut out)?;
        let nl = out.iter().position(|b| *b == b'\n').unwrap();
        Ok((
            serde_json::from_slice(&out[..nl]).unwrap(),
            out[nl + 1..].to_vec(),
        ))
    }

    #[test]
    fn write_read_list_delete() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let mut w = req(FileOp::Write, root, "/hello.txt");
        w.mode = Some(0o640);
        let (h, _) = call(&w, b"hi there").unwrap();
        assert_eq!((h.size, h.mode), (Some(8), Some(0o640)));
        w.append = true;
        w.mode = None;
        call(&w, b"!").unwrap();
        let (h, data) = call(&req(FileOp::Read, root, "/hello.txt"), b"").unwrap();
        assert_eq!(
            (h.r#type.as_deref(), data.as_slice()),
            (Some("file"), &b"hi there!"[..])
        );
        let mut m = req(FileOp::Mkdir, root, "/a/b/c");
        m.recursive = true;
        assert_eq!(
            call(&m, b"").unwrap().0.r#type.as_deref(),
            Some("directory")
        );
        let (h, _) = call(&req(FileOp::List, root, "/"), b"").unwrap();
        assert_eq!(h.entries.unwrap(), ["a", "hello.txt"]);
        let mut d = req(FileOp::Delete, root, "/a");
        assert_eq!(http_status(call(&d, b"").unwrap_err().errno()), 409);
        d.recursive = true;
        call(&d, b"").unwrap();
        assert!(!root.join("a").exists());
    }

    #[test]
    fn symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        let root = t.path();
        let mut s = req(FileOp::Symlink, root, "/escape");
        s.target = Some(outside.path().display().to_string());
        let (h, _) = call(&s, b"").unwrap();
        assert_eq!(h.r#type.as_deref(), Some("symlink"));
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        // Reading through either link stays in the root, where there is no such file.
        for p in ["/escape/secret", "/up/secret"] {
            let e = call(&req(FileOp::Read, root, p), b"").unwrap_err();
            assert_eq!(http_status(e.errno()), 404, "{p}: {e}");
        }
        // Writing through them lands inside the root as well.
        std::fs::create_dir_all(root.join(outside.path().strip_prefix("/").unwrap())).unwrap();
        call(&req(FileOp::Write, root, "/escape/secret"), b"container").unwrap();
        assert_eq!(
            std::fs::read_to_string(outside.path().join("secret")).unwrap(),
            "host"
        );
        // Deleting a link removes the link only.
        call(&req(FileOp::Delete, root, "/escape"), b"").unwrap();
        assert!(outside.path().join("secret").exists());
    }

    #[test]
    fn shifted_rootfs_translates_ids() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        // SAFETY: geteuid has no preconditions.
        let am_root = unsafe { libc::geteuid() } == 0;
        let map = IdMap {
            uid: vec![crate::spec::IdRange {
                ns_id: 0,
                host_id: 100_000,
                count: 65536,
            }],
            gid: vec![crate::spec::IdRange {
                ns_id: 0,
                host_id: 100_000,
                count: 65536,
            }],
        };
        let mut w = req(FileOp::Write, root, "/f");
        w.shifted = Some(map.clone());
        w.uid = Some(1000);
        w.gid = Some(1000);
        match call(&w, b"x") {
            Ok((h, _)) => {
                assert_eq!((h.uid, h.gid), (Some(1000), Some(1000)));
                assert_eq!(std::fs::metadata(root.join("f")).unwrap().uid(), 101_000);
            }
            Err(e) => assert!(!am_root, "{e}"), // chown needs root
        }
        let ids = Ids(Some(map));
        assert_eq!(ids.to_ns_uid(100_005), 5);
        assert_eq!(ids.to_ns_uid(5), 65534);
        assert!(ids.to_disk(70_000, 0).is_err());
    }

    #[test]
    fn fifos_are_not_opened_for_data() {
        let t = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&t.path().join("fifo"), Mode::from_bits_truncate(0o644)).unwrap();
        let e = call(&req(FileOp::Read, t.path(), "/fifo"), b"").unwrap_err();
        assert_eq!(status_of(&e), 400);
        assert!(call(&req(FileOp::Write, t.path(), "/fifo"), b"x").is_err());
        let (h, _) = call(&req(FileOp::Stat, t.path(), "/fifo"), b"").unwrap();
        assert_eq!(h.r#type.as_deref(), Some("other"));
    }

    #[test]
    fn bad_requests() {
        let t = tempfile::tempdir().unwrap();
        assert!(call(&req(FileOp::Stat, t.path(), "relative"), b"").is_err());
        assert!(split("/..").is_err());
        assert_eq!(split("/a/b/").unwrap(), ("/a".into(), "b".into()));
        assert_eq!(split("/a").unwrap(), ("/".into(), "a".into()));
        let e = call(&req(FileOp::Stat, t.path(), "/nope"), b"").unwrap_err();
        assert_eq!(http_status(e.errno()), 404);
        assert!(e.to_string().contains("/nope"));
    }
}
