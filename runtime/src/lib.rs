//! lxd-runtime: runs system containers. Synchronous, no tokio: namespaces, id maps, mounts,
//! pivot_root, capabilities, seccomp, cgroups (v1 and v2), the console pty, the per-instance
//! monitor (`lxd forkstart`) and attach (`lxd forkexec`). All `unsafe` lives in this crate.
//!
//! How the daemon uses it:
//! - writes `RUN_DIR/spec.json` (a [`spec::ContainerSpec`]) and runs `lxd forkstart RUN_DIR`,
//!   whose `main` calls [`monitor::forkstart`] before any tokio runtime exists; on `Err` it
//!   prints the error as one line and exits 1. The monitor then owns the instance.
//! - reads the instance's state with [`state::probe`] (also after a daemon restart) and acts on
//!   it with [`control`] (shutdown, reboot, kill, freeze/thaw, stats, console, wait_stopped,
//!   update_limits), from `spawn_blocking`.
//! - runs `lxd forkexec JSON` ([`attach::forkexec`], JSON = [`attach::ExecRequest`]) with the
//!   command's stdio already in place (pipes, or a pty slave from
//!   [`attach::open_container_pty`]) and, optionally, fd 3 to learn the command's host pid.
//! - runs `lxd forkfile JSON` ([`files::forkfile`], JSON = [`files::FileRequest`]): a JSON
//!   header line on stdout, then file data; file data for writes on stdin.

pub mod attach;
pub mod cgroup;
mod container;
pub mod control;
pub mod error;
pub mod files;
pub mod hotplug;
pub mod idmap;
pub mod monitor;
pub mod mounts;
pub mod process;
pub mod seccomp;
pub mod spec;
pub mod state;
mod sys;

pub use container::{DROPPED_CAPS, init_env};
pub use error::{Error, Result};
pub use monitor::forkstart;
pub use state::{Probe, RuntimeState, probe};
pub use sys::proc_start_time;
