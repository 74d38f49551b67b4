//! Root integration tests: real busybox containers started through `runctl` (the example that
//! stands in for `lxd forkstart/forkexec`), privileged and unprivileged, idmapped and shifted.
//! Without root every test prints "SKIPPED: needs root" and passes.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;

use common::{Ct, Kind, host_uid, idmap_root, skip};
use lxd_runtime::state::{Probe, Status};

fn assert_exec_basics(ct: &Ct) {
    let (code, out) = ct.exec(&["hostname"]);
    assert_eq!((code, out.trim()), (0, ct.name.as_str()));
    let (code, out) = ct.exec(&["id", "-u"]);
    assert_eq!((code, out.trim()), (0, "0"));
    assert_eq!(ct.exec(&["sh", "-c", "exit 3"]).0, 3);
    assert_eq!(ct.exec(&["no-such-command"]).0, 127);
    assert_eq!(ct.exec(&["/etc/passwd"]).0, 126);
    assert_eq!(ct.exec(&["sh", "-c", "kill -9 $$"]).0, 128 + 9);
    let (code, out) = ct.exec_pty(&["sh", "-c", "tty; stty size"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("/dev/pts/"), "no tty in pty mode: {out:?}");
    assert!(out.contains("40 120"), "window size not applied: {out:?}");
    let (_, out) = ct.exec(&["tty"]);
    assert!(out.contains("not a tty"), "{out:?}");
}

#[test]
fn privileged_boots_execs_and_powers_off() {
    if skip() {
        return;
    }
    let ct = Ct::new(Kind::Privileged);
    ct.start();
    assert!(matches!(ct.probe(), Probe::Running { .. }));
    assert_eq!(host_uid(ct.init_pid()), 0);
    assert_exec_basics(&ct);
    // Confinement: LXD's capability drops and seccomp deny-list, for init and for exec.
    let (_, status) = ct.exec(&["cat", "/proc/1/status"]);
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .unwrap()
        .trim();
    let bnd = u64::from_str_radix(bnd, 16).unwrap();
    assert_eq!(
        bnd & (1 << 25),
        0,
        "cap_sys_time is still in the bounding set"
    );
    let (code, out) = ct.exec(&["sh", "-c", "mkdir -p /tmp/m && mount -t tmpfs t /tmp/m && umount -f /tmp/m 2>&1; echo rc=$?; umount /tmp/m"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Permission denied") && out.contains("rc=1"),
        "{out}"
    );

    // The devices cgroup: mknod is allowed, opening a host block device (loop0, which host
    // root can open here) is not.
    let (code, out) = ct.exec(&[
        "sh",
        "-c",
        "mknod /root/loop0 b 7 0 && head -c1 /root/loop0 2>&1",
    ]);
    assert_ne!(
        code, 0,
        "a privileged container could open a host block device"
    );
    assert!(out.contains("Operation not permitted"), "{out}");
    let cgroups = ct.cgroup_dirs();
    assert!(cgroups.iter().all(|d| d.is_dir()));
    lxd_runtime::control::shutdown(&ct.dir).unwrap();
    assert!(ct.wait_stopped(20), "busybox did not power off");
    assert_eq!(
        ct.probe(),
        Probe::Stopped {
            reason: Some("poweroff".into())
        }
    );
    assert!(cgroups.iter().all(|d| !d.exists()), "cgroups left behind");
    assert!(!ct.dir.join("monitor.sock").exists());
    assert!(
        std::fs::read_to_string(&ct.spec.console_log)
            .unwrap()
            .contains("poweroff")
    );
}

#[test]
fn unprivileged_idmapped_rootfs() {
    if skip() {
        return;
    }
    let ct = Ct::new(Kind::Idmapped);
    ct.start();
    assert_eq!(
        host_uid(ct.init_pid()),
        idmap_root(),
        "init does not run as the mapped root"
    );
    assert_exec_basics(&ct);
    // Written as root inside, owned by 0 on disk: no shifting happened.
    assert_eq!(ct.exec(&["touch", "/root/made-inside"]).0, 0);
    assert_eq!(
        std::fs::metadata(ct.rootfs.join("root/made-inside"))
            .unwrap()
            .uid(),
        0
    );
    // systemd needs to manage its own sub-cgroups.
    let (code, _) = ct.exec(&[
        "mkdir",
        "/sys/fs/cgroup/systemd/sub",
        "/sys/fs/cgroup/unified/sub",
    ]);
    assert_eq!(code, 0);
    // The console is the container's root's pty in its own devpts.
    let (_, out) = ct.exec(&["stat", "-c", "%u %g %t", "/dev/console"]);
    assert!(out.starts_with("0 "), "{out}");
}

#[test]
fn unprivileged_idmapped_rootfs_on_tmpfs() {
    if skip() {
        return;
    }
    let mut ct = Ct::new(Kind::IdmappedTmpfs);
    assert!(lxd_runtime::idmap::idmapped_mounts_supported(&ct.rootfs));
    ct.spec.nesting = true;
    ct.write_spec();
    ct.start();
    // security.nesting: clean proc and sysfs for a nested container manager.
    let (code, _) = ct.exec(&["ls", "/dev/.lxc/proc/self/status", "/dev/.lxc/sys/kernel"]);
    assert_eq!(code, 0);
    assert_eq!(host_uid(ct.init_pid()), idmap_root());
    let (code, out) = ct.exec(&["sh", "-c", "id -u; touch /tmp/x /root/y; hostname"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().next(), Some("0"));
    assert_eq!(
        std::fs::metadata(ct.rootfs.join("root/y")).unwrap().uid(),
        0
    );
}

#[test]
fn unprivileged_shifted_rootfs() {
    if skip() {
        return;
    }
    let ct = Ct::new(Kind::Shifted);
    let root = idmap_root();
    assert_eq!(
        std::fs::metadata(ct.rootfs.join("etc/passwd"))
            .unwrap()
            .uid(),
        root
    );
    assert_eq!(
        std::fs::metadata(ct.rootfs.join("home/user"))
            .unwrap()
            .uid(),
        root + 1000
    );
    ct.start();
    assert_eq!(host_uid(ct.init_pid()), root);
    let (code, out) = ct.exec(&["sh", "-c", "touch /root/z && stat -c %u /root/z /home/user"]);
    assert_eq!((code, out.as_str()), (0, "0\n1000\n"));
    assert_eq!(
        std::fs::metadata(ct.rootfs.join("root/z")).unwrap().uid(),
        root
    );
    assert_eq!(ct.exec_pty(&["tty"]).0, 0);
    // And back again, once stopped.
    lxd_runtime::control::kill(&ct.dir).unwrap();
    assert!(ct.wait_stopped(10));
    assert_eq!(
        ct.probe(),
        Probe::Stopped {
            reason: Some("killed".into())
        }
    );
    lxd_runtime::idmap::shift_tree(&ct.rootfs, &lxd_runtime::idmap::host_idmap(), true).unwrap();
    assert_eq!(
        std::fs::metadata(ct.rootfs.join("root/z")).unwrap().uid(),
        0
    );
    assert_eq!(
        std::fs::metadata(ct.rootfs.join("home/user"))
            .unwrap()
            .uid(),
        1000
    );
}

#[test]
fn memory_limit_kills_a_big_allocation() {
    if skip() {
        return;
    }
    let limits = lxd_runtime::spec::Limits {
        memory: Some(64 << 20),
        processes: Some(200),
        ..Default::default()
    };
    let ct = Ct::with_limits(Kind::Idmapped, limits);
    ct.start();
    let (code, _) = ct.exec(&[
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}",
    ]);
    assert_eq!(code, 137, "the allocation was not OOM-killed");
    assert_eq!(
        ct.exec(&["true"]).0,
        0,
        "the container did not survive the OOM kill"
    );
    let st = lxd_runtime::control::stats(&ct.dir).unwrap();
    assert!(
        st.processes >= 1 && st.memory_usage > 0 && st.cpu_usage_ns > 0,
        "{st:?}"
    );
    assert!(st.memory_max_usage <= 64 << 20);
    // Limits are live: raise it, and the same allocation fits.
    let mut more = ct.spec.limits.clone();
    more.memory = Some(512 << 20);
    lxd_runtime::control::update_limits(&ct.dir, &more).unwrap();
    let (code, out) = ct.exec(&[
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}",
    ]);
    assert_eq!((code, out.trim()), (0, "100000000"));
}

#[test]
fn freeze_and_thaw() {
    if skip() {
        return;
    }
    let ct = Ct::new(Kind::Privileged);
    ct.start();
    lxd_runtime::control::freeze(&ct.dir).unwrap();
    assert!(matches!(ct.probe(), Probe::Frozen { .. }));
    assert!(matches!(
        lxd_runtime::control::shutdown(&ct.dir),
        Err(lxd_runtime::Error::Frozen)
    ));
    // exec into a frozen container fails at once instead of hanging.
    let out = ct.runctl(&["exec", &ct.request(&["true"], false)]);
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("instance is frozen"));
    lxd_runtime::control::thaw(&ct.dir).unwrap();
    assert!(matches!(ct.probe(), Probe::Running { .. }));
    assert_eq!(ct.exec(&["true"]).0, 0);
    // A frozen container can still be force-stopped.
    lxd_runtime::control::freeze(&ct.dir).unwrap();
    lxd_runtime::control::kill(&ct.dir).unwrap();
    assert!(ct.wait_stopped(10));
    assert_eq!(
        ct.probe(),
        Probe::Stopped {
            reason: Some("killed".into())
        }
    );
}

#[test]
fn reboot_from_inside_restarts_init() {
    if skip() {
        return;
    }
    let ct = Ct::new(Kind::Idmapped);
    ct.start();
    let first = ct.init_pid();
    let monitor = ct.state().monitor_pid;
    let _ = ct.exec(&["reboot"]);
    assert!(
        ct.wait_for(20, || {
            let s = ct.state();
            s.status == Status::Running && s.init_pid != Some(first)
        }),
        "init was not restarted"
    );
    assert_eq!(ct.state().monitor_pid, monitor, "the monitor changed");
    assert!(matches!(ct.probe(), Probe::Running { .. }));
    assert_eq!(ct.exec(&["hostname"]).1.trim(), ct.name);
    // And the control-side reboot.
    let second = ct.init_pid();
    lxd_runtime::control::reboot(&ct.dir).unwrap();
    assert!(ct.wait_for(20, || ct.state().init_pid != Some(second)
        && ct.state().status == Status::Running));
}

#[test]
fn monitor_outlives_its_starter_and_serves_the_console() {
    if skip() {
        return;
    }
    let ct = Ct::new(Kind::Privileged);
    ct.start(); // runctl has exited by now
    let st = ct.state();
    assert!(lxd_runtime::state::pid_matches(
        st.monitor_pid,
        st.monitor_start_time
    ));
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", st.monitor_pid)).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    let (ppid, tty_nr) = (f[1], f[4]);
    assert_ne!(ppid, std::process::id().to_string());
    assert_eq!(tty_nr, "0", "the monitor has a controlling tty");
    // The monitor lives in the root cgroups, outside the container's (it leaves the cgroup2
    // one of its starter once init runs).
    let monitor_cg = || std::fs::read_to_string(format!("/proc/{}/cgroup", st.monitor_pid));
    assert!(
        ct.wait_for(5, || monitor_cg()
            .is_ok_and(|cg| cg.lines().all(|l| l.ends_with(":/")))),
        "{:?}",
        monitor_cg()
    );
    // Init and exec'd commands are in the container's cgroup of every hierarchy: seen from
    // the host, and inside as the root of their cgroup namespace.
    let name = format!("/lxdrs.payload.{}", ct.name);
    let init_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", ct.init_pid())).unwrap();
    assert!(
        init_cg.lines().count() > 0 && init_cg.lines().all(|l| l.ends_with(&name)),
        "{init_cg}"
    );
    let (code, inside) = ct.exec(&["cat", "/proc/self/cgroup"]);
    assert_eq!(code, 0);
    assert!(
        inside.lines().count() == init_cg.lines().count()
            && inside.lines().all(|l| l.ends_with(":/")),
        "exec'd outside the container's cgroups: {inside}"
    );
    // Its memory stays small.
    let smaps = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", st.monitor_pid)).unwrap();
    let dirty: u64 = smaps
        .lines()
        .find_map(|l| l.strip_prefix("Private_Dirty:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(dirty < 2048, "monitor private dirty memory {dirty} kB");
    let status = lxd_runtime::control::monitor_status(&ct.dir).unwrap();
    assert_eq!(status.init_pid, st.init_pid);

    // lxc console: an exclusive session sees getty's prompt after a newline.
    let att = lxd_runtime::control::attach_console(&ct.dir).unwrap();
    let mut f = std::fs::File::from(att.master);
    f.write_all(b"\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < end && !String::from_utf8_lossy(&got).contains("login:") {
        if let Ok(n) = f.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert!(
        String::from_utf8_lossy(&got).contains("login:"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    drop(att.conn);
    let fd = lxd_runtime::control::console(&ct.dir).unwrap();
    drop(fd);
}

#[test]
fn start_failure_is_reported_and_cleaned_up() {
    if skip() {
        return;
    }
    let mut ct = Ct::new(Kind::Privileged);
    ct.spec.init = vec!["/sbin/no-such-init".into()];
    ct.write_spec();
    let out = ct.runctl(&["start", ct.dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed to exec /sbin/no-such-init: No such file or directory"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(ct.cgroup_dirs().iter().all(|d| !d.exists()));
    assert!(matches!(ct.probe(), Probe::Stopped { reason: Some(_) }));
}

#[test]
fn idmapped_support_probe() {
    if skip() {
        return;
    }
    assert!(lxd_runtime::idmap::idmapped_mounts_supported(
        &std::env::temp_dir()
    ));
    assert!(!lxd_runtime::idmap::idmapped_mounts_supported(
        std::path::Path::new("/proc")
    ));
}

#[test]
fn disks_and_nics_are_attached() {
    if skip() {
        return;
    }
    let mut ct = Ct::new(Kind::Idmapped);
    let data = ct.dir.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("owned-by-0"), "x").unwrap();
    let conf = ct.dir.join("extra.conf");
    std::fs::write(&conf, "hello\n").unwrap();
    // A symlink in the container that points at a host path must not redirect a mount there.
    let host_target = ct.dir.join("host-target");
    std::fs::create_dir(&host_target).unwrap();
    std::os::unix::fs::symlink(&host_target, ct.rootfs.join("mnt/evil")).unwrap();
    // The same path inside the rootfs is where it must resolve to.
    std::fs::create_dir_all(ct.rootfs.join(host_target.strip_prefix("/").unwrap())).unwrap();
    let bind = |source: &std::path::Path, target: &str, readonly, idmapped, file| {
        lxd_runtime::spec::BindMount {
            source: source.to_path_buf(),
            target: target.into(),
            readonly,
            idmapped,
            file,
        }
    };
    ct.spec.mounts = vec![
        bind(&data, "/mnt/ro", true, false, false),
        bind(&data, "/mnt/idm", false, true, false),
        bind(&conf, "/etc/extra.conf", true, false, true),
        bind(&data, "/mnt/evil/inside", true, false, false),
    ];
    let veth = format!("rtv{}", std::process::id() % 100000);
    common::sh(&format!("ip link add {veth}a type veth peer name {veth}b"));
    let _veth_guard = common::Cleanup(format!("ip link del {veth}a"));
    ct.spec.nics = vec![lxd_runtime::spec::Nic {
        host_name: format!("{veth}b"),
        name: "eth0".into(),
    }];
    ct.write_spec();
    ct.start();

    let (code, out) = ct.exec(&["sh", "-c", "stat -c %u /mnt/ro/owned-by-0 /mnt/idm/owned-by-0; cat /etc/extra.conf; touch /mnt/ro/w 2>&1; touch /mnt/idm/made-inside && echo made"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "65534", "host root shows as nobody without idmap");
    assert_eq!(
        lines[1], "0",
        "idmapped disk shows host ids as container ids"
    );
    assert_eq!(lines[2], "hello");
    assert!(lines[3].contains("Read-only file system"), "{out}");
    assert_eq!(lines[4], "made");
    assert_eq!(
        std::fs::metadata(data.join("made-inside")).unwrap().uid(),
        0
    );
    // The escape attempt landed inside the rootfs, not on the host.
    assert_eq!(std::fs::read_dir(&host_target).unwrap().count(), 0);
    // ... it is mounted at that path inside the container's own tree (/tmp there is a tmpfs
    // on top by now, so look in init's mount table rather than at the files).
    let mi = std::fs::read_to_string(format!("/proc/{}/mountinfo", ct.init_pid())).unwrap();
    let inside = host_target.join("inside");
    assert!(mi.contains(&format!(" {} ", inside.display())), "{mi}");
    let (code, out) = ct.exec(&["ip", "link", "show", "eth0"]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn exec_command_is_the_helpers_only_child() {
    if skip() {
        return;
    }
    let ct = Ct::new(Kind::Privileged);
    ct.start();
    // How the daemon finds the command to signal: the helper's only child, inside the
    // container's pid namespace.
    let mut helper = std::process::Command::new(common::runctl())
        .arg("exec")
        .arg(ct.request(&["sleep", "30"], false))
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let h = helper.id() as i32;
    // (Right after the fork the child is still a copy of the helper; wait for its exec.)
    let command = || {
        lxd_runtime::attach::command_pid(h).filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep\0"))
        })
    };
    assert!(ct.wait_for(10, || command().is_some()));
    let pid = command().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_eq!(nspid.split_whitespace().count(), 3, "{nspid}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL).unwrap();
    assert_eq!(helper.wait().unwrap().code(), Some(128 + 9));
    assert_eq!(lxd_runtime::attach::command_pid(h), None);
}

fn file_op(
    req: &lxd_runtime::files::FileRequest,
    input: &[u8],
) -> (i32, lxd_runtime::files::FileHeader, Vec<u8>) {
    let mut child = std::process::Command::new(common::runctl())
        .arg("file")
        .arg(serde_json::to_string(req).unwrap())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    let nl = out
        .stdout
        .iter()
        .position(|b| *b == b'\n')
        .expect("a header line");
    let h = serde_json::from_slice(&out.stdout[..nl]).unwrap();
    (
        out.status.code().unwrap_or(-1),
        h,
        out.stdout[nl + 1..].to_vec(),
    )
}

fn file_req(op: lxd_runtime::files::FileOp, path: &str) -> lxd_runtime::files::FileRequest {
    lxd_runtime::files::FileRequest {
        op,
        path: path.into(),
        init_pid: None,
        rootfs: None,
        shifted: None,
        uid: None,
        gid: None,
        mode: None,
        append: false,
        target: None,
        recursive: false,
    }
}

#[test]
fn files_in_running_and_stopped_instances() {
    use lxd_runtime::files::FileOp;
    if skip() {
        return;
    }
    let ct = Ct::new(Kind::Idmapped);
    ct.start();
    let pid = ct.init_pid();
    let mut w = file_req(FileOp::Write, "/root/pushed");
    w.init_pid = Some(pid);
    w.uid = Some(1000);
    w.gid = Some(1000);
    w.mode = Some(0o640);
    let (code, h, _) = file_op(&w, b"pushed data\n");
    assert_eq!(code, 0, "{h:?}");
    assert_eq!((h.uid, h.gid, h.size), (Some(1000), Some(1000), Some(12)));
    // Idmapped rootfs: container ids are the ids on disk.
    assert_eq!(
        std::fs::metadata(ct.rootfs.join("root/pushed"))
            .unwrap()
            .uid(),
        1000
    );
    let (_, out) = ct.exec(&["stat", "-c", "%u %g %a", "/root/pushed"]);
    assert_eq!(out.trim(), "1000 1000 640");
    let mut r = file_req(FileOp::Read, "/root/pushed");
    r.init_pid = Some(pid);
    let (code, h, data) = file_op(&r, b"");
    assert_eq!((code, data.as_slice()), (0, &b"pushed data\n"[..]), "{h:?}");
    // A symlink made inside to a host-looking path resolves in the container.
    assert_eq!(ct.exec(&["ln", "-s", "/etc", "/root/etc-link"]).0, 0);
    let mut r = file_req(FileOp::Read, "/root/etc-link/hostname");
    r.init_pid = Some(pid);
    let (_, _, data) = file_op(&r, b"");
    assert_eq!(String::from_utf8_lossy(&data).trim(), ct.name);
    let mut l = file_req(FileOp::Stat, "/root/etc-link");
    l.init_pid = Some(pid);
    let (_, h, _) = file_op(&l, b"");
    assert_eq!(
        (h.r#type.as_deref(), h.target.as_deref()),
        (Some("symlink"), Some("/etc"))
    );
    let mut missing = file_req(FileOp::Read, "/nope");
    missing.init_pid = Some(pid);
    let (code, h, _) = file_op(&missing, b"");
    assert_eq!((code, h.ok, h.status), (1, false, Some(404)));

    // A stopped instance with a shifted rootfs: ids are translated both ways.
    let st = Ct::new(Kind::Shifted);
    let mut w = file_req(FileOp::Write, "/root/offline");
    w.rootfs = Some(st.rootfs.clone());
    w.shifted = st.spec.idmap.clone();
    let (code, h, _) = file_op(&w, b"x");
    assert_eq!((code, h.uid), (0, Some(0)));
    assert_eq!(
        std::fs::metadata(st.rootfs.join("root/offline"))
            .unwrap()
            .uid(),
        idmap_root()
    );
}
