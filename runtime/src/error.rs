//! The crate's one error type. Every I/O failure names the path it touched, and every message is
//! one short sentence that `lxc` can print as is. Never put a panic where an `Error` fits.

use std::io;
use std::path::{Path, PathBuf};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation on a known path failed: "failed to write 512M to PATH: EINVAL".
    #[error("failed to {action} {}: {}", path.display(), short(source))]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A system call that has no path failed: "failed to clone the container init: EPERM".
    #[error("failed to {action}: {}", short(source))]
    Sys {
        action: String,
        #[source]
        source: io::Error,
    },
    /// A file we read has content we do not understand.
    #[error("invalid {what} in {}: {detail}", path.display())]
    Parse {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    /// The caller asked for something the spec or request does not allow.
    #[error("{0}")]
    Invalid(String),
    /// The container is not running (no live monitor or init).
    #[error("instance is not running")]
    NotRunning,
    /// The container is frozen and the request needs it running.
    #[error("instance is frozen")]
    Frozen,
    /// Text relayed from the monitor or the container's setup process.
    #[error("{0}")]
    Child(String),
    /// A wait ran out of time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
}

impl Error {
    /// An I/O error on `path`: `action` reads as a verb phrase ("read", "write 512M to").
    pub fn io(action: impl Into<String>, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            action: action.into(),
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// A failed system call, from `nix` or from `errno`.
    pub fn sys(action: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Sys {
            action: action.into(),
            source: source.into(),
        }
    }

    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Io { source, .. } | Error::Sys { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// An errno as its plain description ("Invalid argument"), without Rust's "(os error 22)".
fn short(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => nix::errno::Errno::from_raw(n).desc().to_string(),
        None => e.to_string(),
    }
}

/// `nix::Error` -> `io::Error`, for `map_err` chains.
pub(crate) fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// `Result<T, nix::Error>` helpers that attach a path or an action.
pub(crate) trait NixContext<T> {
    fn path_ctx(self, action: &str, path: &Path) -> Result<T>;
    fn sys_ctx(self, action: &str) -> Result<T>;
}

impl<T> NixContext<T> for std::result::Result<T, nix::Error> {
    fn path_ctx(self, action: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(action, path, nix_io(e)))
    }
    fn sys_ctx(self, action: &str) -> Result<T> {
        self.map_err(|e| Error::sys(action, nix_io(e)))
    }
}

/// `Result<T, io::Error>` helpers that attach a path or an action.
pub(crate) trait IoContext<T> {
    fn path_ctx(self, action: &str, path: &Path) -> Result<T>;
    fn sys_ctx(self, action: &str) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, io::Error> {
    fn path_ctx(self, action: &str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
    fn sys_ctx(self, action: &str) -> Result<T> {
        self.map_err(|e| Error::sys(action, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_names_the_path() {
        let e = Error::io(
            "write 512M to",
            "/sys/fs/cgroup/memory/lxdrs.payload.C01/memory.limit_in_bytes",
            io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert_eq!(
            e.to_string(),
            "failed to write 512M to /sys/fs/cgroup/memory/lxdrs.payload.C01/memory.limit_in_bytes: Invalid argument"
        );
        assert_eq!(e.errno(), Some(libc::EINVAL));
    }
}
