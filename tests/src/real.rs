//! A real LXD 5.0 (Debian's `lxd`) beside ours for interoperability tests and benchmarks: its
//! own short `LXD_DIR`, a dir pool, no network, `images.auto_update_interval: "0"`, an HTTPS
//! proxy on a dead loopback port so that it never reaches the internet (Go does not proxy
//! loopback, so the test servers stay reachable), and stopped by its PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct RealLxd {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    home: tempfile::TempDir,
}

pub fn available() -> bool {
    Path::new("/usr/bin/lxd").exists() && Path::new("/usr/bin/lxc").exists()
}

impl RealLxd {
    /// Start a real LXD with `env` (e.g. a test CA) and initialise it.
    pub fn start(env: &[(String, String)]) -> RealLxd {
        let dir = PathBuf::from(format!("/tmp/lxr-{}", crate::unique("r")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create LXD_DIR");
        let mut env = env.to_vec();
        env.push(("https_proxy".into(), "http://127.0.0.1:9".into()));
        env.push(("http_proxy".into(), "http://127.0.0.1:9".into()));
        let log = std::fs::File::create(dir.join("lxd.out")).expect("log");
        let child = Command::new("/usr/bin/lxd")
            .args(["--group", "root", "--logfile"])
            .arg(dir.join("lxd.log"))
            .env("LXD_DIR", &dir)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn real lxd");
        let r = RealLxd {
            dir,
            env,
            child: Some(child),
            home: tempfile::tempdir().expect("tempdir"),
        };
        let out = r.lxd(&["waitready", "--timeout", "60"]);
        assert!(out.status.success(), "real LXD did not start: {}", r.log());
        let preseed = "config:\n  images.auto_update_interval: \"0\"\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n";
        let mut c = Command::new("/usr/bin/lxd");
        c.args(["init", "--preseed"])
            .env("LXD_DIR", &r.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = c.spawn().expect("lxd init");
        {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(preseed.as_bytes())
                .expect("preseed");
        }
        let out = child.wait_with_output().expect("lxd init");
        assert!(
            out.status.success(),
            "real lxd init failed: {}",
            crate::text(&out.stderr)
        );
        r
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("lxd.log")).unwrap_or_default()
    }

    pub fn lxd(&self, args: &[&str]) -> Output {
        let mut c = Command::new("/usr/bin/lxd");
        c.args(args).env("LXD_DIR", &self.dir);
        output(c)
    }

    /// The real client against this daemon, with its own config dir.
    pub fn lxc(&self, args: &[&str]) -> Output {
        let mut c = Command::new("/usr/bin/lxc");
        c.args(args)
            .env("LXD_DIR", &self.dir)
            .env("HOME", self.home.path())
            .env("LXD_CONF", self.home.path().join("lxc"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("LXD_SOCKET");
        output(c)
    }

    pub fn lxc_ok(&self, args: &[&str]) -> String {
        let out = self.lxc(args);
        assert!(
            out.status.success(),
            "real lxc (real daemon) {args:?} failed: {}\n--- real LXD log tail ---\n{}",
            crate::text(&out.stderr),
            crate::tail(&self.log(), 20)
        );
        crate::text(&out.stdout)
    }
}

fn output(mut c: Command) -> Output {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(180) {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("wait")
}

impl Drop for RealLxd {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGPWR: stop the instances and exit; then by PID if it lingers.
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGPWR);
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        crate::cleanup_dir(&self.dir);
    }
}
