//! The one error type of the storage crate. Each variant maps to one HTTP status in the daemon:
//! `NotFound` 404, `AlreadyExists`/`Busy` 409, `NotSupported`/`Invalid` 400, the rest 500.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem call failed; names the path.
    #[error("failed to {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// An external tool (`zfs`, `btrfs`, `cp`, `mount`, ...) failed; `message` is its last stderr line.
    #[error("{command}: {message}")]
    Command { command: String, message: String },
    /// The driver cannot do this (dir quotas, zvols on zfs-fuse, ...).
    #[error("{0}")]
    NotSupported(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} not found")]
    NotFound(String),
    /// Bad config key or value, bad name, or a request the pool's state forbids.
    #[error("{0}")]
    Invalid(String),
    /// The object is in use (a mounted pool, a snapshot with dependent clones, ...).
    #[error("{0}")]
    Busy(String),
    /// The caller's image filler failed.
    #[error("failed to unpack image {fingerprint}: {message}")]
    Filler {
        fingerprint: String,
        message: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The HTTP status LXD would answer with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::AlreadyExists(_) | Error::Busy(_) => 409,
            Error::NotSupported(_) | Error::Invalid(_) => 400,
            Error::Io { .. } | Error::Command { .. } | Error::Filler { .. } => 500,
        }
    }
}

/// Shorthand for mapping `std::io::Result` with the path it touched.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &std::path::Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
