//! lxd-runtime: runs system containers. Synchronous, no tokio: namespaces, id maps, mounts,
//! pivot_root, capabilities, seccomp, cgroups (v1 and v2), the console pty, the per-instance
//! monitor (`lxd forkstart`) and attach (`lxd forkexec`). All `unsafe` lives in this crate.

pub mod attach;
pub mod control;
pub mod error;
pub mod idmap;
pub mod monitor;
pub mod process;
pub mod spec;
pub mod state;
