//! Pure cgroup v2 backend: one directory under the unified root, controllers enabled in the
//! root's subtree_control, freeze via cgroup.freeze and kill via cgroup.kill.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    CgroupManager, CgroupStats, CgroupWrite, apply_writes, kill_loop, pids_recursive, read_trimmed,
    remove_tree, shares_to_weight, write_file,
};
use crate::error::{Error, Result};
use crate::spec::Limits;

/// The controllers a container gets on a pure v2 host.
const CONTROLLERS: &[&str] = &["cpuset", "cpu", "io", "memory", "pids"];

#[derive(Debug, Clone)]
pub struct V2Cgroup {
    name: String,
    root: PathBuf,
}

impl V2Cgroup {
    pub fn new(name: &str, root: PathBuf) -> Self {
        V2Cgroup {
            name: name.to_string(),
            root,
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// The limit writes for `limits`, as data.
    pub fn plan_limits(&self, limits: &Limits) -> Vec<CgroupWrite> {
        let d = self.dir();
        let w = |file: &str, value: String, required: bool| CgroupWrite {
            path: d.join(file),
            value,
            required,
        };
        let period = limits.cpu_period_us.unwrap_or(100_000);
        let quota = limits
            .cpu_quota_us
            .filter(|q| *q > 0)
            .map_or("max".to_string(), |q| q.to_string());
        vec![
            // An empty cpuset.cpus in v2 means "inherit the parent's".
            w(
                "cpuset.cpus",
                limits.cpuset.clone().unwrap_or_default(),
                limits.cpuset.is_some(),
            ),
            w(
                "cpu.max",
                format!("{quota} {period}"),
                limits.cpu_quota_us.is_some(),
            ),
            w(
                "cpu.weight",
                limits.cpu_shares.map_or(100, shares_to_weight).to_string(),
                limits.cpu_shares.is_some(),
            ),
            w(
                "memory.max",
                limits.memory.map_or("max".to_string(), |m| m.to_string()),
                limits.memory.is_some(),
            ),
            w(
                "pids.max",
                limits
                    .processes
                    .map_or("max".to_string(), |n| n.to_string()),
                limits.processes.is_some(),
            ),
        ]
    }
}

impl CgroupManager for V2Cgroup {
    fn name(&self) -> &str {
        &self.name
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir()]
    }

    fn create(&self) -> Result<()> {
        // Enable what the root offers for its children; a controller that cannot be enabled
        // (bound to v1 elsewhere) is simply not available to limits.
        let available = read_trimmed(&self.root.join("cgroup.controllers")).unwrap_or_default();
        let enabled = read_trimmed(&self.root.join("cgroup.subtree_control")).unwrap_or_default();
        for c in CONTROLLERS {
            let on = |s: &str| s.split_whitespace().any(|x| x == *c);
            if on(&available) && !on(&enabled) {
                let _ = write_file(&self.root.join("cgroup.subtree_control"), &format!("+{c}"));
            }
        }
        let dir = self.dir();
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io("create cgroup", &dir, e)),
        }
    }

    fn limit_writes(&self, limits: &Limits) -> Vec<CgroupWrite> {
        self.plan_limits(limits)
    }

    fn apply_limits(&self, limits: &Limits) -> Result<()> {
        apply_writes(&self.plan_limits(limits))
    }

    fn attach(&self, pid: i32) -> Result<()> {
        write_file(&self.dir().join("cgroup.procs"), &pid.to_string())
    }

    fn v2_path(&self) -> Option<PathBuf> {
        Some(self.dir())
    }

    fn v1_tasks_paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn delegate(&self, uid: u32, gid: u32) -> Result<()> {
        super::v1::chown_delegated(&self.dir(), uid, gid)
    }

    fn freeze(&self) -> Result<()> {
        freeze_dir(&self.dir())
    }

    fn thaw(&self) -> Result<()> {
        write_file(&self.dir().join("cgroup.freeze"), "0")
    }

    fn is_frozen(&self) -> Result<bool> {
        is_frozen_dir(&self.dir())
    }

    fn stats(&self) -> Result<CgroupStats> {
        let d = self.dir();
        let num = |f: &str| -> u64 {
            read_trimmed(&d.join(f))
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        let cpu_usec = read_trimmed(&d.join("cpu.stat"))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("usage_usec ")
                        .and_then(|v| v.parse::<u64>().ok())
                })
            })
            .unwrap_or(0);
        Ok(CgroupStats {
            processes: self.pids()?.len() as u64,
            memory_usage: num("memory.current"),
            memory_max_usage: num("memory.peak"),
            cpu_usage_ns: cpu_usec * 1000,
        })
    }

    fn pids(&self) -> Result<Vec<i32>> {
        pids_recursive(&self.dir())
    }

    fn kill_all(&self) -> Result<()> {
        let kill = self.dir().join("cgroup.kill");
        if kill.exists() {
            let _ = write_file(&kill, "1");
        }
        kill_loop(&|| self.pids(), &|| {})
    }

    fn remove(&self) -> Result<()> {
        remove_tree(&self.dir())
    }
}

/// Freezes a cgroup2 directory and waits until cgroup.events says `frozen 1`.
pub(crate) fn freeze_dir(dir: &Path) -> Result<()> {
    write_file(&dir.join("cgroup.freeze"), "1")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !is_frozen_dir(dir)? {
        if Instant::now() > deadline {
            let _ = write_file(&dir.join("cgroup.freeze"), "0");
            return Err(Error::Timeout(format!("{} to freeze", dir.display())));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

pub(crate) fn is_frozen_dir(dir: &Path) -> Result<bool> {
    let ev = read_trimmed(&dir.join("cgroup.events"))?;
    Ok(ev.lines().any(|l| l.trim() == "frozen 1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_as_writes() {
        let cg = V2Cgroup::new("lxdrs.payload.C01", PathBuf::from("/sys/fs/cgroup"));
        let limits = Limits {
            cpuset: None,
            cpu_quota_us: Some(25_000),
            cpu_period_us: Some(50_000),
            cpu_shares: Some(1024),
            memory: Some(1 << 30),
            processes: None,
        };
        let w: Vec<(String, String, bool)> = cg
            .plan_limits(&limits)
            .into_iter()
            .map(|w| (w.path.display().to_string(), w.value, w.required))
            .collect();
        let d = "/sys/fs/cgroup/lxdrs.payload.C01";
        assert_eq!(
            w,
            vec![
                (format!("{d}/cpuset.cpus"), String::new(), false),
                (format!("{d}/cpu.max"), "25000 50000".into(), true),
                (format!("{d}/cpu.weight"), "39".into(), true),
                (format!("{d}/memory.max"), "1073741824".into(), true),
                (format!("{d}/pids.max"), "max".into(), false),
            ]
        );
        let reset = cg.plan_limits(&Limits::default());
        assert_eq!(reset[1].value, "max 100000");
    }
}
