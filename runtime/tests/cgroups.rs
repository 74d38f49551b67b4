//! The cgroup backends against the real kernel: the v1 backend on this host's hybrid layout,
//! and the v2 backend on the cgroup2 hierarchy mounted at /sys/fs/cgroup/unified (where only
//! hugetlb is available, so it checks the core v2 features: attach, freeze, kill, remove).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use lxd_runtime::cgroup::{self, CgroupManager, Layout, V2Cgroup};
use lxd_runtime::spec::Limits;

fn sleeper() -> std::process::Child {
    Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn exercise(cg: &dyn CgroupManager) {
    cg.create().unwrap();
    let mut child = sleeper();
    cg.attach(child.id() as i32).unwrap();
    assert_eq!(cg.pids().unwrap(), vec![child.id() as i32]);
    assert_eq!(cg.stats().unwrap().processes, 1);
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    // Killing works on a frozen cgroup too.
    cg.freeze().unwrap();
    cg.kill_all().unwrap();
    let st = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    assert!(cg.pids().unwrap().is_empty());
    let _ = cg.thaw();
    cg.remove().unwrap();
    assert!(!cg.exists());
}

#[test]
fn v2_backend_on_the_unified_hierarchy() {
    if common::skip() {
        return;
    }
    let root = PathBuf::from("/sys/fs/cgroup/unified");
    if !root.join("cgroup.procs").exists() {
        eprintln!("SKIPPED: no cgroup2 at {}", root.display());
        return;
    }
    let name = format!("lxdrs.test-v2-{}", std::process::id());
    let cg = V2Cgroup::new(&name, root);
    exercise(&cg);
    // A limit whose controller is missing is an error that names the file; resets are not.
    cg.create().unwrap();
    let e = cg
        .apply_limits(&Limits {
            memory: Some(1 << 30),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("memory.max"), "{e}");
    cg.apply_limits(&Limits::default()).unwrap();
    cg.remove().unwrap();
}

#[test]
fn host_backend_limits_and_lifecycle() {
    if common::skip() {
        return;
    }
    let name = format!("lxdrs.test-host-{}", std::process::id());
    let cg = cgroup::open(&name).unwrap();
    exercise(cg.as_ref());
    cg.create().unwrap();
    let limits = Limits {
        cpuset: Some("0".into()),
        cpu_quota_us: Some(50_000),
        cpu_period_us: Some(100_000),
        cpu_shares: Some(512),
        memory: Some(256 << 20),
        processes: Some(50),
    };
    cg.apply_limits(&limits).unwrap();
    for w in cg.limit_writes(&limits) {
        let got = std::fs::read_to_string(&w.path).unwrap();
        let got = got.trim();
        // cpu.max reads back as "quota period", memory in bytes: compare what was written.
        assert!(
            got == w.value || got.starts_with(&w.value),
            "{}: {got} != {}",
            w.path.display(),
            w.value
        );
    }
    // Live changes, up and back to unlimited.
    cg.apply_limits(&Limits {
        memory: Some(1 << 30),
        ..limits.clone()
    })
    .unwrap();
    cg.apply_limits(&Limits::default()).unwrap();
    if let Layout::V1(_) = cgroup::layout().unwrap() {
        let mem = PathBuf::from("/sys/fs/cgroup/memory")
            .join(&name)
            .join("memory.limit_in_bytes");
        let v: u64 = std::fs::read_to_string(mem)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(v > 1 << 60, "memory limit not reset: {v}");
    }
    let e = cg
        .apply_limits(&Limits {
            cpuset: Some("9999".into()),
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("cpuset.cpus"), "{e}");
    cg.remove().unwrap();
}
