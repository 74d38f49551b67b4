//! cgroup v1 (and hybrid) backend: one directory per hierarchy, limits on the v1 controllers,
//! cgroup2 at `unified` used for `cgroup.kill` and as systemd's writable tree.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{
    CgroupManager, CgroupStats, CgroupWrite, Hierarchy, HierarchyKind, apply_writes, kill_loop,
    pids_recursive, read_trimmed, read_u64, remove_tree, write_file,
};
use crate::error::{Error, Result};
use crate::spec::Limits;

#[derive(Debug, Clone)]
pub struct V1Cgroup {
    name: String,
    hierarchies: Vec<Hierarchy>,
}

impl V1Cgroup {
    pub fn new(name: &str, hierarchies: Vec<Hierarchy>) -> Self {
        V1Cgroup {
            name: name.to_string(),
            hierarchies,
        }
    }

    /// The container's directory in the hierarchy carrying `controller`.
    pub fn controller_dir(&self, controller: &str) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.has_controller(controller))
            .map(|h| h.mountpoint.join(&self.name))
    }

    fn unified_dir(&self) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.kind == HierarchyKind::Unified)
            .map(|h| h.mountpoint.join(&self.name))
    }

    /// The hierarchy used to list processes: pids, else freezer, else any.
    fn procs_dir(&self) -> Option<PathBuf> {
        self.controller_dir("pids")
            .or_else(|| self.controller_dir("freezer"))
            .or_else(|| {
                self.hierarchies
                    .first()
                    .map(|h| h.mountpoint.join(&self.name))
            })
    }

    /// The limit writes for `limits`. `has_memsw` says whether memory.memsw.* exists (swap
    /// accounting); `parent_cpus` is the parent's cpuset.cpus, used to reset the cpuset.
    pub fn plan_limits(
        &self,
        limits: &Limits,
        has_memsw: bool,
        parent_cpus: Option<&str>,
    ) -> Vec<CgroupWrite> {
        let mut w = Vec::new();
        let mut push = |dir: &Option<PathBuf>, file: &str, value: String, required: bool| {
            if let Some(d) = dir {
                w.push(CgroupWrite {
                    path: d.join(file),
                    value,
                    required,
                });
            }
        };
        let cpuset = self.controller_dir("cpuset");
        match (&limits.cpuset, parent_cpus) {
            (Some(c), _) => push(&cpuset, "cpuset.cpus", c.clone(), true),
            (None, Some(p)) if !p.is_empty() => push(&cpuset, "cpuset.cpus", p.to_string(), false),
            _ => {}
        }
        let cpu = self.controller_dir("cpu");
        let period = limits.cpu_period_us.unwrap_or(100_000);
        push(
            &cpu,
            "cpu.cfs_period_us",
            period.to_string(),
            limits.cpu_period_us.is_some(),
        );
        push(
            &cpu,
            "cpu.cfs_quota_us",
            limits.cpu_quota_us.unwrap_or(-1).to_string(),
            limits.cpu_quota_us.is_some(),
        );
        push(
            &cpu,
            "cpu.shares",
            limits.cpu_shares.unwrap_or(1024).to_string(),
            limits.cpu_shares.is_some(),
        );
        let mem = self.controller_dir("memory");
        let mem_value = limits.memory.map_or("-1".to_string(), |m| m.to_string());
        push(
            &mem,
            "memory.limit_in_bytes",
            mem_value.clone(),
            limits.memory.is_some(),
        );
        if has_memsw {
            // Without swap beyond the limit: memsw equals the memory limit (LXD's
            // limits.memory.swap=false behaviour; this host has no swap anyway).
            push(&mem, "memory.memsw.limit_in_bytes", mem_value, false);
        }
        let pids = self.controller_dir("pids");
        push(
            &pids,
            "pids.max",
            limits
                .processes
                .map_or("max".to_string(), |n| n.to_string()),
            limits.processes.is_some(),
        );
        w
    }

    fn freezer_state(&self) -> Result<Option<String>> {
        match self.controller_dir("freezer") {
            Some(d) => Ok(Some(read_trimmed(&d.join("freezer.state"))?)),
            None => Ok(None),
        }
    }
}

impl CgroupManager for V1Cgroup {
    fn name(&self) -> &str {
        &self.name
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| h.mountpoint.join(&self.name))
            .collect()
    }

    fn create(&self) -> Result<()> {
        for h in &self.hierarchies {
            let dir = h.mountpoint.join(&self.name);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io("create cgroup", &dir, e)),
            }
            if h.has_controller("cpuset") {
                // A new v1 cpuset is empty and refuses tasks until cpus and mems are set.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    if read_trimmed(&dir.join(f))?.is_empty() {
                        let v = read_trimmed(&h.mountpoint.join(f))?;
                        write_file(&dir.join(f), &v)?;
                    }
                }
            }
            if h.has_controller("devices") {
                for w in device_writes(&dir) {
                    write_file(&w.path, &w.value)?;
                }
            }
        }
        Ok(())
    }

    fn limit_writes(&self, limits: &Limits) -> Vec<CgroupWrite> {
        let has_memsw = self
            .controller_dir("memory")
            .is_some_and(|d| d.join("memory.memsw.limit_in_bytes").exists());
        let parent_cpus = self
            .hierarchies
            .iter()
            .find(|h| h.has_controller("cpuset"))
            .and_then(|h| read_trimmed(&h.mountpoint.join("cpuset.cpus")).ok());
        self.plan_limits(limits, has_memsw, parent_cpus.as_deref())
    }

    fn apply_limits(&self, limits: &Limits) -> Result<()> {
        apply_writes(&self.limit_writes(limits))
    }

    fn attach(&self, pid: i32) -> Result<()> {
        for d in self.paths() {
            write_file(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    fn v2_path(&self) -> Option<PathBuf> {
        self.unified_dir()
    }

    fn v1_tasks_paths(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .filter(|h| h.kind != HierarchyKind::Unified)
            .map(|h| h.mountpoint.join(&self.name).join("tasks"))
            .collect()
    }

    fn delegate(&self, uid: u32, gid: u32) -> Result<()> {
        for h in &self.hierarchies {
            let d = h.mountpoint.join(&self.name);
            chown_delegated(&d, uid, gid)?;
        }
        Ok(())
    }

    fn freeze(&self) -> Result<()> {
        let Some(d) = self.controller_dir("freezer") else {
            return match self.unified_dir() {
                Some(u) => super::v2::freeze_dir(&u),
                None => Err(Error::Invalid(
                    "the freezer controller is not available".into(),
                )),
            };
        };
        let state = d.join("freezer.state");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            write_file(&state, "FROZEN")?;
            if read_trimmed(&state)? == "FROZEN" {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = write_file(&state, "THAWED");
                return Err(Error::Timeout(format!("{} to freeze", d.display())));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn thaw(&self) -> Result<()> {
        match self.controller_dir("freezer") {
            Some(d) => write_file(&d.join("freezer.state"), "THAWED"),
            None => match self.unified_dir() {
                Some(u) => write_file(&u.join("cgroup.freeze"), "0"),
                None => Err(Error::Invalid(
                    "the freezer controller is not available".into(),
                )),
            },
        }
    }

    fn is_frozen(&self) -> Result<bool> {
        match self.freezer_state()? {
            Some(s) => Ok(s == "FROZEN"),
            None => match self.unified_dir() {
                Some(u) => super::v2::is_frozen_dir(&u),
                None => Ok(false),
            },
        }
    }

    fn stats(&self) -> Result<CgroupStats> {
        let mut st = CgroupStats {
            processes: self.pids()?.len() as u64,
            ..Default::default()
        };
        if let Some(m) = self.controller_dir("memory") {
            st.memory_usage = read_u64(&m.join("memory.usage_in_bytes"))?;
            st.memory_max_usage = read_u64(&m.join("memory.max_usage_in_bytes"))?;
        }
        if let Some(c) = self.controller_dir("cpuacct") {
            st.cpu_usage_ns = read_u64(&c.join("cpuacct.usage"))?;
        }
        Ok(st)
    }

    fn pids(&self) -> Result<Vec<i32>> {
        match self.procs_dir() {
            Some(d) => pids_recursive(&d),
            None => Ok(Vec::new()),
        }
    }

    fn kill_all(&self) -> Result<()> {
        if let Some(u) = self.unified_dir() {
            let kill = u.join("cgroup.kill");
            if kill.exists() {
                let _ = write_file(&kill, "1");
            }
        }
        // A frozen v1 task only dies once thawed; v1 has no cgroup.kill, so signal each pid.
        let freezer = self.controller_dir("freezer");
        kill_loop(&|| self.pids(), &|| {
            if let Some(f) = &freezer {
                let _ = write_file(&f.join("freezer.state"), "THAWED");
            }
        })
    }

    fn remove(&self) -> Result<()> {
        let mut first_err = None;
        for d in self.paths() {
            if let Err(e) = remove_tree(&d) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// LXD's default device policy (its lxc.cgroup.devices.* defaults): deny everything, then allow
/// mknod of any node, the standard character devices, ptys, fuse and tun. Without it a
/// privileged container could mknod and open the host's disks.
pub const DEVICE_ALLOW: &[&str] = &[
    "b *:* m",
    "c *:* m",
    "c 136:* rwm",  // /dev/pts/*
    "c 1:3 rwm",    // null
    "c 1:5 rwm",    // zero
    "c 1:7 rwm",    // full
    "c 1:8 rwm",    // random
    "c 1:9 rwm",    // urandom
    "c 5:0 rwm",    // tty
    "c 5:1 rwm",    // console
    "c 5:2 rwm",    // ptmx
    "c 10:229 rwm", // fuse
    "c 10:200 rwm", // net/tun
];

/// The devices.deny/allow writes for a container's devices cgroup `dir`, in order.
pub fn device_writes(dir: &Path) -> Vec<CgroupWrite> {
    let w = |file: &str, value: &str| CgroupWrite {
        path: dir.join(file),
        value: value.to_string(),
        required: true,
    };
    let mut out = vec![w("devices.deny", "a")];
    out.extend(DEVICE_ALLOW.iter().map(|rule| w("devices.allow", rule)));
    out
}

/// chown the cgroup directory and the files a nested init writes (LXC's chown_cgroup list).
pub(crate) fn chown_delegated(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    let own = |p: &Path| -> Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))
            .map_err(|e| Error::io(format!("chown {uid}:{gid}"), p, e))
    };
    own(dir)?;
    for f in [
        "cgroup.procs",
        "tasks",
        "cgroup.subtree_control",
        "cgroup.threads",
        "cgroup.clone_children",
        "notify_on_release",
    ] {
        let p = dir.join(f);
        if p.exists() {
            own(&p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> V1Cgroup {
        let h = |m: &str, k: HierarchyKind| Hierarchy {
            mountpoint: PathBuf::from(m),
            kind: k,
        };
        let c = |n: &str| HierarchyKind::Controllers(vec![n.to_string()]);
        V1Cgroup::new(
            "lxdrs.payload.C01",
            vec![
                h("/sys/fs/cgroup/cpu", c("cpu")),
                h("/sys/fs/cgroup/cpuset", c("cpuset")),
                h("/sys/fs/cgroup/memory", c("memory")),
                h("/sys/fs/cgroup/pids", c("pids")),
                h("/sys/fs/cgroup/freezer", c("freezer")),
                h(
                    "/sys/fs/cgroup/systemd",
                    HierarchyKind::Named("systemd".into()),
                ),
                h("/sys/fs/cgroup/unified", HierarchyKind::Unified),
            ],
        )
    }

    fn as_pairs(w: &[CgroupWrite]) -> Vec<(String, String, bool)> {
        w.iter()
            .map(|w| (w.path.display().to_string(), w.value.clone(), w.required))
            .collect()
    }

    #[test]
    fn paths_cover_every_hierarchy() {
        let cg = hybrid();
        assert_eq!(cg.paths().len(), 7);
        assert_eq!(
            cg.controller_dir("memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/lxdrs.payload.C01")
        );
        assert_eq!(cg.controller_dir("blkio"), None);
    }

    #[test]
    fn limits_as_writes() {
        let cg = hybrid();
        let limits = Limits {
            cpuset: Some("1".into()),
            cpu_quota_us: Some(50_000),
            cpu_period_us: None,
            cpu_shares: Some(512),
            memory: Some(512 << 20),
            processes: Some(100),
        };
        let p = "/sys/fs/cgroup";
        let n = "lxdrs.payload.C01";
        assert_eq!(
            as_pairs(&cg.plan_limits(&limits, true, Some("0-1"))),
            vec![
                (format!("{p}/cpuset/{n}/cpuset.cpus"), "1".into(), true),
                (
                    format!("{p}/cpu/{n}/cpu.cfs_period_us"),
                    "100000".into(),
                    false
                ),
                (
                    format!("{p}/cpu/{n}/cpu.cfs_quota_us"),
                    "50000".into(),
                    true
                ),
                (format!("{p}/cpu/{n}/cpu.shares"), "512".into(), true),
                (
                    format!("{p}/memory/{n}/memory.limit_in_bytes"),
                    "536870912".into(),
                    true
                ),
                (
                    format!("{p}/memory/{n}/memory.memsw.limit_in_bytes"),
                    "536870912".into(),
                    false
                ),
                (format!("{p}/pids/{n}/pids.max"), "100".into(), true),
            ]
        );
    }

    #[test]
    fn device_policy_denies_first() {
        let w = device_writes(Path::new("/sys/fs/cgroup/devices/x"));
        assert_eq!(
            w[0].path,
            Path::new("/sys/fs/cgroup/devices/x/devices.deny")
        );
        assert_eq!(w[0].value, "a");
        assert!(w[1..].iter().all(|w| w.path.ends_with("devices.allow")));
        assert!(w.iter().any(|w| w.value == "c 136:* rwm"));
        assert!(
            !w.iter()
                .any(|w| w.value.starts_with("b ") && w.value.contains('r'))
        );
    }

    #[test]
    fn no_limits_resets_to_unlimited() {
        let cg = hybrid();
        let w = as_pairs(&cg.plan_limits(&Limits::default(), false, Some("0-1")));
        assert!(w.iter().all(|(_, _, req)| !req));
        let vals: Vec<&str> = w.iter().map(|(_, v, _)| v.as_str()).collect();
        assert_eq!(vals, ["0-1", "100000", "-1", "1024", "-1", "max"]);
    }
}
