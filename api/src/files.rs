//! Headers of the files API (`/1.0/instances/<name>/files`; LXD `shared/util.go ParseLXDFileHeaders`).

pub const HEADER_UID: &str = "X-LXD-uid";
pub const HEADER_GID: &str = "X-LXD-gid";
pub const HEADER_MODE: &str = "X-LXD-mode";
pub const HEADER_TYPE: &str = "X-LXD-type";
pub const HEADER_WRITE: &str = "X-LXD-write";
pub const HEADER_MODIFY_PERM: &str = "X-LXD-modify-perm";
