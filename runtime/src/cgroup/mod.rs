//! Container cgroups: layout detection (hybrid/v1 or pure v2), one `CgroupManager` per backend,
//! limit values computed as data first. We only ever create, change and remove the directory
//! named by the spec's `cgroup_name` (e.g. `lxdrs.payload.C01`); never LXD's `lxc.payload.*`.

mod v1;
mod v2;

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::spec::Limits;

pub use v1::V1Cgroup;
pub use v2::V2Cgroup;

/// The cgroup filesystem root on every supported host.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One mounted cgroup hierarchy on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    pub kind: HierarchyKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HierarchyKind {
    /// A v1 hierarchy carrying these controllers (usually one on this host).
    Controllers(Vec<String>),
    /// A v1 hierarchy without controllers, e.g. `name=systemd`.
    Named(String),
    /// The cgroup2 hierarchy (at /sys/fs/cgroup/unified on a hybrid host).
    Unified,
}

impl Hierarchy {
    pub fn has_controller(&self, c: &str) -> bool {
        matches!(&self.kind, HierarchyKind::Controllers(cs) if cs.iter().any(|x| x == c))
    }
}

/// How the host mounts its cgroups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// Legacy or hybrid: controllers on v1 hierarchies, maybe cgroup2 at `unified`.
    V1(Vec<Hierarchy>),
    /// Pure cgroup2 at this mountpoint.
    V2(PathBuf),
}

/// Usage counters of one container.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupStats {
    pub processes: u64,
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    pub cpu_usage_ns: u64,
}

/// One value to write into one cgroup file. `required` is false for defaults that only reset a
/// limit; a missing file is then not an error (the controller is absent and nothing is lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupWrite {
    pub path: PathBuf,
    pub value: String,
    pub required: bool,
}

/// What the runtime does with a container's cgroups, whatever the host layout.
pub trait CgroupManager: std::fmt::Debug {
    /// The directory name under every hierarchy.
    fn name(&self) -> &str;
    /// The container's directory in every hierarchy.
    fn paths(&self) -> Vec<PathBuf>;
    /// Whether the container's cgroup exists (in any hierarchy).
    fn exists(&self) -> bool {
        self.paths().iter().any(|p| p.is_dir())
    }
    /// Creates the directories (idempotent) and prepares them (cpuset, controllers).
    fn create(&self) -> Result<()>;
    /// The writes `apply_limits` would do, as data.
    fn limit_writes(&self, limits: &Limits) -> Vec<CgroupWrite>;
    /// Applies `limits`; `None` resets a limit to unlimited, so this also updates a live one.
    fn apply_limits(&self, limits: &Limits) -> Result<()> {
        apply_writes(&self.limit_writes(limits))
    }
    /// Moves `pid` into the container cgroup of every hierarchy.
    fn attach(&self, pid: i32) -> Result<()>;
    /// The container's cgroup2 directory (`unified` on a hybrid host), if there is one.
    fn v2_path(&self) -> Option<PathBuf>;
    /// The container's `tasks` file in every v1 hierarchy (none on a pure v2 host).
    fn v1_tasks_paths(&self) -> Vec<PathBuf>;
    /// How a new process joins the container's cgroups without a cgroup.procs write
    /// (`JoinPlan`); the files are opened here, by the privileged caller.
    fn join_plan(&self) -> Result<JoinPlan> {
        let v2_dir = match self.v2_path() {
            Some(d) => Some(open_dir(&d)?),
            None => None,
        };
        let v1_tasks = self
            .v1_tasks_paths()
            .iter()
            .map(|p| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .map(OwnedFd::from)
                    .path_ctx("open", p)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(JoinPlan { v2_dir, v1_tasks })
    }
    /// The cgroup2 leaf for exec'd commands, created on demand: used when the container's
    /// init enabled controllers for its children, so that processes may only live in leaves
    /// (no internal processes rule), as LXC's `.lxc`.
    fn exec_leaf(&self) -> Result<Option<OwnedFd>> {
        let Some(dir) = self.v2_path() else {
            return Ok(None);
        };
        let leaf = dir.join(".lxc");
        match std::fs::create_dir(&leaf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create cgroup", &leaf, e)),
        }
        open_dir(&leaf).map(Some)
    }
    /// Hands the directories to the container's root so its init can create sub-cgroups.
    fn delegate(&self, uid: u32, gid: u32) -> Result<()>;
    fn freeze(&self) -> Result<()>;
    fn thaw(&self) -> Result<()>;
    fn is_frozen(&self) -> Result<bool>;
    fn stats(&self) -> Result<CgroupStats>;
    /// Every pid in the container cgroup and its descendants.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Kills every process in the cgroup (including sub-cgroups) and waits until it is empty.
    fn kill_all(&self) -> Result<()>;
    /// Removes the directories, deepest first. Missing directories are fine.
    fn remove(&self) -> Result<()>;
}

/// Checks that `name` is a single, safe path component and is not LXD's.
pub fn validate_name(name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '+'));
    if name.is_empty() || name == "." || name == ".." || !ok_chars || name.len() > 200 {
        return Err(Error::Invalid(format!("invalid cgroup name {name:?}")));
    }
    if name.starts_with("lxc.") {
        return Err(Error::Invalid(format!(
            "cgroup name {name:?} belongs to LXD; use the lxdrs. prefix"
        )));
    }
    Ok(())
}

/// The host layout, detected once per process: statfs magic of /sys/fs/cgroup, then the
/// hierarchies listed in /proc/self/mountinfo.
pub fn layout() -> Result<&'static Layout> {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    if let Some(l) = LAYOUT.get() {
        return Ok(l);
    }
    let l = detect_layout()?;
    Ok(LAYOUT.get_or_init(|| l))
}

fn detect_layout() -> Result<Layout> {
    let root = Path::new(CGROUP_ROOT);
    let fs = nix::sys::statfs::statfs(root)
        .map_err(|e| Error::io("statfs", root, crate::error::nix_io(e)))?;
    if fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Ok(Layout::V2(root.to_path_buf()));
    }
    let mi = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(mi).path_ctx("read", mi)?;
    let hs = parse_mountinfo(&text);
    if hs.is_empty() {
        return Err(Error::Invalid(format!(
            "no cgroup hierarchy is mounted under {CGROUP_ROOT}"
        )));
    }
    Ok(Layout::V1(hs))
}

/// The manager for `cgroup_name` on this host.
pub fn open(cgroup_name: &str) -> Result<Box<dyn CgroupManager>> {
    validate_name(cgroup_name)?;
    Ok(match layout()? {
        Layout::V1(hs) => Box::new(V1Cgroup::new(cgroup_name, hs.clone())),
        Layout::V2(root) => Box::new(V2Cgroup::new(cgroup_name, root.clone())),
    })
}

/// How a new process enters a container's cgroups without anybody writing its pid to a
/// `cgroup.procs` file: every such write makes the writer wait for an RCU grace period (the
/// global cgroup_threadgroup_rwsem; 7-30 ms on this host), which was the largest part of a
/// start and a good part of an exec. Instead the process is cloned straight into the cgroup2
/// directory (`sys::clone_fork_into`, CLONE_INTO_CGROUP) and, on a hybrid host, writes "0" to
/// the `tasks` file of every v1 hierarchy itself: that moves only the calling thread and takes
/// no global lock. The files are opened by the privileged parent, whose credentials the kernel
/// checks, so the write also works from inside the container's user namespace.
#[derive(Debug)]
pub struct JoinPlan {
    /// The container's cgroup2 directory, for CLONE_INTO_CGROUP.
    pub v2_dir: Option<OwnedFd>,
    /// The container's `tasks` file in every v1 hierarchy, opened for writing.
    pub v1_tasks: Vec<OwnedFd>,
}

impl JoinPlan {
    /// Moves the calling thread into the v1 cgroups. Only write(2): safe in a freshly cloned
    /// child. The caller must be single-threaded (other threads would stay behind).
    pub fn join_v1_self(&self) -> std::io::Result<()> {
        join_v1_self(&self.v1_tasks)
    }
}

/// Writes "0" (the calling thread) to each `tasks` file.
fn join_v1_self(tasks: &[OwnedFd]) -> std::io::Result<()> {
    for fd in tasks {
        // SAFETY: writing a 1-byte buffer to an open descriptor.
        let n = unsafe { libc::write(fd.as_raw_fd(), c"0".as_ptr().cast(), 1) };
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
        .map(OwnedFd::from)
        .path_ctx("open", dir)
}

/// Moves the calling, single-threaded process into the root cgroup of every v1 hierarchy (the
/// monitor lives there, outside both the daemon's cgroups and the container's): "0" to each
/// root's `tasks`, no grace period to wait for.
pub fn enter_v1_roots() -> Result<()> {
    let Layout::V1(hs) = layout()? else {
        return Ok(());
    };
    let mut tasks = Vec::new();
    for h in hs.iter().filter(|h| h.kind != HierarchyKind::Unified) {
        let p = h.mountpoint.join("tasks");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .path_ctx("open", &p)?;
        tasks.push(OwnedFd::from(f));
    }
    join_v1_self(&tasks)
        .map_err(|e| Error::io("join the v1 root cgroups via", Path::new(CGROUP_ROOT), e))
}

/// Moves `pid` into the root of the cgroup2 hierarchy (outside the daemon's systemd unit). A
/// cgroup.procs write: the caller waits for a grace period, so the monitor does it once its
/// container runs.
pub fn move_to_v2_root(pid: i32) -> Result<()> {
    let root = match layout()? {
        Layout::V1(hs) => match hs.iter().find(|h| h.kind == HierarchyKind::Unified) {
            Some(h) => h.mountpoint.clone(),
            None => return Ok(()),
        },
        Layout::V2(root) => root.clone(),
    };
    write_file(&root.join("cgroup.procs"), &pid.to_string())
}

/// Parses /proc/self/mountinfo into the cgroup hierarchies mounted under /sys/fs/cgroup (first
/// mount of each hierarchy wins; bind mounts of sub-cgroups are skipped).
pub fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    let mut seen = HashSet::new();
    for line in text.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        if pre.len() < 5 || post.len() < 3 {
            continue;
        }
        let (root, mountpoint) = (pre[3], unescape_mountinfo(pre[4]));
        if root != "/" || !mountpoint.starts_with(CGROUP_ROOT) {
            continue;
        }
        let kind = match post[0] {
            "cgroup2" => HierarchyKind::Unified,
            "cgroup" => {
                let opts: Vec<&str> = post[2].split(',').collect();
                let mut ctrls: Vec<String> = opts
                    .iter()
                    .filter(|o| V1_CONTROLLERS.contains(o))
                    .map(|o| o.to_string())
                    .collect();
                if ctrls.is_empty() {
                    match opts.iter().find_map(|o| o.strip_prefix("name=")) {
                        Some(n) => HierarchyKind::Named(n.to_string()),
                        None => continue,
                    }
                } else {
                    ctrls.sort();
                    HierarchyKind::Controllers(ctrls)
                }
            }
            _ => continue,
        };
        if seen.insert(kind.clone()) {
            out.push(Hierarchy {
                mountpoint: PathBuf::from(mountpoint),
                kind,
            });
        }
    }
    out
}

const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// cgroup v1 `cpu.shares` to v2 `cpu.weight` (the conversion runc, crun and systemd use).
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// Writes `value` to a cgroup file; the error names value and path.
pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|e| Error::io(format!("write {value} to"), path, e))
}

pub(crate) fn read_trimmed(path: &Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .path_ctx("read", path)?
        .trim()
        .to_string())
}

pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let s = read_trimmed(path)?;
    s.parse().map_err(|_| Error::Parse {
        what: "counter",
        path: path.to_path_buf(),
        detail: format!("{s:?} is not a number"),
    })
}

/// Applies writes in order; writes that fail are retried once after the others, which settles
/// order dependencies (memsw must stay >= limit, a cfs quota must fit its period).
pub(crate) fn apply_writes(writes: &[CgroupWrite]) -> Result<()> {
    let mut failed = Vec::new();
    for w in writes {
        if !w.path.exists() {
            if w.required {
                return Err(Error::Invalid(format!(
                    "cannot apply limit: {} does not exist (controller not available)",
                    w.path.display()
                )));
            }
            continue;
        }
        if write_file(&w.path, &w.value).is_err() {
            failed.push(w);
        }
    }
    for w in failed {
        write_file(&w.path, &w.value)?;
    }
    Ok(())
}

/// Pids in `dir`'s cgroup.procs and every sub-cgroup's.
pub(crate) fn pids_recursive(dir: &Path) -> Result<Vec<i32>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let procs = d.join("cgroup.procs");
        match std::fs::read_to_string(&procs) {
            Ok(s) => out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read", &procs, e)),
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for ent in rd.flatten() {
                if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(ent.path());
                }
            }
        }
    }
    Ok(out)
}

/// Removes `dir` and its sub-cgroups deepest first, retrying EBUSY for a short while (a task
/// that was just killed leaves its cgroup a moment after it is reaped).
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    // Collect all directories, parents before children, then remove in reverse.
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if let Ok(rd) = std::fs::read_dir(&all[i]) {
            for ent in rd.flatten() {
                if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    all.push(ent.path());
                }
            }
        }
        i += 1;
    }
    for d in all.iter().rev() {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match std::fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::io("remove cgroup", d, e)),
            }
        }
    }
    Ok(())
}

/// SIGKILLs every pid listed by `list` until the list is empty (bounded to a few seconds).
/// `after_round` runs after each round (used to thaw a frozen v1 cgroup so the kills land).
pub(crate) fn kill_loop(list: &dyn Fn() -> Result<Vec<i32>>, after_round: &dyn Fn()) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pids = list()?;
        if pids.is_empty() {
            return Ok(());
        }
        for p in &pids {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), nix::sys::signal::SIGKILL);
        }
        after_round();
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "{} processes to die after SIGKILL",
                pids.len()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 24 0:26 / /sys/fs/cgroup rw,relatime shared:5 - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:6 - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime shared:7 - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/cpuset rw,relatime shared:8 - cgroup cgroup rw,cpuset
34 30 0:30 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/freezer rw,relatime shared:10 - cgroup cgroup rw,freezer
36 30 0:32 / /sys/fs/cgroup/pids rw,relatime shared:11 - cgroup cgroup rw,pids
37 30 0:33 / /sys/fs/cgroup/systemd rw,relatime shared:12 - cgroup cgroup rw,xattr,name=systemd
38 30 0:34 / /sys/fs/cgroup/unified rw,relatime shared:13 - cgroup2 cgroup2 rw
39 25 0:31 /x /srv/bind rw,relatime shared:10 - cgroup cgroup rw,freezer
40 25 0:35 / /sys/fs/cgroup/cpu,cpuacct\\040x rw - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn mountinfo_hybrid() {
        let hs = parse_mountinfo(HYBRID);
        let names: Vec<String> = hs
            .iter()
            .map(|h| h.mountpoint.display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/cpuacct",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/freezer",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified",
                "/sys/fs/cgroup/cpu,cpuacct x",
            ]
        );
        assert_eq!(hs[6].kind, HierarchyKind::Named("systemd".into()));
        assert_eq!(hs[7].kind, HierarchyKind::Unified);
        assert_eq!(
            hs[8].kind,
            HierarchyKind::Controllers(vec!["cpu".into(), "cpuacct".into()])
        );
        assert!(hs[3].has_controller("memory"));
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("lxdrs.payload.C01").is_ok());
        assert!(validate_name("lxc.payload.C01").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name("..").is_err());
        assert!(validate_name("").is_err());
    }

    #[test]
    fn weight_conversion() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(0), 1);
    }
}
