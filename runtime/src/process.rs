//! Watching a process that is not our child (pidfd), so the daemon can follow monitors it did
//! not spawn (after a restart).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

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

    #[test]
    fn pidfd_of_ourselves_works() {
        assert!(pidfd_open(std::process::id() as i32).is_ok());
        assert!(pidfd_open(-5).is_err());
    }
}
