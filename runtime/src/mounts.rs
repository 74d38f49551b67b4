//! The container's mount table as data (`plan`) and its execution inside the new mount namespace
//! (`execute`). Every target is resolved inside the rootfs with openat2(RESOLVE_IN_ROOT), and
//! mounted through /proc/self/fd, so a symlink in the container can never send a mount to a host
//! path. Runs only in the container's setup process, before pivot_root.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};

use crate::cgroup::{HierarchyKind, Layout};
use crate::error::{Error, Result};
use crate::spec::ContainerSpec;
use crate::sys;

/// One step of the container's mount setup. Paths are relative to the rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A kernel filesystem mount (proc, sysfs, tmpfs, devpts, cgroup, cgroup2).
    Mount {
        fstype: &'static str,
        target: String,
        flags: MsFlags,
        data: String,
    },
    /// A bind mount of a host path (device nodes for unprivileged containers).
    BindHost {
        source: String,
        target: String,
        file: bool,
    },
    /// A bind mount of a path already inside the rootfs onto itself (to remount it apart).
    BindSelf {
        target: String,
        recursive: bool,
    },
    /// Make the mount at `target` read-only, keeping `flags`.
    RemountRo {
        target: String,
        flags: MsFlags,
    },
    /// Attach a tree the monitor prepared (`spec.mounts[index]`, possibly idmapped/read-only).
    AttachTree {
        index: usize,
        target: String,
        file: bool,
    },
    /// Allocate the console pty in the container's devpts (`devpts`) and bind its slave on
    /// `target`. The container's root owns it, as when a login allocates one.
    Console {
        devpts: String,
        target: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Mknod {
        path: String,
        mode: u32,
        major: u64,
        minor: u64,
    },
    Symlink {
        path: String,
        contents: String,
    },
}

/// The device nodes every container gets: name, major, minor (LXD's default set).
pub const DEVICES: &[(&str, u64, u64)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

fn rel(target: &str) -> String {
    target.trim_start_matches('/').to_string()
}

/// The mounts of `spec` after the rootfs itself, in order. `privileged` containers get real
/// device nodes (mknod); unprivileged ones get bind mounts of the host's.
pub fn plan(spec: &ContainerSpec, layout: &Layout) -> Vec<Step> {
    let privileged = spec.idmap.is_none();
    let nsd = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let nsde = nsd | MsFlags::MS_NOEXEC;
    let mut s = Vec::new();
    let dir = |s: &mut Vec<Step>, p: &str, mode: u32| {
        s.push(Step::Mkdir {
            path: p.to_string(),
            mode,
        });
    };

    // proc:mixed and sys:ro, as LXC's defaults; both must be mounted before pivot_root so a
    // user namespace passes the kernel's mount_too_revealing check.
    dir(&mut s, "proc", 0o555);
    s.push(Step::Mount {
        fstype: "proc",
        target: "proc".into(),
        flags: nsde,
        data: String::new(),
    });
    s.push(Step::BindSelf {
        target: "proc/sys/net".into(),
        recursive: false,
    });
    s.push(Step::BindSelf {
        target: "proc/sys".into(),
        recursive: true,
    });
    s.push(Step::RemountRo {
        target: "proc/sys".into(),
        flags: nsde,
    });
    s.push(Step::BindSelf {
        target: "proc/sysrq-trigger".into(),
        recursive: false,
    });
    s.push(Step::RemountRo {
        target: "proc/sysrq-trigger".into(),
        flags: nsde,
    });
    dir(&mut s, "sys", 0o555);
    s.push(Step::Mount {
        fstype: "sysfs",
        target: "sys".into(),
        flags: nsde | MsFlags::MS_RDONLY,
        data: String::new(),
    });

    // /dev
    dir(&mut s, "dev", 0o755);
    s.push(Step::Mount {
        fstype: "tmpfs",
        target: "dev".into(),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: "mode=755,size=4096k".into(),
    });
    for (name, major, minor) in DEVICES {
        let path = format!("dev/{name}");
        if privileged {
            s.push(Step::Mknod {
                path,
                mode: 0o666,
                major: *major,
                minor: *minor,
            });
        } else {
            s.push(Step::BindHost {
                source: format!("/dev/{name}"),
                target: path,
                file: true,
            });
        }
    }
    dir(&mut s, "dev/pts", 0o755);
    s.push(Step::Mount {
        fstype: "devpts",
        target: "dev/pts".into(),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        data: "newinstance,ptmxmode=0666,mode=0620,gid=5".into(),
    });
    for (path, contents) in [
        ("dev/ptmx", "pts/ptmx"),
        ("dev/fd", "/proc/self/fd"),
        ("dev/stdin", "/proc/self/fd/0"),
        ("dev/stdout", "/proc/self/fd/1"),
        ("dev/stderr", "/proc/self/fd/2"),
    ] {
        s.push(Step::Symlink {
            path: path.into(),
            contents: contents.into(),
        });
    }
    dir(&mut s, "dev/shm", 0o1777);
    s.push(Step::Mount {
        fstype: "tmpfs",
        target: "dev/shm".into(),
        flags: nsd,
        data: "mode=1777".into(),
    });
    s.push(Step::Console {
        devpts: "dev/pts".into(),
        target: "dev/console".into(),
    });
    if spec.nesting {
        // security.nesting: clean proc and sysfs instances for nested container managers.
        dir(&mut s, "dev/.lxc", 0o755);
        dir(&mut s, "dev/.lxc/proc", 0o555);
        s.push(Step::Mount {
            fstype: "proc",
            target: "dev/.lxc/proc".into(),
            flags: nsde,
            data: String::new(),
        });
        dir(&mut s, "dev/.lxc/sys", 0o555);
        s.push(Step::Mount {
            fstype: "sysfs",
            target: "dev/.lxc/sys".into(),
            flags: nsde,
            data: String::new(),
        });
    }

    // /sys/fs/cgroup, rooted at the container's cgroup namespace.
    match layout {
        Layout::V2(_) => s.push(Step::Mount {
            fstype: "cgroup2",
            target: "sys/fs/cgroup".into(),
            flags: nsde,
            data: String::new(),
        }),
        Layout::V1(hs) => {
            s.push(Step::Mount {
                fstype: "tmpfs",
                target: "sys/fs/cgroup".into(),
                flags: nsde,
                data: "mode=755".into(),
            });
            for h in hs {
                let (name, fstype, data) = match &h.kind {
                    HierarchyKind::Controllers(cs) => (cs.join(","), "cgroup", cs.join(",")),
                    HierarchyKind::Named(n) => (n.clone(), "cgroup", format!("none,name={n}")),
                    HierarchyKind::Unified => ("unified".to_string(), "cgroup2", String::new()),
                };
                let target = format!("sys/fs/cgroup/{name}");
                dir(&mut s, &target, 0o755);
                s.push(Step::Mount {
                    fstype,
                    target,
                    flags: nsde,
                    data,
                });
                // Co-mounted controllers get a link per name (cpu -> cpu,cpuacct), which
                // systemd would otherwise fail to create on the read-only tmpfs.
                if let HierarchyKind::Controllers(cs) = &h.kind
                    && cs.len() > 1
                {
                    for c in cs {
                        s.push(Step::Symlink {
                            path: format!("sys/fs/cgroup/{c}"),
                            contents: name.clone(),
                        });
                    }
                }
            }
            s.push(Step::RemountRo {
                target: "sys/fs/cgroup".into(),
                flags: nsde,
            });
        }
    }

    // The instance's own disks last, so nothing above hides them.
    for (index, m) in spec.mounts.iter().enumerate() {
        s.push(Step::AttachTree {
            index,
            target: rel(&m.target),
            file: m.file,
        });
    }
    s
}

/// What `execute` needs besides the steps.
#[derive(Debug)]
pub(crate) struct Resources<'a> {
    /// The rootfs directory (a mount root in our namespace).
    pub root: BorrowedFd<'a>,
    /// Detached trees for `spec.mounts`, in order.
    pub trees: &'a [OwnedFd],
}

/// The console pty pair `execute` allocated: (master, slave).
pub(crate) type ConsolePair = (OwnedFd, OwnedFd);

/// Runs `steps` inside the rootfs; returns the console pty when the plan has one.
pub(crate) fn execute(steps: &[Step], r: &Resources<'_>) -> Result<Option<ConsolePair>> {
    let mut console = None;
    for st in steps {
        if let Some(c) = exec_step(st, r)? {
            console = Some(c);
        }
    }
    Ok(console)
}

fn fdpath(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn do_mount(
    src: Option<&str>,
    target_fd: &OwnedFd,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    shown: &str,
) -> Result<()> {
    nix::mount::mount(src, fdpath(target_fd).as_str(), fstype, flags, data).map_err(|e| {
        Error::io(
            format!("mount {}", fstype.or(src).unwrap_or("bind")),
            format!("/{shown}"),
            crate::error::nix_io(e),
        )
    })
}

fn exec_step(st: &Step, r: &Resources<'_>) -> Result<Option<ConsolePair>> {
    match st {
        Step::Mkdir { path, mode } => {
            ensure(r.root, path, Kind::Dir(*mode))?;
        }
        Step::Mount {
            fstype,
            target,
            flags,
            data,
        } => {
            let t = ensure(r.root, target, Kind::Dir(0o755))?;
            let data = (!data.is_empty()).then_some(data.as_str());
            do_mount(Some(*fstype), &t, Some(fstype), *flags, data, target)?;
        }
        Step::BindHost {
            source,
            target,
            file,
        } => {
            let t = ensure(
                r.root,
                target,
                if *file {
                    Kind::File(0o000)
                } else {
                    Kind::Dir(0o755)
                },
            )?;
            do_mount(Some(source), &t, None, MsFlags::MS_BIND, None, target)?;
        }
        Step::BindSelf { target, recursive } => {
            let t = match ensure(r.root, target, Kind::Existing) {
                Ok(t) => t,
                // proc/sys/net and sysrq-trigger are absent on some kernels: nothing to protect.
                Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
                Err(e) => return Err(e),
            };
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            let p = fdpath(&t);
            do_mount(Some(p.as_str()), &t, None, flags, None, target)?;
        }
        Step::RemountRo { target, flags } => {
            let t = match ensure(r.root, target, Kind::Existing) {
                Ok(t) => t,
                Err(e) if e.errno() == Some(libc::ENOENT) => return Ok(None),
                Err(e) => return Err(e),
            };
            let f = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | *flags;
            do_mount(None, &t, None, f, None, target)?;
        }
        Step::AttachTree {
            index,
            target,
            file,
        } => {
            let tree = r
                .trees
                .get(*index)
                .ok_or_else(|| Error::Invalid(format!("no prepared mount for /{target}")))?;
            let t = ensure(
                r.root,
                target,
                if *file {
                    Kind::File(0o644)
                } else {
                    Kind::Dir(0o755)
                },
            )?;
            sys::move_mount(tree.as_fd(), t.as_raw_fd(), c"")
                .map_err(|e| Error::io("attach a mount at", format!("/{target}"), e))?;
        }
        Step::Console { devpts, target } => {
            let ptmx = format!("{devpts}/ptmx");
            let master = open_in_root(r.root, &ptmx, OFlag::O_RDWR | OFlag::O_NOCTTY, 0)
                .map_err(|e| Error::io("open", format!("/{ptmx}"), crate::error::nix_io(e)))?;
            let slave = sys::open_pty_peer(master.as_fd())
                .map_err(|e| Error::io("open the peer of", format!("/{ptmx}"), e))?;
            let t = ensure(r.root, target, Kind::File(0o600))?;
            let p = fdpath(&slave);
            do_mount(Some(p.as_str()), &t, None, MsFlags::MS_BIND, None, target)?;
            return Ok(Some((master, slave)));
        }
        Step::Mknod {
            path,
            mode,
            major,
            minor,
        } => {
            let (parent, name) = ensure_parent(r.root, path)?;
            let dev = nix::sys::stat::makedev(*major, *minor);
            match nix::sys::stat::mknodat(
                &parent,
                name.as_str(),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(*mode),
                dev,
            ) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    return Err(Error::io(
                        "create device",
                        format!("/{path}"),
                        crate::error::nix_io(e),
                    ));
                }
            }
        }
        Step::Symlink { path, contents } => {
            let (parent, name) = ensure_parent(r.root, path)?;
            match nix::unistd::symlinkat(contents.as_str(), &parent, name.as_str()) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => {
                    return Err(Error::io(
                        "create symlink",
                        format!("/{path}"),
                        crate::error::nix_io(e),
                    ));
                }
            }
        }
    }
    Ok(None)
}

/// How to open (or create) a path inside the rootfs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Existing,
    Dir(u32),
    File(u32),
}

fn resolve_how(flags: OFlag, mode: u32) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .mode(Mode::from_bits_truncate(mode))
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens `path` (relative, or absolute meaning relative) inside `root` with RESOLVE_IN_ROOT.
pub(crate) fn open_in_root(
    root: BorrowedFd<'_>,
    path: &str,
    flags: OFlag,
    mode: u32,
) -> nix::Result<OwnedFd> {
    let p = if path.trim_matches('/').is_empty() {
        "."
    } else {
        path.trim_start_matches('/')
    };
    nix::fcntl::openat2(root, p, resolve_how(flags, mode))
}

/// Splits off the last component; `..` components are refused so creation stays predictable.
fn split_last(path: &str) -> Result<(String, String)> {
    let comps: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.is_empty() || comps.contains(&"..") {
        return Err(Error::Invalid(format!(
            "invalid path in container: /{path}"
        )));
    }
    let (last, parent) = comps.split_last().expect("non-empty");
    Ok((parent.join("/"), last.to_string()))
}

/// The parent directory of `path` inside `root` (created if missing) and the final name.
fn ensure_parent(root: BorrowedFd<'_>, path: &str) -> Result<(OwnedFd, String)> {
    let (parent, name) = split_last(path)?;
    let pfd = if parent.is_empty() {
        open_in_root(root, ".", OFlag::O_PATH | OFlag::O_DIRECTORY, 0)
            .map_err(|e| Error::io("open", "/", crate::error::nix_io(e)))?
    } else {
        ensure(root, &parent, Kind::Dir(0o755))?
    };
    Ok((pfd, name))
}

/// Opens `path` inside `root` as an O_PATH fd (files: a plain fd), creating missing directories
/// and, for `Kind::File`, an empty file.
pub(crate) fn ensure(root: BorrowedFd<'_>, path: &str, kind: Kind) -> Result<OwnedFd> {
    let shown = format!("/{}", path.trim_start_matches('/'));
    let ioerr = |action: &str, e: nix::Error| Error::io(action, &shown, crate::error::nix_io(e));
    match open_in_root(root, path, OFlag::O_PATH, 0) {
        Ok(fd) => return Ok(fd),
        Err(nix::errno::Errno::ENOENT) if !matches!(kind, Kind::Existing) => {}
        Err(e) => return Err(ioerr("open", e)),
    }
    let (pfd, name) = ensure_parent(root, path)?;
    match kind {
        Kind::Existing => unreachable!("handled above"),
        Kind::Dir(mode) => {
            match nix::sys::stat::mkdirat(&pfd, name.as_str(), Mode::from_bits_truncate(mode)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(ioerr("create directory", e)),
            }
            open_in_root(root, path, OFlag::O_PATH | OFlag::O_DIRECTORY, 0)
                .map_err(|e| ioerr("open", e))
        }
        Kind::File(mode) => {
            let how = OpenHow::new()
                .flags(OFlag::O_CREAT | OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
                .mode(Mode::from_bits_truncate(mode))
                .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
            nix::fcntl::openat2(&pfd, name.as_str(), how).map_err(|e| ioerr("create", e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Hierarchy;
    use crate::spec::{BindMount, IdMap, Limits, RootfsIdmap};
    use std::path::PathBuf;

    fn spec(privileged: bool) -> ContainerSpec {
        ContainerSpec {
            name: "c1".into(),
            rootfs: "/var/lib/lxd/containers/c1/rootfs".into(),
            idmap: (!privileged).then(IdMap::default),
            rootfs_idmap: RootfsIdmap::None,
            init: vec!["/sbin/init".into()],
            env: Default::default(),
            cgroup_name: "lxdrs.payload.c1".into(),
            limits: Limits::default(),
            mounts: vec![BindMount {
                source: "/srv/data".into(),
                target: "/mnt/data".into(),
                readonly: true,
                idmapped: false,
                file: false,
            }],
            nesting: false,
            console_log: "/tmp/c.log".into(),
            log_file: "/tmp/l.log".into(),
            nics: vec![],
            reboot_via_daemon: false,
        }
    }

    fn hybrid() -> Layout {
        let h = |n: &str, kind| Hierarchy {
            mountpoint: PathBuf::from(format!("/sys/fs/cgroup/{n}")),
            kind,
        };
        Layout::V1(vec![
            h(
                "cpu,cpuacct",
                HierarchyKind::Controllers(vec!["cpu".into(), "cpuacct".into()]),
            ),
            h("memory", HierarchyKind::Controllers(vec!["memory".into()])),
            h("systemd", HierarchyKind::Named("systemd".into())),
            h("unified", HierarchyKind::Unified),
        ])
    }

    fn mount_targets(steps: &[Step]) -> Vec<(String, &'static str, String)> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Mount {
                    fstype,
                    target,
                    data,
                    ..
                } => Some((target.clone(), *fstype, data.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn unprivileged_binds_devices_and_mounts_cgroups() {
        let steps = plan(&spec(false), &hybrid());
        assert!(steps.iter().all(|s| !matches!(s, Step::Mknod { .. })));
        assert!(steps.contains(&Step::BindHost {
            source: "/dev/null".into(),
            target: "dev/null".into(),
            file: true
        }));
        let m = mount_targets(&steps);
        let t: Vec<&str> = m.iter().map(|(t, _, _)| t.as_str()).collect();
        assert_eq!(
            t,
            [
                "proc",
                "sys",
                "dev",
                "dev/pts",
                "dev/shm",
                "sys/fs/cgroup",
                "sys/fs/cgroup/cpu,cpuacct",
                "sys/fs/cgroup/memory",
                "sys/fs/cgroup/systemd",
                "sys/fs/cgroup/unified",
            ]
        );
        assert!(m.contains(&(
            "dev/pts".into(),
            "devpts",
            "newinstance,ptmxmode=0666,mode=0620,gid=5".into()
        )));
        assert!(m.contains(&(
            "sys/fs/cgroup/systemd".into(),
            "cgroup",
            "none,name=systemd".into()
        )));
        assert!(steps.contains(&Step::Symlink {
            path: "sys/fs/cgroup/cpuacct".into(),
            contents: "cpu,cpuacct".into()
        }));
        // proc comes before sys, and both before anything the instance asked for.
        let pos = |p: &Step| steps.iter().position(|s| s == p).unwrap();
        let attach = Step::AttachTree {
            index: 0,
            target: "mnt/data".into(),
            file: false,
        };
        assert_eq!(pos(&attach), steps.len() - 1);
        assert!(steps.contains(&Step::RemountRo {
            target: "sys/fs/cgroup".into(),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
        }));
    }

    #[test]
    fn privileged_mknods_and_v2_mounts_one_cgroup2() {
        let mut sp = spec(true);
        sp.nesting = true;
        let steps = plan(&sp, &Layout::V2("/sys/fs/cgroup".into()));
        assert!(steps.contains(&Step::Mknod {
            path: "dev/tty".into(),
            mode: 0o666,
            major: 5,
            minor: 0
        }));
        assert!(steps.iter().all(|s| !matches!(s, Step::BindHost { .. })));
        let m = mount_targets(&steps);
        assert!(m.contains(&("sys/fs/cgroup".into(), "cgroup2", String::new())));
        assert!(m.contains(&("dev/.lxc/proc".into(), "proc", String::new())));
    }

    #[test]
    fn paths_with_dotdot_are_refused() {
        assert!(split_last("a/../b").is_err());
        assert!(split_last("").is_err());
        assert_eq!(
            split_last("/dev//pts/").unwrap(),
            ("dev".into(), "pts".into())
        );
    }
}
