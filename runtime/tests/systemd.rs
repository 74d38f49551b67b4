//! A Debian bookworm rootfs with systemd, booted unprivileged on an idmapped mount: it must
//! reach `running` with no failed unit, reboot from inside, and power off cleanly via
//! SIGRTMIN+4 within seconds. The rootfs is debootstrapped once into /var/cache/lxd-test.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ct, Kind, host_uid, idmap_root, skip};
use lxd_runtime::state::{Probe, Status};

const CACHE: &str = "/var/cache/lxd-test/bookworm-systemd";

/// The cached rootfs, debootstrapped on first use; None (test skipped) when that fails.
fn debian_rootfs() -> Option<PathBuf> {
    let cache = Path::new(CACHE);
    if cache.join("sbin/init").exists() {
        return Some(cache.to_path_buf());
    }
    let tmp = format!("{CACHE}.tmp-{}", std::process::id());
    eprintln!("debootstrapping {CACHE} (about a minute, once)");
    let ok = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd-sysv",
            "bookworm",
            &tmp,
            "http://deb.debian.org/debian",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = std::fs::remove_dir_all(&tmp);
        return None;
    }
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("rm -f {tmp}/var/cache/apt/archives/*.deb"))
        .status();
    if std::fs::rename(&tmp, cache).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Some(cache.to_path_buf())
}

fn wait_running(ct: &Ct, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < end {
        if let Probe::Running { .. } = ct.probe() {
            let (_, out) = ct.exec(&["systemctl", "is-system-running"]);
            last = out.trim().to_string();
            // "offline": systemd's bus is not up yet, right after exec of init.
            if !matches!(last.as_str(), "starting" | "initializing" | "offline" | "") {
                return last;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last
}

#[test]
fn systemd_boots_unprivileged_reboots_and_powers_off() {
    if skip() {
        return;
    }
    let Some(src) = debian_rootfs() else {
        eprintln!("SKIPPED: no Debian rootfs (debootstrap failed)");
        return;
    };
    let mut ct = Ct::new(Kind::Idmapped);
    std::fs::remove_dir_all(&ct.rootfs).unwrap();
    let st = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&ct.rootfs)
        .status()
        .unwrap();
    assert!(st.success());
    std::fs::write(ct.rootfs.join("etc/hostname"), format!("{}\n", ct.name)).unwrap();
    ct.spec.limits.memory = Some(512 << 20);
    ct.write_spec();

    let t0 = Instant::now();
    ct.start();
    let state = wait_running(&ct, 60);
    let (_, failed) = ct.exec(&["systemctl", "--failed", "--no-legend", "--plain"]);
    assert_eq!(state, "running", "failed units:\n{failed}");
    eprintln!("systemd reached running in {:?}", t0.elapsed());
    assert!(failed.trim().is_empty(), "{failed}");
    assert_eq!(host_uid(ct.init_pid()), idmap_root());
    let (_, warnings) = ct.exec(&["journalctl", "-b", "-p", "warning", "--no-pager", "-q"]);
    assert!(warnings.trim().is_empty(), "journal warnings:\n{warnings}");
    // systemd delegated its own sub-cgroups under ours.
    let memory = ct
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/memory"));
    if let Some(m) = memory {
        assert!(m.join("init.scope").is_dir() || m.join("system.slice").is_dir());
    }

    // `systemctl reboot`: init dies by SIGHUP, the monitor starts a new one.
    let first = ct.init_pid();
    let _ = ct.exec(&["systemctl", "reboot"]);
    assert!(
        ct.wait_for(30, || {
            let s = ct.state();
            s.status == Status::Running && s.init_pid != Some(first)
        }),
        "no new init after reboot"
    );
    assert_eq!(wait_running(&ct, 60), "running");

    let t = Instant::now();
    lxd_runtime::control::shutdown(&ct.dir).unwrap();
    assert!(ct.wait_stopped(20), "systemd did not power off");
    eprintln!("systemd powered off in {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(
        ct.probe(),
        Probe::Stopped {
            reason: Some("poweroff".into())
        }
    );
    assert!(
        ct.cgroup_dirs().iter().all(|d| !d.exists()),
        "cgroups left behind"
    );
}
