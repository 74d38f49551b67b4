//! Thin wrappers over the raw system calls that neither `nix` nor `std` wrap: the new mount API,
//! pidfds, fork-style clone, SCM_RIGHTS, pty ioctls. Each wrapper is one syscall and one SAFETY
//! comment; policy lives in the callers. Nothing here allocates after a fork unless it says so.

use std::ffi::{CStr, CString, OsStr};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use crate::error::{Error, Result};

/// A path as a C string; a NUL byte inside is an error naming the path.
pub(crate) fn cpath(path: impl AsRef<OsStr>) -> Result<CString> {
    let path = path.as_ref();
    CString::new(path.as_bytes()).map_err(|_| {
        Error::Invalid(format!(
            "path {} contains a NUL byte",
            Path::new(path).display()
        ))
    })
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn check_int(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// open_tree(2): with `OPEN_TREE_CLONE` a detached copy of the mount at `path`.
pub(crate) fn open_tree(dirfd: RawFd, path: &CStr, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call and the
    // kernel returns a new fd we take ownership of.
    let fd = check(unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) })?;
    // SAFETY: the syscall succeeded, so `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// mount_setattr(2) on the mount referred to by `fd` itself (AT_EMPTY_PATH).
pub(crate) fn mount_setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    attr: &libc::mount_attr,
) -> io::Result<()> {
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: the empty path is a static C string, `attr` points to a live mount_attr and the
    // size passed is exactly its size.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    })?;
    Ok(())
}

/// move_mount(2) of the detached or attached mount `from` onto `to_dirfd`/`to_path`; an empty
/// `to_path` means the target is `to_dirfd` itself.
pub(crate) fn move_mount(from: BorrowedFd<'_>, to_dirfd: RawFd, to_path: &CStr) -> io::Result<()> {
    let mut flags = libc::MOVE_MOUNT_F_EMPTY_PATH;
    if to_path.is_empty() {
        flags |= libc::MOVE_MOUNT_T_EMPTY_PATH;
    }
    // SAFETY: both paths are valid C strings that outlive the call; fds are borrowed.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            to_dirfd,
            to_path.as_ptr(),
            flags,
        )
    })?;
    Ok(())
}

/// pidfd_open(2).
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments; the result is a new fd.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the syscall succeeded, so `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// clone(2) with fork semantics (no new stack): returns 0 in the child, the child's pid in the
/// parent. `flags` may carry namespace flags; SIGCHLD is always added.
///
/// # Safety
/// As for `fork()`: if the calling process has other threads, the child may only call
/// async-signal-safe functions until it execs or exits.
pub(crate) unsafe fn clone_fork(flags: libc::c_ulong) -> io::Result<i32> {
    let flags = flags | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: with a NULL stack the child runs on a copy-on-write copy of the caller's stack,
    // exactly like fork(); the caller upholds the threading contract documented above.
    let rc = check(unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    })?;
    Ok(rc as i32)
}

/// `clone_args` of clone3(2), as far as we use it.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `CLONE_INTO_CGROUP` (Linux 5.7): the child starts in the cgroup2 directory `cgroup`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `clone_fork`, with the child born in the cgroup2 directory `cgroup` when given (clone3
/// with CLONE_INTO_CGROUP): no cgroup.procs write, whose cost is an RCU grace period for the
/// writer (7-30 ms on this host), is needed for the new process.
///
/// # Safety
/// As for `clone_fork`.
pub(crate) unsafe fn clone_fork_into(
    flags: libc::c_ulong,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<i32> {
    let Some(cg) = cgroup else {
        // SAFETY: the caller upholds clone_fork's contract.
        return unsafe { clone_fork(flags) };
    };
    let mut args = CloneArgs {
        flags: flags | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cg.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: `args` is a valid clone_args of the size passed; with no stack the child runs
    // on a copy-on-write copy of the caller's stack, like fork(); the caller upholds the
    // threading contract.
    let rc = check(unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    })?;
    Ok(rc as i32)
}

/// Marks every descriptor from `first` upwards close-on-exec.
pub(crate) fn cloexec_from(first: u32) {
    // SAFETY: close_range only changes descriptor flags; failure is harmless (old kernels).
    unsafe {
        libc::close_range(first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int);
    }
}

/// Closes every descriptor from `first` upwards except those in `keep`.
pub(crate) fn close_fds_except(first: RawFd, keep: &[RawFd]) {
    let mut lo = first;
    let mut sorted: Vec<RawFd> = keep.iter().copied().filter(|&f| f >= first).collect();
    sorted.sort_unstable();
    for k in sorted {
        if k > lo {
            // SAFETY: closes a range of descriptors that no Rust object in this (freshly forked)
            // process refers to: the caller lists every descriptor it still uses in `keep`.
            unsafe { libc::close_range(lo as u32, (k - 1) as u32, 0) };
        }
        lo = k + 1;
    }
    // SAFETY: as above.
    unsafe { libc::close_range(lo as u32, u32::MAX, 0) };
}

/// prctl(PR_SET_DUMPABLE).
pub(crate) fn set_dumpable(on: bool) {
    // SAFETY: PR_SET_DUMPABLE takes an integer and changes only this process's flag.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0);
    }
}

/// Resets every signal disposition to default and unblocks all signals, so an exec'd program
/// does not inherit our SIG_IGN for SIGPIPE or our blocked SIGCHLD.
pub(crate) fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL is always sound; errors for invalid numbers are ignored.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // SAFETY: an empty, initialised sigset is passed to sigprocmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Writes all of `buf` to `fd`, retrying on EINTR. Does not allocate (usable after fork).
pub(crate) fn write_all_fd(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads into `buf`, retrying on EINTR.
pub(crate) fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid writable slice for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        return Ok(n as usize);
    }
}

/// Sends `data` with `fds` attached (SCM_RIGHTS) on a unix socket.
pub(crate) fn send_with_fds(sock: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
        .map_err(crate::error::nix_io)?;
    Ok(())
}

/// Receives one message and any descriptors attached to it (made close-on-exec).
pub(crate) fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut cmsg_space = nix::cmsg_space!([RawFd; 16]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r.map_err(crate::error::nix_io)?,
        }
    };
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: SCM_RIGHTS installed these descriptors in our table for us alone.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
    }
    Ok((msg.bytes, fds))
}

/// TIOCSCTTY: make `fd` (a tty) the controlling terminal of our new session.
pub(crate) fn set_controlling_tty(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument; `fd` is only read by the kernel.
    check_int(unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) })?;
    Ok(())
}

/// Unlocks a pty master (unlockpt) and opens its peer with TIOCGPTPEER, so the slave is found
/// through the master's own devpts instance and never by path.
pub(crate) fn open_pty_peer(master: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which points to a live local.
    check_int(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags as an integer and returns a new fd.
    let fd = check_int(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })?;
    // SAFETY: the ioctl succeeded, so `fd` is a fresh descriptor owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// TIOCSWINSZ.
pub(crate) fn set_winsize(fd: BorrowedFd<'_>, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which points to a live local.
    check_int(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) })?;
    Ok(())
}

/// The start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat).
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_start_time(&s)
}

/// Field 22 of a /proc/PID/stat line. The comm field may hold spaces and parentheses, so fields
/// are counted from the last ')'.
pub(crate) fn parse_stat_start_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ')' comes field 3 (state); field 22 is 19 further.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The state letter of `pid` (field 3 of /proc/PID/stat), e.g. 'Z' for a zombie.
pub(crate) fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// Borrow a raw fd known to stay open for the borrow's lifetime.
///
/// # Safety
/// `fd` must be open for as long as the returned value is used.
pub(crate) unsafe fn borrow_raw<'a>(fd: RawFd) -> BorrowedFd<'a> {
    // SAFETY: forwarded to the caller.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_odd_comm() {
        let line = "1234 (we ird) proc)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat_start_time(line), Some(98765));
        assert_eq!(parse_stat_start_time("garbage"), None);
        assert_eq!(parse_stat_start_time("1 (x) S 1 2"), None);
    }

    #[test]
    fn own_start_time_is_readable() {
        let me = std::process::id() as i32;
        assert!(proc_start_time(me).is_some());
        assert!(matches!(proc_state(me), Some('R' | 'S')));
    }
}
