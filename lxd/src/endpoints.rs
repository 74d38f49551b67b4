//! Where requests come in: the unix socket `$LXD_DIR/unix.socket` (mode 0660, group from
//! `--group`; every local client is trusted, the socket permissions are the access control).
//! The HTTPS listener (trust store, client certificates) arrives with remotes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::net::UnixListener;

use crate::error::{ApiError, Result, io_err};

/// Bind the unix socket, refusing to steal it from a daemon that is still answering.
pub async fn bind_unix(path: &Path, group: Option<&str>) -> Result<UnixListener> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ApiError::conflict(format!(
                "LXD is already running (socket {} is in use)",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| io_err("remove stale socket", path, e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io_err("bind", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| io_err("set permissions on", path, e))?;
    let gid = match group {
        None | Some("") => None,
        Some(g) => Some(resolve_group(g)?),
    };
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
            ApiError::internal(format!(
                "Failed to change the group of {}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(listener)
}

fn resolve_group(name: &str) -> Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(ApiError::bad_request(format!(
            "Group \"{name}\" does not exist"
        ))),
        Err(e) => Err(ApiError::internal(format!(
            "Failed to look up group \"{name}\": {e}"
        ))),
    }
}
