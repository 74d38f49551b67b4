//! `lxd forkmount`: attach a disk device to, or detach it from, a running container. The
//! detached (optionally idmapped, read-only) copy of the host path is made with host privileges
//! first; then the helper joins the container's user and mount namespaces and moves it onto the
//! target, resolved inside the container's root so no symlink there can redirect it to the host.
//! Runs in the single-threaded helper process only.

use serde::{Deserialize, Serialize};
use std::os::fd::AsFd;

use nix::fcntl::OFlag;
use nix::mount::MntFlags;
use nix::sys::stat::Mode;

use crate::error::{Error, NixContext, Result};
use crate::mounts::{Kind, ensure, open_in_root};
use crate::spec::BindMount;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRequest {
    pub init_pid: i32,
    /// Attach this mount.
    #[serde(default)]
    pub mount: Option<BindMount>,
    /// Detach whatever is mounted at this path inside the container.
    #[serde(default)]
    pub unmount: Option<String>,
}

/// Runs the request and exits: 0 when done, 1 after printing the error on stderr.
pub fn forkmount(req: &MountRequest) -> ! {
    match run(req) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1)
        }
    }
}

fn run(req: &MountRequest) -> Result<()> {
    let pid = req.init_pid;
    let userns_path = format!("/proc/{pid}/ns/user");
    let userns = std::fs::File::open(&userns_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotRunning,
        _ => Error::io("open", &userns_path, e),
    })?;
    let own = std::fs::metadata("/proc/self/ns/user")
        .map_err(|e| Error::io("stat", "/proc/self/ns/user", e))?;
    use std::os::unix::fs::MetadataExt;
    let unprivileged = userns.metadata().map(|m| m.ino()).ok() != Some(own.ino());
    let detached = match &req.mount {
        Some(m) => {
            let ns = (m.idmapped && unprivileged).then(|| userns.as_fd());
            Some(crate::idmap::clone_tree(&m.source, true, ns, m.readonly)?)
        }
        None => None,
    };
    crate::files::enter(pid)?;
    let root = nix::fcntl::open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .sys_ctx("open the container's root")?;
    if let (Some(m), Some(tree)) = (&req.mount, &detached) {
        let kind = if m.file {
            Kind::File(0o644)
        } else {
            Kind::Dir(0o755)
        };
        let target = ensure(root.as_fd(), &m.target, kind)?;
        crate::sys::move_mount(tree.as_fd(), std::os::fd::AsRawFd::as_raw_fd(&target), c"")
            .map_err(|e| Error::io("mount onto", &m.target, e))?;
    }
    if let Some(path) = &req.unmount {
        // The path must exist inside the container's root (no escape through symlinks); after
        // joining its mount namespace, "/" is the container's root.
        open_in_root(root.as_fd(), path, OFlag::O_PATH | OFlag::O_CLOEXEC, 0)
            .map_err(|e| Error::io("open", path, crate::error::nix_io(e)))?;
        let p = format!("/{}", path.trim_start_matches('/'));
        nix::mount::umount2(p.as_str(), MntFlags::MNT_DETACH).sys_ctx("unmount the device")?;
    }
    Ok(())
}
