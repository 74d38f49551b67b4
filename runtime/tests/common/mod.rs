//! Shared harness for the root integration tests: a busybox image built once per test process,
//! a `Ct` guard per container that cleans up everything it made (monitor, cgroups, mounts, temp
//! dir) even when the test fails, and the `runctl` example that drives the runtime.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lxd_runtime::spec::{ContainerSpec, IdMap, Limits, RootfsIdmap};
use lxd_runtime::state::{self, Probe, RuntimeState};

/// True (and says so loudly) when the test cannot run here.
pub fn skip() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Straight to stderr: eprintln! output is captured by the test harness and hidden.
        use std::io::Write;
        let name = std::thread::current().name().unwrap_or("?").to_string();
        let _ = writeln!(std::io::stderr(), "SKIPPED: {name} needs root");
        return true;
    }
    false
}

/// target/debug/examples/runctl, next to the test binary's deps directory.
pub fn runctl() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join("examples/runctl");
    assert!(
        p.exists(),
        "{} is missing: run `cargo test -p lxd-runtime`, which builds examples \
         (`cargo test --test NAME` alone does not rebuild it)",
        p.display()
    );
    p
}

/// The busybox image tarball from scripts/build-busybox-image.sh, cached under
/// /var/cache/lxd-test (the script is deterministic, so a cached copy is as good as a new one).
pub fn busybox_image() -> &'static Path {
    static IMG: OnceLock<PathBuf> = OnceLock::new();
    IMG.get_or_init(|| {
        let cache = Path::new("/var/cache/lxd-test/runtime-busybox");
        let img = cache.join("busybox.tar.xz");
        if img.exists() {
            return img;
        }
        let tmp = Path::new("/var/cache/lxd-test")
            .join(format!(".runtime-busybox-{}", std::process::id()));
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-busybox-image.sh");
        let st = Command::new("sh")
            .arg(&script)
            .arg(&tmp)
            .stdout(Stdio::null())
            .status()
            .expect("run build-busybox-image.sh");
        assert!(st.success(), "building the busybox image failed");
        // Another test process may have won the race; either copy is the same.
        if std::fs::rename(&tmp, cache).is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        img
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No user namespace.
    Privileged,
    /// Unprivileged, rootfs owned by 0 on ext4, presented through an idmapped mount.
    Idmapped,
    /// The same on a tmpfs.
    IdmappedTmpfs,
    /// Unprivileged, rootfs chowned to the host range on disk.
    Shifted,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One test container and everything it owns.
#[derive(Debug)]
pub struct Ct {
    pub name: String,
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: ContainerSpec,
    tmpfs: Option<PathBuf>,
}

impl Ct {
    pub fn new(kind: Kind) -> Ct {
        Self::with_limits(kind, Limits::default())
    }

    pub fn with_limits(kind: Kind, limits: Limits) -> Ct {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("rt-{}-{n}", std::process::id());
        let dir = std::env::temp_dir().join(&name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Deliberately root-only: the runtime must cope with untraversable parents.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let mut tmpfs = None;
        let base = if kind == Kind::IdmappedTmpfs {
            let m = dir.join("mnt");
            std::fs::create_dir(&m).unwrap();
            sh(&format!("mount -t tmpfs -o size=64m tmpfs {}", m.display()));
            tmpfs = Some(m.clone());
            m
        } else {
            dir.clone()
        };
        let st = Command::new("tar")
            .arg("-xJf")
            .arg(busybox_image())
            .arg("-C")
            .arg(&base)
            .arg("rootfs")
            .status()
            .unwrap();
        assert!(st.success());
        let rootfs = base.join("rootfs");
        std::fs::write(rootfs.join("etc/hostname"), format!("{name}\n")).unwrap();
        // The image tarball stores everything as root; give the user's home to the user, as a
        // real image would, so shifting has a non-root id to move.
        std::os::unix::fs::chown(rootfs.join("home/user"), Some(1000), Some(1000)).unwrap();
        let idmap = (kind != Kind::Privileged).then(lxd_runtime::idmap::host_idmap);
        if kind == Kind::Shifted {
            lxd_runtime::idmap::shift_tree(&rootfs, idmap.as_ref().unwrap(), false).unwrap();
        }
        let spec = ContainerSpec {
            name: name.clone(),
            rootfs: rootfs.clone(),
            idmap,
            rootfs_idmap: match kind {
                Kind::Idmapped | Kind::IdmappedTmpfs => RootfsIdmap::IdmappedMount,
                _ => RootfsIdmap::None,
            },
            init: vec!["/sbin/init".into()],
            env: [(
                "PATH".to_string(),
                "/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            )]
            .into(),
            cgroup_name: format!("lxdrs.payload.{name}"),
            limits,
            mounts: vec![],
            nesting: false,
            console_log: dir.join("console.log"),
            log_file: dir.join("lxc.log"),
            nics: vec![],
            reboot_via_daemon: false,
        };
        let ct = Ct {
            name,
            dir,
            rootfs,
            spec,
            tmpfs,
        };
        ct.write_spec();
        ct
    }

    pub fn write_spec(&self) {
        std::fs::write(
            self.dir.join("spec.json"),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    pub fn runctl(&self, args: &[&str]) -> Output {
        Command::new(runctl())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `runctl start`, asserting success.
    pub fn start(&self) {
        let out = self.runctl(&["start", self.dir.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "start failed: {}\nlog:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&self.spec.log_file).unwrap_or_default()
        );
    }

    pub fn state(&self) -> RuntimeState {
        state::read_state(&self.dir).unwrap().expect("state.json")
    }

    pub fn probe(&self) -> Probe {
        state::probe(&self.dir)
    }

    pub fn init_pid(&self) -> i32 {
        self.state().init_pid.expect("init pid")
    }

    pub fn request(&self, cmd: &[&str], pty: bool) -> String {
        serde_json::to_string(&lxd_runtime::attach::ExecRequest {
            init_pid: self.init_pid(),
            cgroup_name: self.spec.cgroup_name.clone(),
            command: cmd.iter().map(|s| s.to_string()).collect(),
            env: vec![
                ("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into()),
                ("HOME".into(), "/root".into()),
            ],
            cwd: String::new(),
            uid: 0,
            gid: 0,
            pty,
        })
        .unwrap()
    }

    /// Runs a command inside; returns (exit code, stdout).
    pub fn exec(&self, cmd: &[&str]) -> (i32, String) {
        let out = self.runctl(&["exec", &self.request(cmd, false)]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    /// The same on a pty allocated in the container's devpts.
    pub fn exec_pty(&self, cmd: &[&str]) -> (i32, String) {
        let out = self.runctl(&["exec-pty", &self.request(cmd, true)]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn wait_stopped(&self, secs: u64) -> bool {
        lxd_runtime::control::wait_stopped(&self.dir, Duration::from_secs(secs))
    }

    /// Polls `f` every 50 ms for up to `secs`.
    pub fn wait_for(&self, secs: u64, f: impl Fn() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        f()
    }

    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        lxd_runtime::cgroup::open(&self.spec.cgroup_name)
            .unwrap()
            .paths()
    }
}

impl Drop for Ct {
    fn drop(&mut self) {
        // Force stop through the monitor, then make sure nothing of ours is left.
        let _ = lxd_runtime::control::kill(&self.dir);
        if !self.wait_stopped(10)
            && let Ok(Some(st)) = state::read_state(&self.dir)
            && state::pid_matches(st.monitor_pid, st.monitor_start_time)
        {
            // SAFETY: kill(2) on the monitor we started, verified by its start time.
            unsafe { libc::kill(st.monitor_pid, libc::SIGKILL) };
        }
        if let Ok(cg) = lxd_runtime::cgroup::open(&self.spec.cgroup_name) {
            let _ = cg.kill_all();
            let _ = cg.remove();
        }
        if let Some(m) = &self.tmpfs {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host uid a process runs as (real uid, from /proc/PID/status).
pub fn host_uid(pid: i32) -> u32 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

pub fn idmap_root() -> u32 {
    let m: IdMap = lxd_runtime::idmap::host_idmap();
    m.uid[0].host_id
}

/// Runs a shell command when dropped (cleanup of host objects a test made).
#[derive(Debug)]
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
    }
}
