//! `lxd forkexec`: run a command inside a running container. Joins the container's cgroups, then
//! its namespaces through /proc/PID/ns, forks into its pid namespace and execs; the parent stays
//! to relay signals and report the exit status. Also allocates exec ptys inside the container's
//! own devpts. Runs only in a single-threaded helper process, never in the daemon.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::unistd::{ForkResult, Gid, Uid};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, NixContext, Result};
use crate::{cgroup, idmap, mounts, sys};

/// The exec request the daemon passes to `lxd forkexec` (as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    pub init_pid: i32,
    pub cgroup_name: String,
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<(String, String)>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    #[serde(default)]
    pub pty: bool,
}

/// Exit status when the command could not be started because entering the container failed.
pub const EXIT_SETUP_FAILED: i32 = 255;
/// Exit status when the command was not found (as a shell does).
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit status when the command was found but could not be executed.
pub const EXIT_NOT_EXECUTABLE: i32 = 126;

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Namespaces joined, in this order: user first so the others are ours to enter.
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
];

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Runs the request and exits with the command's status (see the EXIT_* constants; 128+n when
/// the command was killed by signal n). Errors are printed as one line on stderr.
pub fn forkexec(req: &ExecRequest) -> ! {
    let code = match run(req) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e}");
            EXIT_SETUP_FAILED
        }
    };
    std::process::exit(code)
}

/// The exit code for a wait status (shell conventions).
pub fn exit_code(status: nix::sys::wait::WaitStatus) -> i32 {
    use nix::sys::wait::WaitStatus::*;
    match status {
        Exited(_, c) => c,
        Signaled(_, s, _) => 128 + s as i32,
        _ => EXIT_SETUP_FAILED,
    }
}

/// The exit code for an exec errno.
pub fn exec_errno_code(errno: i32) -> i32 {
    if errno == libc::ENOENT || errno == libc::ENOTDIR {
        EXIT_NOT_FOUND
    } else {
        EXIT_NOT_EXECUTABLE
    }
}

fn run(req: &ExecRequest) -> Result<i32> {
    if req.command.is_empty() {
        return Err(Error::Invalid("no command given".into()));
    }
    // Nothing in the container may ptrace or read /proc of this still-privileged process.
    sys::set_dumpable(false);
    let pid = req.init_pid;
    let mut ns_fds = Vec::new();
    let self_user = std::fs::metadata("/proc/self/ns/user")
        .path_ctx("stat", Path::new("/proc/self/ns/user"))?;
    for (name, flag) in NAMESPACES {
        let p = format!("/proc/{pid}/ns/{name}");
        let f = std::fs::File::open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotRunning,
            _ => Error::io("open", &p, e),
        })?;
        if *name == "user" && f.metadata().map(|m| m.ino()).ok() == Some(self_user.ino()) {
            continue; // privileged container: same user namespace, setns would fail
        }
        ns_fds.push((OwnedFd::from(f), *flag, p));
    }
    let uid_map = idmap::parse_map(
        &std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap_or_default(),
    );
    let gid_map = idmap::parse_map(
        &std::fs::read_to_string(format!("/proc/{pid}/gid_map")).unwrap_or_default(),
    );

    let cg = cgroup::open(&req.cgroup_name)?;
    if cg.is_frozen().unwrap_or(false) {
        return Err(Error::Frozen);
    }
    // This helper joins the v1 cgroups itself; the command is born in the cgroup2 one.
    let join = cg.join_plan()?;
    join.join_v1_self()
        .path_ctx("join the v1 cgroups", Path::new(&req.cgroup_name))?;

    if req.pty && nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        // The pty lives in the container's devpts but was opened by host root: give it to the
        // user it is for, group tty, as login would.
        let uid = idmap::to_host(&uid_map, req.uid);
        let gid = idmap::to_host(&gid_map, 5);
        let _ = nix::unistd::fchown(
            std::io::stdin(),
            uid.map(Uid::from_raw),
            gid.map(Gid::from_raw),
        );
    }

    for (fd, flag, p) in &ns_fds {
        nix::sched::setns(fd, *flag).path_ctx("enter namespace", Path::new(p))?;
    }
    drop(ns_fds);

    let argv = cstrings(&req.command)?;
    let envp = cstrings(
        &req.env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>(),
    )?;
    let path_var = req
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map_or(DEFAULT_PATH, |(_, v)| v.as_str());
    let candidates = exec_candidates(&req.command[0], path_var)?;
    let home = if req.cwd.is_empty() {
        home_of(req.uid)
    } else {
        None
    };
    let filter = crate::seccomp::compile(&crate::seccomp::default_rules())?;

    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).sys_ctx("create a pipe")?;
    let fork = |into: Option<&OwnedFd>| {
        // SAFETY: forkexec runs in a single-threaded helper, so the child may run any code.
        unsafe { sys::clone_fork_into(0, into.map(|f| f.as_fd())) }
    };
    let pid = match fork(join.v2_dir.as_ref()) {
        // The container's init enabled controllers for its children: only leaves hold
        // processes (cgroup2's no internal processes rule).
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => fork(cg.exec_leaf()?.as_ref()),
        r => r,
    }
    .sys_ctx("fork into the container")?;
    drop(join);
    let forked = if pid == 0 {
        ForkResult::Child
    } else {
        ForkResult::Parent {
            child: nix::unistd::Pid::from_raw(pid),
        }
    };
    match forked {
        ForkResult::Child => {
            drop(r);
            let errno = child(req, &argv, &envp, &candidates, home.as_deref(), &filter);
            let _ = sys::write_all_fd(w.as_raw_fd(), &errno.to_ne_bytes());
            let code = if errno & SETUP_BIT != 0 {
                EXIT_SETUP_FAILED
            } else {
                exec_errno_code(errno)
            };
            // SAFETY: leave the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(w);
            CHILD.store(child.as_raw(), Ordering::Relaxed);
            for sig in [
                libc::SIGTERM,
                libc::SIGINT,
                libc::SIGHUP,
                libc::SIGQUIT,
                libc::SIGUSR1,
                libc::SIGUSR2,
                libc::SIGWINCH,
            ] {
                // SAFETY: the handler only calls kill(2), which is async-signal-safe.
                unsafe { libc::signal(sig, forward_signal as *const () as libc::sighandler_t) };
            }
            let mut b = [0u8; 4];
            let n = sys::read_fd(r.as_raw_fd(), &mut b).unwrap_or(0);
            let status = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => break r.sys_ctx("wait for the command")?,
                }
            };
            if n == 4 {
                let errno = i32::from_ne_bytes(b);
                let e = nix::errno::Errno::from_raw(errno & !SETUP_BIT);
                if errno & SETUP_BIT != 0 {
                    return Err(Error::Child(format!(
                        "failed to become uid {} gid {} in the container: {}",
                        req.uid,
                        req.gid,
                        e.desc()
                    )));
                }
                eprintln!("Error: {}: {}", req.command[0], e.desc());
                return Ok(exec_errno_code(errno));
            }
            Ok(exit_code(status))
        }
    }
}

/// The command a `forkexec` helper runs: its only child (None until it forked, or once both
/// are gone). The daemon signals it through this, so it can spawn the helper without placing
/// a pid pipe (which would force a fork of the whole daemon instead of posix_spawn).
pub fn command_pid(helper: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{helper}/task/{helper}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Failure of a step before exec is reported with this bit set on the errno.
const SETUP_BIT: i32 = 1 << 16;

/// The child inside the container: returns the errno of the step that failed (exec last;
/// earlier steps carry SETUP_BIT).
fn child(
    req: &ExecRequest,
    argv: &[CString],
    envp: &[CString],
    candidates: &[CString],
    home: Option<&str>,
    filter: &[crate::seccomp::Insn],
) -> i32 {
    let errno = |e: nix::Error| e as i32 | SETUP_BIT;
    if let Err(e) = nix::unistd::setsid() {
        return errno(e);
    }
    if req.pty {
        // The pty was opened in the container's devpts; it becomes our controlling terminal.
        let _ = sys::set_controlling_tty(0);
    }
    // The same confinement init got: LXD's bounding-set drops and seccomp deny-list.
    for cap in crate::DROPPED_CAPS {
        if caps::drop(None, caps::CapSet::Bounding, *cap).is_err() {
            return libc::EPERM | SETUP_BIT;
        }
    }
    if crate::seccomp::install(filter).is_err() {
        return libc::EPERM | SETUP_BIT;
    }
    if let Err(e) = nix::unistd::setgroups(&[]) {
        // setgroups is denied when the container's gid_map was written with setgroups=deny;
        // that is harmless as long as we carry no supplementary groups of the host.
        if e != nix::errno::Errno::EPERM {
            return errno(e);
        }
    }
    let (g, u) = (Gid::from_raw(req.gid), Uid::from_raw(req.uid));
    if let Err(e) = nix::unistd::setresgid(g, g, g) {
        return errno(e);
    }
    if let Err(e) = nix::unistd::setresuid(u, u, u) {
        return errno(e);
    }
    let dir = if req.cwd.is_empty() {
        home.unwrap_or("/")
    } else {
        req.cwd.as_str()
    };
    if nix::unistd::chdir(dir).is_err() {
        let _ = nix::unistd::chdir("/");
    }
    sys::cloexec_from(3);
    sys::reset_signals();
    let mut last = libc::ENOENT;
    for c in candidates {
        let e = nix::unistd::execve(c, argv, envp).unwrap_err();
        // As execvp: a permission problem on any candidate wins over "not found".
        if e == nix::errno::Errno::EACCES || last != libc::EACCES {
            last = e as i32;
        }
        if e == nix::errno::Errno::ENOEXEC {
            return e as i32;
        }
    }
    last
}

fn cstrings(v: &[String]) -> Result<Vec<CString>> {
    v.iter()
        .map(|s| {
            CString::new(s.as_str())
                .map_err(|_| Error::Invalid(format!("argument {s:?} contains a NUL byte")))
        })
        .collect()
}

/// The paths to try for `cmd`: itself when it has a slash, else each PATH entry.
pub fn exec_candidates(cmd: &str, path: &str) -> Result<Vec<CString>> {
    if cmd.contains('/') {
        return cstrings(&[cmd.to_string()]);
    }
    let v: Vec<String> = path
        .split(':')
        .map(|d| if d.is_empty() { "." } else { d })
        .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
        .collect();
    cstrings(&v)
}

/// The home directory of `uid` from the container's /etc/passwd (we are in its mount ns).
fn home_of(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd_home(&text, uid)
}

pub fn passwd_home(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid) && !f[5].is_empty())
            .then(|| f[5].to_string())
    })
}

/// A pty pair inside the container's own devpts (so `tty` inside prints /dev/pts/N): the
/// master and, through TIOCGPTPEER, its slave. The ptmx is found with RESOLVE_IN_ROOT under
/// /proc/PID/root, so no symlink in the container can redirect it.
pub fn open_container_pty(init_pid: i32) -> Result<(OwnedFd, OwnedFd)> {
    let root_path = format!("/proc/{init_pid}/root");
    let root = nix::fcntl::open(
        root_path.as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .path_ctx("open", Path::new(&root_path))?;
    let shown = format!("{root_path}/dev/pts/ptmx");
    let master = mounts::open_in_root(
        root.as_fd(),
        "dev/pts/ptmx",
        OFlag::O_RDWR | OFlag::O_NOCTTY,
        0,
    )
    .path_ctx("open", Path::new(&shown))?;
    let st = nix::sys::stat::fstat(&master).path_ctx("stat", Path::new(&shown))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || nix::sys::stat::major(st.st_rdev) != 5 {
        return Err(Error::Invalid(format!("{shown} is not a pty multiplexer")));
    }
    let slave =
        sys::open_pty_peer(master.as_fd()).path_ctx("open the peer of", Path::new(&shown))?;
    Ok((master, slave))
}

/// Sets a pty's window size (TIOCSWINSZ), on the master or the slave.
pub fn set_window_size(fd: BorrowedFd<'_>, cols: u16, rows: u16) -> Result<()> {
    sys::set_winsize(fd, cols, rows).sys_ctx("set the window size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_json_round_trip() {
        let j = r#"{"init_pid":42,"cgroup_name":"lxdrs.payload.c1","command":["sh","-c","exit 3"],
                    "env":[["PATH","/bin"]],"cwd":"","uid":0,"gid":0,"pty":false}"#;
        let r: ExecRequest = serde_json::from_str(j).unwrap();
        assert_eq!(r.command.len(), 3);
        assert_eq!(r.env, vec![("PATH".to_string(), "/bin".to_string())]);
        let minimal: ExecRequest =
            serde_json::from_str(r#"{"init_pid":1,"cgroup_name":"x","command":["id"]}"#).unwrap();
        assert!(!minimal.pty && minimal.cwd.is_empty());
    }

    #[test]
    fn path_lookup_candidates() {
        let c = exec_candidates("id", "/usr/bin:/bin/:").unwrap();
        let c: Vec<&str> = c.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(c, ["/usr/bin/id", "/bin/id", "./id"]);
        assert_eq!(exec_candidates("./x", "/bin").unwrap().len(), 1);
    }

    #[test]
    fn exit_codes() {
        use nix::sys::wait::WaitStatus;
        let p = nix::unistd::Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), 3);
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, nix::sys::signal::SIGKILL, false)),
            137
        );
        assert_eq!(exec_errno_code(libc::ENOENT), 127);
        assert_eq!(exec_errno_code(libc::EACCES), 126);
        assert_eq!(exec_errno_code(libc::ENOEXEC), 126);
    }

    #[test]
    fn home_from_passwd() {
        let pw = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\nbad\n";
        assert_eq!(passwd_home(pw, 1000).as_deref(), Some("/home/user"));
        assert_eq!(passwd_home(pw, 5), None);
    }
}
