//! lxd-runtime: runs system containers. Synchronous, no tokio: namespaces, id maps, mounts,
//! pivot_root, capabilities, seccomp, cgroups (v1 and v2), the console pty, the per-instance
//! monitor (`lxd forkstart`) and attach (`lxd forkexec`). All `unsafe` lives in this crate.

pub mod attach;
pub mod cgroup;
mod container;
pub mod control;
pub mod error;
pub mod files;
pub mod idmap;
pub mod monitor;
pub mod mounts;
pub mod seccomp;
pub mod spec;
pub mod state;
mod sys;

pub use container::{DROPPED_CAPS, init_env};
pub use monitor::forkstart;
pub use state::{Probe, RuntimeState, probe};

pub use error::{Error, Result};
pub use sys::proc_start_time;
