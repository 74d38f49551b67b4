//! Small process helpers the daemon needs around its fork helpers: handing an extra file
//! descriptor to a child at a fixed number, and watching a process that is not our child
//! (pidfd), so the daemon can follow monitors it did not spawn (after a restart).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;

/// Make `fd` appear as `target` in the child spawned by `cmd` (e.g. fd 3 for a status pipe).
/// The descriptor is moved into the command and closed in the parent once the command is dropped.
pub fn pass_fd(cmd: &mut std::process::Command, fd: OwnedFd, target: RawFd) {
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec and only calls dup2/fcntl,
    // which are async-signal-safe. `fd` is kept alive by the closure (moved into it) until the
    // command is dropped, so `raw` is valid at fork time.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &fd;
            if raw == target {
                // dup2 onto itself keeps FD_CLOEXEC: clear it instead.
                let flags = libc::fcntl(raw, libc::F_GETFD);
                if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Put the child in a new session (no controlling terminal), as the monitor and exec helpers need.
pub fn new_session(cmd: &mut std::process::Command) {
    // SAFETY: setsid is async-signal-safe and touches no parent state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A pidfd for any process (it need not be our child); readable once the process exits.
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn passes_fd_three_to_child() {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let mut cmd = std::process::Command::new("/bin/sh");
        cmd.arg("-c").arg("echo hello >&3");
        pass_fd(&mut cmd, w, 3);
        let mut child = cmd.spawn().unwrap();
        drop(cmd);
        let mut s = String::new();
        std::fs::File::from(r).read_to_string(&mut s).unwrap();
        child.wait().unwrap();
        assert_eq!(s.trim(), "hello");
    }

    #[test]
    fn pidfd_of_ourselves_works() {
        assert!(pidfd_open(std::process::id() as i32).is_ok());
        assert!(pidfd_open(-5).is_err());
    }
}
