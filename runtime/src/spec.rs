//! What the daemon asks the runtime to run: one JSON file per instance, written by the daemon to
//! `<run_dir>/spec.json` before `lxd forkstart <run_dir>`, re-read by the monitor on reboot.
//! Everything here is plain data so the daemon can build and unit-test it without root.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One contiguous id range mapped into a user namespace (`/proc/PID/uid_map` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    /// First id inside the container.
    pub ns_id: u32,
    /// First id on the host.
    pub host_id: u32,
    pub count: u32,
}

/// The id maps of an unprivileged container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IdMap {
    pub uid: Vec<IdRange>,
    pub gid: Vec<IdRange>,
}

/// How the rootfs on disk relates to the container's ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootfsIdmap {
    /// Privileged container, or files already shifted on disk: bind-mount as is.
    None,
    /// Files on disk are owned by container ids (0..): present them through an idmapped mount.
    IdmappedMount,
}

/// A host path mounted into the container (a `disk` device, later also custom volumes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    pub readonly: bool,
    /// Present host ids through the container's id map (idmapped mount) rather than as they are.
    pub idmapped: bool,
    /// Create the target as a file (not a directory) when it is missing.
    pub file: bool,
}

/// Resource limits, already validated and converted by the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `cpuset.cpus` syntax, e.g. "0-1" or "1".
    pub cpuset: Option<String>,
    /// CFS quota and period in microseconds (`limits.cpu.allowance`).
    pub cpu_quota_us: Option<i64>,
    pub cpu_period_us: Option<i64>,
    /// Relative weight (`cpu.shares` on v1; converted to `cpu.weight` on v2).
    pub cpu_shares: Option<u64>,
    /// Bytes.
    pub memory: Option<u64>,
    pub processes: Option<u64>,
}

/// Everything needed to start one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// Instance name; also the UTS hostname.
    pub name: String,
    /// The rootfs directory on the host (already mounted by the storage driver).
    pub rootfs: PathBuf,
    /// `None` for a privileged container.
    pub idmap: Option<IdMap>,
    pub rootfs_idmap: RootfsIdmap,
    /// The command run as PID 1, e.g. ["/sbin/init"].
    pub init: Vec<String>,
    /// Environment of PID 1 (`container=lxc` is always added).
    pub env: BTreeMap<String, String>,
    /// The cgroup directory name under every hierarchy, e.g. "lxdrs.payload.C01".
    pub cgroup_name: String,
    pub limits: Limits,
    pub mounts: Vec<BindMount>,
    /// `security.nesting`: allow mounting proc/sys inside (keeps /proc/sys writable paths as LXD).
    pub nesting: bool,
    /// Where the monitor appends the console output (ring-limited by the monitor).
    pub console_log: PathBuf,
    /// Where the monitor writes its own diagnostic log (`lxc info --show-log`).
    pub log_file: PathBuf,
    /// Pre-created network interfaces on the host to move into the container's netns
    /// (host-side name -> name inside). Filled by the networking issue.
    pub nics: Vec<Nic>,
    /// Leave a reboot from inside to the daemon (it recreates host-side NICs and re-renders the
    /// spec): the monitor records the stop reason `reboot` and exits instead of restarting init.
    #[serde(default)]
    pub reboot_via_daemon: bool,
}

/// A veth end (or other link) that the monitor moves into the container's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    pub host_name: String,
    pub name: String,
}
