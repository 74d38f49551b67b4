//! Registering raw descriptors (pidfds, pty masters) with tokio's reactor.
//!
//! tokio deprecated `AsyncFd::new` in favour of the `unsafe fn register`, because an arbitrary
//! `AsRawFd` type may close or swap its descriptor while registered. An `OwnedFd` cannot: it owns
//! exactly one open descriptor until dropped, which is the whole safety contract, so this one
//! wrapper keeps the daemon free of `unsafe` (all `unsafe` lives in lxd-runtime).

use std::os::fd::OwnedFd;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

#[allow(deprecated)]
pub fn register(fd: OwnedFd, interest: Interest) -> std::io::Result<AsyncFd<OwnedFd>> {
    AsyncFd::with_interest(fd, interest)
}
