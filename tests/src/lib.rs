//! Test harness for the integration tests: start a real `lxd` with its own short `LXD_DIR`, drive
//! it with our `lxc` and with the real LXD 5.0 client, build the busybox test image once, and
//! clean up everything a test made (instances, cgroups, mounts, processes, directories) even when
//! the test fails. Integration tests need root; without it they say so loudly and do nothing.

pub mod real;
pub mod streams;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True when running as root; otherwise prints a loud SKIPPED line for `test`.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!(
        "\n*** SKIPPED {test}: integration tests need root (run scripts/test.sh as root) ***\n"
    );
    false
}

/// `target/debug` (or the profile dir) holding the built binaries.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> -> target/debug; a benchmark binary sits in target/<profile>.
    let dir = exe.parent().expect("target dir");
    match dir.file_name() {
        Some(n) if n == "deps" => dir.parent().expect("target dir").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        p.display()
    );
    p
}

/// A name unique to this test process and call, valid as an instance name, and carrying a
/// per-process prefix so leftovers can be found.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}x{n}", std::process::id() % 100000)
}

/// The busybox test image, built once per machine from the host's busybox-static (the build is
/// deterministic, so concurrent builders produce the same file).
pub fn busybox_image() -> PathBuf {
    let dir = bin_dir().join("test-images");
    std::fs::create_dir_all(&dir).expect("create image dir");
    let lock = std::fs::File::create(dir.join(".lock")).expect("lock file");
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock image dir");
    build_busybox(&dir, "busybox")
}

/// A busybox image whose metadata carries `name` (and so its own fingerprint): stand-ins for
/// distributions and releases in the image-server fixtures.
pub fn busybox_image_named(name: &str) -> PathBuf {
    let dir = bin_dir().join("test-images");
    std::fs::create_dir_all(&dir).expect("create image dir");
    let lock = std::fs::File::create(dir.join(".lock")).expect("lock file");
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock image dir");
    build_busybox(&dir, name)
}

fn build_busybox(dir: &Path, name: &str) -> PathBuf {
    let img = dir.join(format!("{name}.tar.xz"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("build-busybox-image.sh");
    // Rebuild when the script changed since the cached image was built.
    let stale = |img: &Path| {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((m(img), m(&script)), (Some(i), Some(s)) if s > i)
    };
    if !img.exists() || stale(&img) {
        let st = Command::new("sh")
            .arg(&script)
            .arg(dir)
            .arg(name)
            .stdout(Stdio::null())
            .status()
            .expect("run build-busybox-image.sh");
        assert!(st.success(), "building the busybox image failed");
    }
    img
}

/// A daemon of ours with its own LXD_DIR and client config directories.
#[derive(Debug)]
pub struct TestDaemon {
    pub dir: PathBuf,
    /// Extra environment for the daemon and both clients (e.g. `SSL_CERT_FILE` of a test CA).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
    conf: tempfile::TempDir,
    real_home: tempfile::TempDir,
    /// Run the daemon in a mount namespace where /sys/fs/cgroup is the unified (cgroup2)
    /// hierarchy alone: what a pure cgroup v2 host looks like to the daemon and its containers.
    cgroup2_view: bool,
}

fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn command");
    let start = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("wait for command")
}

impl TestDaemon {
    /// Start a fresh daemon and initialise it (`lxd init --auto`: dir pool, default profile).
    pub fn start() -> TestDaemon {
        Self::start_with(&[])
    }

    /// Start a fresh daemon initialised with `lxd init --auto` and `init_args` (a storage
    /// backend, `--network-bridge none`, ...).
    pub fn start_with(init_args: &[&str]) -> TestDaemon {
        let d = Self::start_uninitialised();
        d.init_auto(init_args);
        d
    }

    /// Start and initialise a daemon with extra environment for it and its clients.
    pub fn start_with_env(env: &[(String, String)]) -> TestDaemon {
        let d = Self::start_uninitialised_with_env(env);
        d.init_auto(&[]);
        d
    }

    /// `lxd init --auto INIT_ARGS`. Unless the arguments name a bridge, the bridge gets a name
    /// unique to this daemon: after a test ends, its harness removes the daemon's bridges, which
    /// must never be one a later test's daemon took over.
    fn init_auto(&self, init_args: &[&str]) {
        let mut args = vec!["init", "--auto"];
        args.extend_from_slice(init_args);
        let br;
        if !init_args.contains(&"--network-bridge") {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            br = format!("lxt{}b{n}", std::process::id() % 10000);
            args.extend(["--network-bridge", br.as_str()]);
        }
        let out = self.lxd(&args);
        assert!(
            out.status.success(),
            "lxd {args:?} failed: {}",
            text(&out.stderr)
        );
    }

    /// A daemon that sees a pure cgroup v2 layout (see `cgroup2_view`), initialised.
    pub fn start_in_cgroup2_view() -> TestDaemon {
        let mut d = Self::start_uninitialised();
        d.kill_daemon(nix::sys::signal::Signal::SIGTERM);
        d.cgroup2_view = true;
        d.spawn();
        d.init_auto(&[]);
        d
    }

    pub fn start_uninitialised() -> TestDaemon {
        Self::start_uninitialised_with_env(&[])
    }

    pub fn start_uninitialised_with_env(env: &[(String, String)]) -> TestDaemon {
        // Keep it short: unix socket paths must fit in 107 bytes.
        let dir = PathBuf::from(format!("/tmp/lxt-{}", unique("d")));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create LXD_DIR");
        let mut d = TestDaemon {
            dir,
            env: env.to_vec(),
            child: None,
            conf: tempfile::tempdir().expect("tempdir"),
            real_home: tempfile::tempdir().expect("tempdir"),
            cgroup2_view: false,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("lxd.log"))
            .expect("log file");
        let mut cmd = Command::new(bin("lxd"));
        cmd.args(["--group", "root", "--debug"])
            .env("LXD_DIR", &self.dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if self.cgroup2_view {
            // SAFETY: between fork and exec only async-signal-safe system calls are made.
            unsafe {
                cmd.pre_exec(|| {
                    use nix::mount::{MsFlags, mount};
                    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
                    mount(
                        None::<&str>,
                        "/",
                        None::<&str>,
                        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                        None::<&str>,
                    )?;
                    mount(
                        Some("cgroup2"),
                        "/sys/fs/cgroup",
                        Some("cgroup2"),
                        MsFlags::empty(),
                        None::<&str>,
                    )?;
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().expect("spawn lxd");
        self.child = Some(child);
        let out = self.lxd(&["waitready", "--timeout", "30"]);
        assert!(
            out.status.success(),
            "daemon did not become ready: {}",
            self.log()
        );
    }

    /// Restart the daemon process (SIGTERM: containers keep running) and wait until it is ready.
    pub fn restart(&mut self) {
        self.kill_daemon(nix::sys::signal::Signal::SIGTERM);
        self.spawn();
    }

    /// Kill the daemon process with `sig` and reap it.
    pub fn kill_daemon(&mut self, sig: nix::sys::signal::Signal) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
            let _ = c.wait();
        }
    }

    /// Start the daemon again after `kill_daemon`.
    pub fn start_again(&mut self) {
        self.spawn();
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("lxd.log")).unwrap_or_default()
    }

    pub fn lxd(&self, args: &[&str]) -> Output {
        let mut c = Command::new(bin("lxd"));
        c.args(args).env("LXD_DIR", &self.dir);
        run_with_timeout(c, Duration::from_secs(120))
    }

    /// `lxd ARGS` with `input` on stdin (`lxd init --preseed`).
    pub fn lxd_with_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(bin("lxd"))
            .args(args)
            .env("LXD_DIR", &self.dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn lxd");
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(input.as_bytes());
        }
        child.wait_with_output().expect("wait for lxd")
    }

    /// Our client.
    pub fn lxc(&self, args: &[&str]) -> Output {
        let mut c = Command::new(bin("lxc"));
        c.args(args)
            .env("LXD_DIR", &self.dir)
            .env("LXD_CONF", self.conf.path())
            .env("XDG_CACHE_HOME", self.conf.path().join("cache"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("LXD_SOCKET");
        run_with_timeout(c, Duration::from_secs(120))
    }

    /// Our client; panics with its stderr unless it succeeds; returns stdout.
    pub fn lxc_ok(&self, args: &[&str]) -> String {
        let out = self.lxc(args);
        assert!(
            out.status.success(),
            "lxc {args:?} failed ({}): {}\n--- daemon log tail ---\n{}",
            out.status,
            text(&out.stderr),
            tail(&self.log(), 30)
        );
        text(&out.stdout)
    }

    /// The real LXD 5.0 client from Debian's lxd-client, pointed at our socket.
    pub fn real_lxc(&self, args: &[&str]) -> Output {
        let mut c = Command::new("/usr/bin/lxc");
        c.args(args)
            .env("LXD_DIR", &self.dir)
            .env("HOME", self.real_home.path())
            .env("LXD_CONF", self.real_home.path().join("lxc"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("LXD_SOCKET");
        run_with_timeout(c, Duration::from_secs(120))
    }

    /// The environment `real_lxc` runs the real client with, for running it in the background.
    pub fn real_lxc_conf(&self) -> Vec<(String, String)> {
        let mut v = vec![
            (
                "LXD_DIR".to_string(),
                self.dir.to_string_lossy().into_owned(),
            ),
            (
                "HOME".to_string(),
                self.real_home.path().to_string_lossy().into_owned(),
            ),
            (
                "LXD_CONF".to_string(),
                self.real_home
                    .path()
                    .join("lxc")
                    .to_string_lossy()
                    .into_owned(),
            ),
        ];
        v.extend(self.env.iter().cloned());
        v
    }

    pub fn real_lxc_ok(&self, args: &[&str]) -> String {
        let out = self.real_lxc(args);
        assert!(
            out.status.success(),
            "real lxc {args:?} failed ({}): {}\n--- daemon log tail ---\n{}",
            out.status,
            text(&out.stderr),
            tail(&self.log(), 30)
        );
        text(&out.stdout)
    }

    /// Import the busybox test image under `alias`.
    pub fn import_busybox(&self, alias: &str) {
        let img = busybox_image();
        self.lxc_ok(&[
            "image",
            "import",
            img.to_str().expect("utf8 path"),
            "--alias",
            alias,
        ]);
    }

    /// Import the busybox test image under `alias` with the real client.
    pub fn import_busybox_real(&self, alias: &str) {
        let img = busybox_image();
        self.real_lxc_ok(&[
            "image",
            "import",
            img.to_str().expect("utf8 path"),
            "--alias",
            alias,
        ]);
    }

    /// A GET on the API over the raw socket; returns the metadata (panics on an error response).
    pub fn query_json(&self, path: &str) -> serde_json::Value {
        let (code, v) = raw_request(&self.dir, "GET", path, None);
        assert_eq!(code, 200, "GET {path}: {v}");
        v["metadata"].clone()
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        // Stop instances and the daemon the clean way first, then make sure.
        if self.child.is_some() {
            let _ = self.lxd(&["shutdown", "--timeout", "60"]);
            if let Some(mut c) = self.child.take() {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        cleanup_dir(&self.dir);
    }
}

/// Kill leftover monitors and containers of a daemon dir, remove our cgroups and mounts under it,
/// and delete it.
pub fn cleanup_dir(dir: &Path) {
    let run = dir.join("run");
    if let Ok(rd) = std::fs::read_dir(&run) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Ok(s) = std::fs::read_to_string(e.path().join("state.json"))
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&s)
            {
                for k in ["init_pid", "monitor_pid"] {
                    if let Some(pid) = v.get(k).and_then(serde_json::Value::as_i64)
                        && pid > 1
                    {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            remove_cgroups(&format!("lxdrs.payload.{name}"));
        }
    }
    cleanup_networks(dir);
    cleanup_storage(dir);
    // Unmount anything still mounted below the dir, deepest first.
    // With the slash: `/tmp/lxt-d1x1` must not match the mounts of `/tmp/lxt-d1x17`.
    let top = dir.to_string_lossy().into_owned();
    let prefix = format!("{top}/");
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&prefix) || *m == top)
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Remove what storage pools of a daemon dir left behind: zpools whose devices are files under
/// it (zfs-fuse keeps them open even once deleted), and loop devices backed by its files.
pub fn cleanup_storage(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    if let Ok(out) = Command::new("zpool")
        .args(["list", "-H", "-o", "name"])
        .output()
    {
        for name in text(&out.stdout).lines() {
            let status = Command::new("zpool").args(["status", name]).output();
            if status.is_ok_and(|s| text(&s.stdout).contains(&prefix)) {
                // Killed containers may still hold a dataset for a moment ("pool is busy").
                let destroyed = wait_until(Duration::from_secs(10), || {
                    Command::new("zpool")
                        .args(["destroy", "-f", name])
                        .output()
                        .is_ok_and(|o| o.status.success())
                });
                if !destroyed {
                    eprintln!("cleanup: zpool {name} could not be destroyed");
                }
            }
        }
    }
    if let Ok(out) = Command::new("losetup")
        .args(["--list", "--noheadings", "--output", "NAME,BACK-FILE"])
        .output()
    {
        for line in text(&out.stdout).lines() {
            if let Some((dev, file)) = line.trim().split_once(' ')
                && file.trim().starts_with(&prefix)
            {
                // Only this dir's mounts of the device, and only while it is still backed by
                // this dir's file: another test may attach the same loop number right after
                // the kernel auto-cleared it, and `umount -l DEV` would take its pool away.
                for m in mounts_of(dev) {
                    if m.starts_with(&prefix) {
                        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
                    }
                }
                let still_ours = Command::new("losetup")
                    .args(["--list", "--noheadings", "--output", "BACK-FILE", dev])
                    .output()
                    .is_ok_and(|o| text(&o.stdout).trim().starts_with(&prefix));
                if still_ours {
                    let _ = Command::new("losetup").args(["-d", dev]).status();
                }
            }
        }
    }
}

/// Mount points whose source is `dev`.
fn mounts_of(dev: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let source = right.split(' ').nth(1)?;
            (source == dev).then(|| left.split(' ').nth(4).map(str::to_string))?
        })
        .collect()
}

/// Whether zfs-fuse (or OpenZFS) answers.
fn zfs_answers() -> bool {
    Command::new("zpool")
        .arg("list")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// (tests of this process using zfs, the zfs-fuse this process started)
static ZFS_FUSE: std::sync::Mutex<(usize, Option<Child>)> = std::sync::Mutex::new((0, None));

/// Keeps zfs-fuse running while alive. Starts `zfs-fuse --no-daemon` when nothing answers
/// (scripts/test.sh usually started it already) and stops it, by its pid, when the last test
/// of this process that needed it is done; a zfs-fuse someone else started is left alone.
#[derive(Debug)]
pub struct ZfsFuse(());

impl ZfsFuse {
    /// None (with a loud SKIPPED line) when zfs is not installed.
    pub fn start(test: &str) -> Option<ZfsFuse> {
        if Command::new("zpool").arg("-h").output().is_err() {
            eprintln!("\n*** SKIPPED {test}: the zfs tools (zfs-fuse) are not installed ***\n");
            return None;
        }
        let mut z = ZFS_FUSE.lock().unwrap_or_else(|e| e.into_inner());
        if z.1.is_none() && !zfs_answers() {
            let child = Command::new("zfs-fuse")
                .args(["--no-daemon", "--no-kstat-mount"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .expect("start zfs-fuse");
            z.1 = Some(child);
            assert!(
                wait_until(Duration::from_secs(10), zfs_answers),
                "zfs-fuse did not come up"
            );
        }
        z.0 += 1;
        Some(ZfsFuse(()))
    }
}

impl Drop for ZfsFuse {
    fn drop(&mut self) {
        let mut z = ZFS_FUSE.lock().unwrap_or_else(|e| e.into_inner());
        z.0 -= 1;
        if z.0 == 0
            && let Some(mut child) = z.1.take()
        {
            // SIGTERM: zfs-fuse unmounts its datasets and exits within about 5 s.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Remove what a daemon that did not shut down cleanly left of its managed networks: dnsmasq,
/// the bridge and its chains in our nft table.
pub fn cleanup_networks(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir.join("networks")) else {
        return;
    };
    let mut gone = Vec::new();
    for e in rd.flatten() {
        if !e.path().is_dir() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        lxd_network::dnsmasq::kill_stale(&lxd_network::dnsmasq::Paths::new(e.path()), &name);
        if Path::new("/sys/class/net")
            .join(&name)
            .join("bridge")
            .exists()
        {
            let _ = Command::new("ip")
                .args(["link", "del", "dev", &name])
                .status();
        }
        gone.push(lxd_network::firewall::BridgeRules::removed(&name));
    }
    if !gone.is_empty()
        && let Ok(script) = lxd_network::firewall::render_ruleset(&gone)
    {
        let _ = lxd_network::firewall::apply(&script);
    }
}

/// Remove a cgroup directory (and children) under every hierarchy, killing what is left in it.
pub fn remove_cgroups(name: &str) {
    let Ok(rd) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut roots: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    for root in roots {
        let cg = root.join(name);
        if !cg.is_dir() {
            continue;
        }
        for _ in 0..50 {
            kill_tree(&cg);
            if rmdir_tree(&cg) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn kill_tree(cg: &Path) {
    if let Ok(procs) = std::fs::read_to_string(cg.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if let Ok(rd) = std::fs::read_dir(cg) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                kill_tree(&e.path());
            }
        }
    }
}

fn rmdir_tree(cg: &Path) -> bool {
    if let Ok(rd) = std::fs::read_dir(cg) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                rmdir_tree(&e.path());
            }
        }
    }
    std::fs::remove_dir(cg).is_ok()
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Poll `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// One raw HTTP/1.1 request over the daemon's unix socket (to test what clients cannot send:
/// malformed JSON, unknown paths). Returns the status code and the parsed JSON body.
pub fn raw_request(
    dir: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(dir.join("unix.socket"))
        .expect("connect to the daemon socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: unix.socket\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write request");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read response");
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status: u16 = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, rest) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
