//! The one place the daemon talks to `lxd-runtime`: probing state, building the ContainerSpec
//! from an instance's expanded config, spawning `lxd forkstart`, stopping, freezing and stats.
//! Blocking runtime calls run on tokio's blocking pool.

use lxd_api::ConfigMap;
use lxd_runtime::spec::{BindMount, ContainerSpec, IdMap, Limits, RootfsIdmap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Expanded;
use crate::config::{is_true, parse_cpuset, parse_size};
use crate::daemon::Daemon;
use crate::error::{ApiError, Result};

/// What the runtime says about an instance right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Stopped,
    Running { init_pid: i32, monitor_pid: i32 },
    Frozen { init_pid: i32, monitor_pid: i32 },
}

impl RunState {
    pub fn is_active(self) -> bool {
        !matches!(self, RunState::Stopped)
    }
    /// LXD's status text and code.
    pub fn status(self) -> (&'static str, i64) {
        match self {
            RunState::Stopped => ("Stopped", 102),
            RunState::Running { .. } => ("Running", 103),
            RunState::Frozen { .. } => ("Frozen", 110),
        }
    }
    pub fn init_pid(self) -> Option<i32> {
        match self {
            RunState::Stopped => None,
            RunState::Running { init_pid, .. } | RunState::Frozen { init_pid, .. } => {
                Some(init_pid)
            }
        }
    }
    pub fn monitor_pid(self) -> Option<i32> {
        match self {
            RunState::Stopped => None,
            RunState::Running { monitor_pid, .. } | RunState::Frozen { monitor_pid, .. } => {
                Some(monitor_pid)
            }
        }
    }
}

pub fn probe(d: &Daemon, name: &str) -> RunState {
    probe_dir(&d.run_dir(name))
}

pub fn probe_dir(run_dir: &Path) -> RunState {
    use lxd_runtime::state::Probe;
    match lxd_runtime::state::probe(run_dir) {
        Probe::Stopped { .. } => RunState::Stopped,
        Probe::Running {
            init_pid,
            monitor_pid,
        } => RunState::Running {
            init_pid,
            monitor_pid,
        },
        Probe::Frozen {
            init_pid,
            monitor_pid,
        } => RunState::Frozen {
            init_pid,
            monitor_pid,
        },
    }
}

/// The cgroup directory of an instance under every hierarchy. Our own prefix, never LXD's
/// `lxc.payload.*`, so a real LXD can share the host.
pub fn cgroup_name(name: &str) -> String {
    format!("lxdrs.payload.{name}")
}

/// Convert `limits.*` keys into the runtime's limits. Values were validated on the way in.
pub fn limits(config: &ConfigMap) -> Result<Limits> {
    let mut l = Limits::default();
    if let Some(v) = config.get("limits.cpu").filter(|v| !v.is_empty()) {
        let online = online_cpus();
        if let Ok(n) = v.parse::<usize>() {
            // A count: pin to the first N online CPUs (LXD balances; we keep it simple and stable).
            let n = n.min(online.len().max(1));
            let set: Vec<String> = online.iter().take(n).map(u32::to_string).collect();
            l.cpuset = Some(set.join(","));
        } else if let Some(cpus) = parse_cpuset(v) {
            if let Some(bad) = cpus.iter().find(|c| !online.contains(c)) {
                return Err(ApiError::bad_request(format!(
                    "limits.cpu: CPU {bad} does not exist on this host"
                )));
            }
            l.cpuset = Some(v.clone());
        }
    }
    if let Some(v) = config.get("limits.cpu.allowance").filter(|v| !v.is_empty()) {
        if let Some(p) = v.strip_suffix('%') {
            // A percentage of one CPU per period, as a CFS quota (hard limit).
            let p: i64 = p.parse().unwrap_or(100);
            l.cpu_period_us = Some(100_000);
            l.cpu_quota_us = Some(p * 1000);
        } else if let Some((q, per)) = v.split_once('/') {
            let ms = |s: &str| s.trim_end_matches("ms").parse::<i64>().unwrap_or(0);
            l.cpu_quota_us = Some(ms(q) * 1000);
            l.cpu_period_us = Some(ms(per) * 1000);
        }
    }
    if let Some(v) = config.get("limits.cpu.priority").filter(|v| !v.is_empty()) {
        let prio: u64 = v.parse().unwrap_or(10);
        l.cpu_shares = Some(1024 * (prio + 1) / 11);
    }
    if let Some(v) = config.get("limits.memory").filter(|v| !v.is_empty()) {
        l.memory = if let Some(p) = v.strip_suffix('%') {
            let p: u64 = p.parse().unwrap_or(100);
            Some(host_memory() / 100 * p)
        } else {
            parse_size(v)
        };
    }
    if let Some(v) = config.get("limits.processes").filter(|v| !v.is_empty()) {
        l.processes = v.parse().ok();
    }
    Ok(l)
}

fn online_cpus() -> Vec<u32> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpuset(s.trim()))
        .unwrap_or_else(|| vec![0])
}

fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// Disk devices other than the root become bind mounts: a host path, or a custom volume of a
/// pool (`pool=P source=VOL`, prepared by `storage::volumes::prepare_disks`).
pub fn bind_mounts(d: &Daemon, expanded: &Expanded, privileged: bool) -> Result<Vec<BindMount>> {
    let mut out = Vec::new();
    for (name, dev) in &expanded.devices {
        if dev.get("type").map(String::as_str) != Some("disk") {
            continue;
        }
        let path = dev.get("path").map(String::as_str).unwrap_or("");
        if path == "/" {
            continue;
        }
        let source = dev.get("source").cloned().unwrap_or_default();
        let shift = dev
            .get("shift")
            .map(|v| crate::config::parse_bool(v).unwrap_or(false))
            .unwrap_or(true);
        if let Some(pool) = dev.get("pool").filter(|p| !p.is_empty()) {
            let (src, idmappable) = crate::storage::volumes::disk_source(d, pool, &source)
                .map_err(|e| ApiError::bad_request(format!("Device \"{name}\": {}", e.message)))?;
            out.push(BindMount {
                source: src,
                target: path.to_string(),
                readonly: is_true(dev, "readonly"),
                idmapped: !privileged && shift && idmappable,
                file: false,
            });
            continue;
        }
        let src = PathBuf::from(&source);
        let optional =
            is_true(dev, "optional") || dev.get("required").is_some_and(|v| v == "false");
        let meta = match std::fs::metadata(&src) {
            Ok(m) => m,
            Err(_) if optional => continue,
            Err(e) => {
                return Err(ApiError::bad_request(format!(
                    "Device \"{name}\": source \"{source}\" is not usable: {e}"
                )));
            }
        };
        out.push(BindMount {
            source: src,
            target: path.to_string(),
            readonly: is_true(dev, "readonly"),
            idmapped: !privileged && shift,
            file: !meta.is_dir(),
        });
    }
    out.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(out)
}

/// The environment PID 1 starts with (`environment.*` keys).
pub fn init_env(config: &ConfigMap) -> std::collections::BTreeMap<String, String> {
    config
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("environment.")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect()
}

pub fn build_spec(
    d: &Daemon,
    name: &str,
    rootfs: &Path,
    expanded: &Expanded,
    idmap: Option<IdMap>,
    rootfs_idmap: RootfsIdmap,
) -> Result<ContainerSpec> {
    let privileged = idmap.is_none();
    Ok(ContainerSpec {
        name: name.to_string(),
        rootfs: rootfs.to_path_buf(),
        idmap,
        rootfs_idmap,
        init: vec!["/sbin/init".into()],
        env: init_env(&expanded.config),
        cgroup_name: cgroup_name(name),
        limits: limits(&expanded.config)?,
        mounts: bind_mounts(d, expanded, privileged)?,
        nesting: is_true(&expanded.config, "security.nesting"),
        console_log: d.log_dir(name).join("console.log"),
        log_file: d.log_dir(name).join("lxc.log"),
        nics: vec![],
        reboot_via_daemon: false,
    })
}

/// Spawn `lxd forkstart RUN_DIR` and wait until the container's init runs (or report why not).
pub async fn forkstart(d: &Daemon, name: &str, spec: &ContainerSpec) -> Result<()> {
    let run_dir = d.run_dir(name);
    crate::daemon::create_dir_mode(&run_dir, 0o700)?;
    crate::daemon::create_dir_mode(&d.log_dir(name), 0o700)?;
    let json = serde_json::to_vec_pretty(spec)?;
    let spec_path = run_dir.join("spec.json");
    let tmp = run_dir.join(".spec.json.tmp");
    std::fs::write(&tmp, &json).map_err(|e| crate::error::io_err("write", &tmp, e))?;
    std::fs::rename(&tmp, &spec_path).map_err(|e| crate::error::io_err("write", &spec_path, e))?;
    let out = tokio::process::Command::new(&d.exe)
        .arg("forkstart")
        .arg(&run_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .map_err(|e| ApiError::internal(format!("Failed to run forkstart: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        let msg = msg.trim().lines().last().unwrap_or("unknown error").trim();
        let msg = msg.strip_prefix("Error: ").unwrap_or(msg);
        return Err(ApiError::internal(format!(
            "Failed to start instance: {msg}"
        )));
    }
    Ok(())
}

/// Attach or detach a disk device in a running container through `lxd forkmount`.
pub async fn forkmount(d: &Daemon, req: &lxd_runtime::hotplug::MountRequest) -> Result<()> {
    let out = tokio::process::Command::new(&d.exe)
        .arg("forkmount")
        .arg(serde_json::to_string(req)?)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .map_err(|e| ApiError::internal(format!("Failed to run forkmount: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(ApiError::bad_request(format!(
            "Failed to update disk devices: {msg}"
        )));
    }
    Ok(())
}

/// Rewrite the mounts recorded in a running instance's spec.json (read again on reboot).
pub fn update_spec_mounts(d: &Daemon, name: &str, mounts: Vec<BindMount>) -> Result<()> {
    let run_dir = d.run_dir(name);
    let path = run_dir.join("spec.json");
    let data = std::fs::read(&path).map_err(|e| crate::error::io_err("read", &path, e))?;
    let mut spec: ContainerSpec = serde_json::from_slice(&data)?;
    spec.mounts = mounts;
    let tmp = run_dir.join(".spec.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&spec)?)
        .map_err(|e| crate::error::io_err("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| crate::error::io_err("write", &path, e))?;
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, lxd_runtime::error::Error> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await?
        .map_err(|e| ApiError::internal(e.to_string()))
}

pub async fn request_shutdown(d: &Daemon, name: &str) -> Result<()> {
    let run_dir = d.run_dir(name);
    blocking(move || lxd_runtime::control::shutdown(&run_dir)).await
}

pub async fn kill(d: &Daemon, name: &str) -> Result<()> {
    let run_dir = d.run_dir(name);
    blocking(move || lxd_runtime::control::kill(&run_dir)).await
}

pub async fn freeze(d: &Daemon, name: &str) -> Result<()> {
    let run_dir = d.run_dir(name);
    blocking(move || lxd_runtime::control::freeze(&run_dir)).await
}

pub async fn thaw(d: &Daemon, name: &str) -> Result<()> {
    let run_dir = d.run_dir(name);
    blocking(move || lxd_runtime::control::thaw(&run_dir)).await
}

/// Wait for the instance's monitor to exit (through a pidfd, no thread parked); false on timeout.
pub async fn wait_stopped(d: &Daemon, name: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // Stopped means the monitor is gone too: it outlives init by its teardown (killing
        // what is left in the cgroups, removing them), and a start of the same name right
        // after (a restart, a move to another daemon on this host) would otherwise create its
        // cgroups only to see them removed under it.
        let Some(monitor) = probe(d, name)
            .monitor_pid()
            .or_else(|| lingering_monitor(d, name))
        else {
            return true;
        };
        let Ok(fd) = lxd_runtime::process::pidfd_open(monitor) else {
            // Gone between the probe and here.
            continue;
        };
        let Ok(afd) = crate::fdio::register(fd, tokio::io::Interest::READABLE) else {
            return false;
        };
        match tokio::time::timeout_at(deadline, afd.readable()).await {
            Ok(_) => {
                // The monitor exited; it may have been replaced by a new start in the meantime,
                // so probe again.
                if !probe(d, name).is_active() && lingering_monitor(d, name).is_none() {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
}

/// The monitor of a stopped instance that is still alive (tearing down after init's exit).
fn lingering_monitor(d: &Daemon, name: &str) -> Option<i32> {
    let st = lxd_runtime::state::read_state(&d.run_dir(name)).ok()??;
    lxd_runtime::state::pid_matches(st.monitor_pid, st.monitor_start_time).then_some(st.monitor_pid)
}

/// Apply new limits to a running instance.
pub async fn apply_limits(d: &Arc<Daemon>, name: &str, limits: Limits) -> Result<()> {
    let run_dir = d.run_dir(name);
    blocking(move || lxd_runtime::control::update_limits(&run_dir, &limits)).await
}

/// Resource usage of a running instance (processes, memory, cpu).
pub fn stats(d: &Daemon, name: &str) -> Option<lxd_runtime::cgroup::CgroupStats> {
    lxd_runtime::control::stats(&d.run_dir(name)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> ConfigMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limits_convert_like_lxd() {
        let l = limits(&cfg(&[
            ("limits.memory", "256MiB"),
            ("limits.processes", "100"),
            ("limits.cpu.allowance", "50%"),
            ("limits.cpu", "1"),
        ]))
        .unwrap();
        assert_eq!(l.memory, Some(256 * 1024 * 1024));
        assert_eq!(l.processes, Some(100));
        assert_eq!(l.cpu_quota_us, Some(50_000));
        assert_eq!(l.cpu_period_us, Some(100_000));
        assert_eq!(l.cpuset.as_deref(), Some("0"));
        let l = limits(&cfg(&[("limits.cpu.allowance", "25ms/100ms")])).unwrap();
        assert_eq!(l.cpu_quota_us, Some(25_000));
        assert!(limits(&cfg(&[("limits.cpu", "0-4095")])).is_err());
    }

    #[test]
    fn env_comes_from_environment_keys() {
        let e = init_env(&cfg(&[("environment.FOO", "bar"), ("user.x", "y")]));
        assert_eq!(e.len(), 1);
        assert_eq!(e["FOO"], "bar");
    }
}
