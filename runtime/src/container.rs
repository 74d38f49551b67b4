//! Creating one container init: the monitor's side (clone with the namespaces, id maps, cgroup
//! attach, detached mount trees sent over SCM_RIGHTS) and the child's side (mounts, pivot_root,
//! capabilities, seccomp, console, exec). Runs only inside the single-threaded monitor.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Pid, Uid};

use crate::cgroup::CgroupManager;
use crate::error::{Error, IoContext, NixContext, Result};
use crate::spec::{ContainerSpec, RootfsIdmap};
use crate::{idmap, mounts, seccomp, sys};

/// Capabilities LXD drops from every container's bounding set (lxc.cap.drop defaults).
pub const DROPPED_CAPS: &[caps::Capability] = &[
    caps::Capability::CAP_SYS_TIME,
    caps::Capability::CAP_SYS_MODULE,
    caps::Capability::CAP_SYS_RAWIO,
    caps::Capability::CAP_MAC_ADMIN,
    caps::Capability::CAP_MAC_OVERRIDE,
];

/// How long the child may take to set up before we give up on it.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The environment of init: `spec.env` plus `container=lxc`.
pub fn init_env(spec: &ContainerSpec) -> Vec<String> {
    let mut env: Vec<String> = spec
        .env
        .iter()
        .filter(|(k, _)| k.as_str() != "container")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    env.push("container=lxc".into());
    env
}

/// Everything the child needs, computed before the clone so the child allocates little.
struct ChildPlan<'a> {
    spec: &'a ContainerSpec,
    steps: Vec<mounts::Step>,
    filter: Vec<seccomp::Insn>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    rootfs: CString,
    sock: RawFd,
    /// The child joins the v1 cgroups itself (it is born in the cgroup2 one).
    join: crate::cgroup::JoinPlan,
}

/// A started init: its pid and the master of its console pty.
#[derive(Debug)]
pub struct Launched {
    pub pid: i32,
    pub console: OwnedFd,
}

/// Starts the container's init and returns once it has exec'd. The console pty is allocated
/// in the container's own devpts by its setup process and handed to us. On error nothing of the
/// child is left running.
pub fn launch(spec: &ContainerSpec, cg: &dyn CgroupManager) -> Result<Launched> {
    let layout = crate::cgroup::layout()?;
    let cstrings = |v: &[String], what: &str| -> Result<Vec<CString>> {
        v.iter()
            .map(|s| {
                CString::new(s.as_str())
                    .map_err(|_| Error::Invalid(format!("{what} contains a NUL byte")))
            })
            .collect()
    };
    if spec.init.is_empty() {
        return Err(Error::Invalid("the init command is empty".into()));
    }
    let root_host = match &spec.idmap {
        Some(m) => Some((
            idmap::to_host(&m.uid, 0)
                .ok_or_else(|| Error::Invalid("the id map has no uid 0".into()))?,
            idmap::to_host(&m.gid, 0)
                .ok_or_else(|| Error::Invalid("the id map has no gid 0".into()))?,
        )),
        None => None,
    };

    let (psock, csock) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .sys_ctx("create a socket pair")?;

    let plan = ChildPlan {
        spec,
        steps: mounts::plan(spec, layout),
        filter: seccomp::compile(&seccomp::default_rules())?,
        argv: cstrings(&spec.init, "the init command")?,
        envp: cstrings(&init_env(spec), "the init environment")?,
        rootfs: sys::cpath(&spec.rootfs)?,
        sock: csock.as_raw_fd(),
        join: cg.join_plan()?,
    };
    let mut flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET;
    if spec.idmap.is_some() {
        flags |= libc::CLONE_NEWUSER;
    }
    let into = plan.join.v2_dir.as_ref().map(|f| f.as_fd());
    // SAFETY: the monitor is single-threaded (forkstart requires it), so the child may use the
    // allocator and everything else; it never returns from `child_main`.
    let pid = unsafe { sys::clone_fork_into(flags as libc::c_ulong, into) }
        .sys_ctx("clone the container init")?;
    if pid == 0 {
        drop(psock);
        child_main(&plan);
    }
    drop(csock);
    drop(plan);
    match release_child(spec, cg, pid, &psock, root_host) {
        Ok(console) => Ok(Launched { pid, console }),
        Err(e) => {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(pid), None);
            Err(e)
        }
    }
}

/// Parent side after the clone: maps, cgroups, nics, mount trees; then wait for exec.
fn release_child(
    spec: &ContainerSpec,
    cg: &dyn CgroupManager,
    pid: i32,
    sock: &OwnedFd,
    root_host: Option<(u32, u32)>,
) -> Result<OwnedFd> {
    if let Some(map) = &spec.idmap {
        idmap::write_maps(pid, map)?;
    }
    if let Some((uid, gid)) = root_host {
        cg.delegate(uid, gid)?;
    }
    for nic in &spec.nics {
        move_nic(pid, &nic.host_name, &nic.name)?;
    }
    let userns = match spec.idmap {
        Some(_) => {
            let p = format!("/proc/{pid}/ns/user");
            Some(OwnedFd::from(
                std::fs::File::open(&p).path_ctx("open", Path::new(&p))?,
            ))
        }
        None => None,
    };
    let rootfs_ns = match spec.rootfs_idmap {
        RootfsIdmap::IdmappedMount => Some(
            userns
                .as_ref()
                .ok_or_else(|| Error::Invalid("an idmapped rootfs needs an id map".into()))?
                .as_fd(),
        ),
        RootfsIdmap::None => None,
    };
    let mut trees = vec![idmap::clone_tree(&spec.rootfs, true, rootfs_ns, false)?];
    for m in &spec.mounts {
        let ns = if m.idmapped {
            userns.as_ref().map(|f| f.as_fd())
        } else {
            None
        };
        trees.push(idmap::clone_tree(&m.source, true, ns, m.readonly)?);
    }
    let raw: Vec<RawFd> = trees.iter().map(|t| t.as_raw_fd()).collect();
    sys::send_with_fds(sock.as_fd(), b"go", &raw).sys_ctx("release the container init")?;
    drop(trees);

    // The child sends its console master, then either its error or nothing: its end of the
    // socket is close-on-exec, so EOF means init was exec'd.
    let mut console = None;
    let deadline = std::time::Instant::now() + SETUP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut pfd = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
        match nix::poll::poll(
            &mut pfd,
            PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Err(Error::Timeout("the container init to start".into())),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::sys(
                    "wait for the container init",
                    crate::error::nix_io(e),
                ));
            }
        }
        let mut buf = [0u8; 1024];
        let (n, mut fds) = sys::recv_with_fds(sock.as_fd(), &mut buf)
            .sys_ctx("read the container's setup result")?;
        match &buf[..n] {
            [] => break,
            b"console" if !fds.is_empty() => console = Some(fds.remove(0)),
            msg => {
                return Err(Error::Child(
                    String::from_utf8_lossy(msg).trim().to_string(),
                ));
            }
        }
    }
    console.ok_or_else(|| Error::Child("the container started without a console".into()))
}

/// Moves a host link into the container's network namespace under its inside name.
fn move_nic(pid: i32, host_name: &str, name: &str) -> Result<()> {
    let out = std::process::Command::new("ip")
        .args([
            "link",
            "set",
            "dev",
            host_name,
            "netns",
            &pid.to_string(),
            "name",
            name,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| Error::sys("run ip link", e))?;
    if !out.status.success() {
        return Err(Error::Child(format!(
            "failed to move {host_name} into the container: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The child: never returns. Any error is sent to the monitor as text before exiting.
fn child_main(p: &ChildPlan<'_>) -> ! {
    let err = match child_setup(p) {
        Ok(never) => match never {},
        Err(e) => e.to_string(),
    };
    let _ = sys::write_all_fd(p.sock, err.as_bytes());
    // SAFETY: _exit skips destructors and atexit handlers that belong to the monitor.
    unsafe { libc::_exit(1) }
}

fn child_setup(p: &ChildPlan<'_>) -> Result<Infallible> {
    // SAFETY: `p.sock` stays open for the whole child (closed only by exec).
    let sock = unsafe { sys::borrow_raw(p.sock) };
    let mut buf = [0u8; 16];
    let (n, trees) = sys::recv_with_fds(sock, &mut buf).sys_ctx("wait for the monitor")?;
    if &buf[..n] != b"go" || trees.is_empty() {
        return Err(Error::Child("the monitor gave up on this start".into()));
    }
    let userns = p.spec.idmap.is_some();
    let mut trees = trees.into_iter();
    let rootfs_tree = trees.next().expect("checked non-empty");
    let trees: Vec<OwnedFd> = trees.collect();

    // Into our cgroups (born in the cgroup2 one), then make them the root of our cgroup
    // namespace.
    p.join
        .join_v1_self()
        .path_ctx("join the v1 cgroups", Path::new(&p.spec.cgroup_name))?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
        .sys_ctx("create the cgroup namespace")?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .sys_ctx("make / private")?;

    // Still host uid 0 (not yet switched to the container's root): the rootfs path's parents
    // may be root-only, and only the owner check lets us walk them.
    let rootfs = Path::new(std::ffi::OsStr::from_bytes(p.rootfs.as_bytes()));
    sys::move_mount(rootfs_tree.as_fd(), libc::AT_FDCWD, &p.rootfs)
        .path_ctx("mount the rootfs on", rootfs)?;
    drop(rootfs_tree);
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .path_ctx("open", rootfs)?;

    if userns {
        nix::unistd::setgroups(&[]).sys_ctx("clear supplementary groups")?;
        nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .sys_ctx("become gid 0 in the container")?;
        nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .sys_ctx("become uid 0 in the container")?;
        // The uid change made us non-dumpable, which hides /proc/self/fd from ourselves.
        sys::set_dumpable(true);
    }

    nix::sys::stat::umask(Mode::empty());
    let (master, console) = mounts::execute(
        &p.steps,
        &mounts::Resources {
            root: root.as_fd(),
            trees: &trees,
        },
    )?
    .ok_or_else(|| Error::Child("the mount plan has no console".into()))?;
    drop(trees);
    sys::send_with_fds(sock, b"console", &[master.as_raw_fd()])
        .sys_ctx("hand the console to the monitor")?;
    drop(master);

    nix::unistd::sethostname(&p.spec.name).sys_ctx("set the hostname")?;
    nix::unistd::fchdir(&root).sys_ctx("enter the rootfs")?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops
    // it without needing a directory for it in the container's rootfs.
    nix::unistd::pivot_root(".", ".").sys_ctx("pivot_root into the rootfs")?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH).sys_ctx("detach the old root")?;
    nix::unistd::chdir("/").sys_ctx("chdir to /")?;
    drop(root);
    nix::sys::stat::umask(Mode::from_bits_truncate(0o022));

    for cap in DROPPED_CAPS {
        caps::drop(None, caps::CapSet::Bounding, *cap)
            .map_err(|e| Error::Child(format!("failed to drop {cap}: {e}")))?;
    }
    seccomp::install(&p.filter)?;

    // A session of its own, with the console as stdio but not as controlling tty: like a
    // kernel-started init (and LXC). Taking it here would make getty's TIOCSCTTY need
    // CAP_SYS_ADMIN in the initial user namespace, which an unprivileged container lacks.
    nix::unistd::setsid().sys_ctx("create a session")?;
    for fd in 0..3 {
        // SAFETY: dup2 onto stdio; `console` is open and 0..3 are ours to replace.
        if unsafe { libc::dup2(console.as_raw_fd(), fd) } < 0 {
            return Err(Error::sys(
                "attach stdio to the console",
                std::io::Error::last_os_error(),
            ));
        }
    }
    drop(console);
    sys::reset_signals();
    let e = nix::unistd::execve(&p.argv[0], &p.argv, &p.envp).unwrap_err();
    Err(Error::io(
        "exec",
        p.spec.init[0].as_str(),
        crate::error::nix_io(e),
    ))
}
