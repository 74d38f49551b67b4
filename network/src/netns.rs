//! Looking inside a container's network namespace: its interfaces and addresses for
//! `state.network`, bringing its NICs up, removing one on hot-unplug. Each call runs on a fresh
//! thread that joins the namespace with setns(CLONE_NEWNET) (per thread, allowed in a
//! multi-threaded process; a mount namespace never is) and exits afterwards, so no thread is ever
//! left in the wrong namespace.

use std::future::Future;
use std::os::fd::AsFd;
use std::pin::Pin;

use crate::link::{Address, Link, Netlink};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to open /proc/{pid}/ns/net: {source}")]
    Open { pid: i32, source: std::io::Error },
    #[error("failed to enter the network namespace of {pid}: {source}")]
    Setns { pid: i32, source: nix::Error },
    #[error("failed to start a thread for the network namespace of {0}")]
    Thread(i32),
    #[error(transparent)]
    Link(#[from] crate::link::Error),
}

/// Move the calling thread into the network namespace of `pid`. Only for threads that are
/// dedicated to that namespace for the rest of their life.
pub fn enter(pid: i32) -> Result<(), Error> {
    let f = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|source| Error::Open { pid, source })?;
    // Already there (a relay for a process of our own namespace): nothing to do, and no
    // privilege needed.
    if same_file(&f, "/proc/thread-self/ns/net") {
        return Ok(());
    }
    nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|source| Error::Setns { pid, source })
}

fn same_file(f: &std::fs::File, other: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (f.metadata(), std::fs::metadata(other)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

type BoxFut<T> = Pin<Box<dyn Future<Output = Result<T, Error>>>>;

/// Run `f` with a netlink connection opened inside the network namespace of `pid`.
pub fn with_netlink<T, F>(pid: i32, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce(Netlink) -> BoxFut<T> + Send + 'static,
{
    std::thread::Builder::new()
        .name(format!("netns-{pid}"))
        .spawn(move || -> Result<T, Error> {
            enter(pid)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
                .map_err(|_| Error::Thread(pid))?;
            rt.block_on(async move {
                let nl = Netlink::new()?;
                f(nl).await
            })
        })
        .map_err(|_| Error::Thread(pid))?
        .join()
        .map_err(|_| Error::Thread(pid))?
}

/// Interfaces of the container with their addresses.
pub fn interfaces(pid: i32) -> Result<Vec<(Link, Vec<Address>)>, Error> {
    with_netlink(pid, |nl| {
        Box::pin(async move {
            let links = nl.links().await?;
            let addrs = nl.addresses(None).await?;
            Ok(links
                .into_iter()
                .map(|l| {
                    let a = addrs
                        .iter()
                        .filter(|a| a.index == l.index)
                        .cloned()
                        .collect();
                    (l, a)
                })
                .collect())
        })
    })
}

/// Bring these interfaces up inside the container (liblxc's `flags = up` for a NIC).
pub fn set_up(pid: i32, names: Vec<String>) -> Result<(), Error> {
    with_netlink(pid, |nl| {
        Box::pin(async move {
            for n in names {
                let l = nl.require(&n).await?;
                nl.set_up(l.index, &n).await?;
            }
            Ok(())
        })
    })
}

/// Delete an interface inside the container (hot-unplug of a NIC without a host end).
pub fn delete_link(pid: i32, name: String) -> Result<bool, Error> {
    with_netlink(pid, |nl| {
        Box::pin(async move { Ok(nl.delete_by_name(&name).await?) })
    })
}
