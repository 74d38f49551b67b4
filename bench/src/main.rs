//! `lxd-bench`: medians of what users wait for (launch, exec, delete, list with many running
//! instances, a `GET /1.0` round trip) and memory (daemon RSS idle and loaded, host memory per
//! running instance), for our daemon and, with `--with-lxd`, for Debian's real LXD started on the
//! same machine with its own LXD_DIR and no network, alternating the two and printing ratios.
//! `--storage` measures the storage drivers instead (`storage.rs`), `--migrate` copies between
//! two servers (`migrate.rs`).

mod debian;
mod migrate;
mod storage;

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// `busybox` (launch/exec/list/memory) or `debian` (systemd boot, stop, restart, files).
    #[arg(long, default_value = "busybox")]
    workload: String,
    /// The Debian image for `--workload debian` (scripts/build-debian-image.sh).
    #[arg(long, default_value = "/var/cache/lxd-test/debian-12.tar.zst")]
    debian_image: PathBuf,
    /// Also run the workload against Debian's LXD (`apt-get install lxd lxd-client`).
    #[arg(long)]
    with_lxd: bool,
    /// Iterations for launch/exec/delete/list medians.
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Instances running during the list and memory measurements.
    #[arg(long, default_value_t = 20)]
    running: usize,
    /// Directory holding our release binaries (lxd, lxc).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// The busybox image tarball (built by scripts/build-busybox-image.sh).
    #[arg(long, default_value = "target/images/busybox.tar.xz")]
    image: PathBuf,
    /// Measure launch, snapshot, restore and copy per storage driver (dir, btrfs, zfs-fuse)
    /// instead of the default workload.
    #[arg(long)]
    storage: bool,
    /// Measure `lxc copy` of a Debian instance with two snapshots between two servers (needs
    /// the Debian image and the real `lxc` client) instead of the default workload.
    #[arg(long)]
    migrate: bool,
}

/// One daemon under test: how to start it and which client drives it.
#[derive(Debug)]
struct Target {
    label: &'static str,
    dir: PathBuf,
    lxd: PathBuf,
    lxc: PathBuf,
    prefix: &'static str,
    daemon: Option<Child>,
}

impl Target {
    fn env(&self, c: &mut Command) {
        c.env("LXD_DIR", &self.dir)
            .env("HOME", self.dir.join("home"))
            .env("LXD_CONF", self.dir.join("home/lxc"))
            .env_remove("LXD_SOCKET");
    }

    fn run(&self, bin: &Path, args: &[&str]) -> Result<String> {
        let mut c = Command::new(bin);
        c.args(args).stdin(Stdio::null());
        self.env(&mut c);
        let out = c
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "{} {} failed: {}",
                bin.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn lxc(&self, args: &[&str]) -> Result<String> {
        self.run(&self.lxc, args)
    }

    fn timed_lxc(&self, args: &[&str]) -> Result<Duration> {
        settle();
        let t = Instant::now();
        self.lxc(args)?;
        Ok(t.elapsed())
    }

    fn start(&mut self, image: &Path) -> Result<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(self.dir.join("home"))?;
        let log = std::fs::File::create(self.dir.join("bench-daemon.log"))?;
        let mut c = Command::new(&self.lxd);
        c.args(["--group", "root"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        self.env(&mut c);
        self.daemon = Some(c.spawn().context("starting the daemon")?);
        self.run(&self.lxd, &["waitready", "--timeout", "60"])?;
        let preseed = "config:\n  images.auto_update_interval: \"0\"\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n";
        let mut c = Command::new(&self.lxd);
        c.args(["init", "--preseed"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        self.env(&mut c);
        let mut child = c.spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(preseed.as_bytes())?;
        if !child.wait()?.success() {
            bail!("{}: lxd init --preseed failed", self.label);
        }
        self.lxc(&[
            "image",
            "import",
            image.to_str().context("utf8")?,
            "--alias",
            "benchbb",
        ])?;
        Ok(())
    }

    fn pid(&self) -> Option<i32> {
        self.daemon.as_ref().map(|c| c.id() as i32)
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            // SIGPWR: stop instances and exit (both daemons understand it); then by PID.
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
        unmount_below(&self.dir);
        // BENCH_KEEP_LOGS=DIR keeps each daemon's log (e.g. with LXD_LOG=lxd::migration=debug).
        if let Some(keep) = std::env::var_os("BENCH_KEEP_LOGS") {
            let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
            let _ = std::fs::copy(
                self.dir.join("bench-daemon.log"),
                Path::new(&keep).join(format!("{name}.log")),
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Flush what earlier steps (of either daemon) left dirty, so that their writeback does not land
/// in the next measurement: every timed step starts from the same clean state.
pub(crate) fn settle() {
    let _ = Command::new("sync").status();
}

fn unmount_below(dir: &Path) {
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
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// One raw `GET /1.0` over the unix socket.
fn get_server(dir: &Path) -> Result<Duration> {
    let t = Instant::now();
    let mut s = std::os::unix::net::UnixStream::connect(dir.join("unix.socket"))?;
    s.write_all(b"GET /1.0 HTTP/1.1\r\nHost: unix.socket\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    if !buf.starts_with(b"HTTP/1.1 200") {
        bail!("GET /1.0 failed");
    }
    Ok(t.elapsed())
}

fn status_kib(pid: i32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Proportional set size of a process in KiB.
fn pss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The host-side helper processes of the running containers: our `lxd forkstart` monitors, or
/// LXD's `[lxc monitor]` processes, found by their command line and LXD_DIR.
fn monitors(t: &Target) -> Vec<i32> {
    let mut out = Vec::new();
    let dir = t.dir.to_string_lossy().into_owned();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let ours = cmd.contains(" forkstart ") && cmd.contains(&dir);
        let lxd = cmd.starts_with("[lxc monitor]") && cmd.contains(&dir);
        if ours || lxd {
            out.push(pid);
        }
    }
    out
}

#[derive(Debug, Default, Clone)]
struct Results {
    launch: Duration,
    exec: Duration,
    delete: Duration,
    list: Duration,
    get: Duration,
    rss_idle_kib: u64,
    rss_loaded_kib: u64,
    per_instance_kib: u64,
}

fn run_all(targets: &mut [Target], args: &Args) -> Result<Vec<Results>> {
    let n = targets.len();
    let mut launch = vec![vec![]; n];
    let mut exec = vec![vec![]; n];
    let mut delete = vec![vec![]; n];
    let mut list = vec![vec![]; n];
    let mut get = vec![vec![]; n];
    let mut res = vec![Results::default(); n];
    for (i, t) in targets.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(500));
        res[i].rss_idle_kib = status_kib(t.pid().unwrap_or(0), "VmRSS:");
    }
    // Alternate the daemons iteration by iteration so drift affects both alike.
    for it in 0..args.iterations {
        for (i, t) in targets.iter().enumerate() {
            let name = format!("{}-l{it}", t.prefix);
            launch[i].push(t.timed_lxc(&["launch", "benchbb", &name])?);
            exec[i].push(t.timed_lxc(&["exec", &name, "--", "true"])?);
            delete[i].push(t.timed_lxc(&["delete", "--force", &name])?);
        }
    }
    for _ in 0..200 {
        for (i, t) in targets.iter().enumerate() {
            get[i].push(get_server(&t.dir)?);
        }
    }
    for t in targets.iter() {
        for k in 0..args.running {
            t.lxc(&["launch", "benchbb", &format!("{}-r{k}", t.prefix)])?;
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..args.iterations {
        for (i, t) in targets.iter().enumerate() {
            list[i].push(t.timed_lxc(&["list"])?);
        }
    }
    for (i, t) in targets.iter().enumerate() {
        res[i].rss_loaded_kib = status_kib(t.pid().unwrap_or(0), "VmRSS:");
        let mons = monitors(t);
        if !mons.is_empty() {
            res[i].per_instance_kib =
                mons.iter().map(|p| pss_kib(*p)).sum::<u64>() / mons.len() as u64;
        }
        res[i].launch = median(launch[i].clone());
        res[i].exec = median(exec[i].clone());
        res[i].delete = median(delete[i].clone());
        res[i].list = median(list[i].clone());
        res[i].get = median(get[i].clone());
    }
    Ok(res)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("the benchmark starts daemons and containers: run it as root");
    }
    let ours_lxd = args.bin_dir.join("lxd");
    let ours_lxc = args.bin_dir.join("lxc");
    for p in [&ours_lxd, &ours_lxc, &args.image] {
        if !p.exists() {
            bail!(
                "{} is missing (cargo build --release; scripts/build-busybox-image.sh target/images)",
                p.display()
            );
        }
    }
    let mut targets = vec![Target {
        label: "ours",
        dir: PathBuf::from("/tmp/lxb-ours"),
        lxd: std::fs::canonicalize(&ours_lxd)?,
        lxc: std::fs::canonicalize(&ours_lxc)?,
        prefix: "bo",
        daemon: None,
    }];
    if args.with_lxd {
        if !Path::new("/usr/bin/lxd").exists() {
            bail!("--with-lxd needs Debian's lxd and lxd-client packages");
        }
        targets.push(Target {
            label: "lxd",
            dir: PathBuf::from("/tmp/lxb-real"),
            lxd: PathBuf::from("/usr/bin/lxd"),
            lxc: PathBuf::from("/usr/bin/lxc"),
            prefix: "bl",
            daemon: None,
        });
    }
    let image = std::fs::canonicalize(&args.image)?;
    let mut result = Ok(vec![]);
    for t in targets.iter_mut() {
        if let Err(e) = t.start(&image) {
            result = Err(e.context(format!("starting {}", t.label)));
            break;
        }
    }
    if result.is_ok() && args.migrate {
        let r = migrate::run(&mut targets, &image, &args.debian_image, args.iterations);
        for t in targets.iter_mut() {
            t.stop();
        }
        migrate::print(&r?, args.iterations);
        return Ok(());
    }
    if result.is_ok() && args.storage {
        let r = storage::run(&mut targets, args.iterations);
        for t in targets.iter_mut() {
            t.stop();
        }
        return r;
    }
    let mut debian_res = None;
    if result.is_ok() && args.workload == "debian" {
        let img = args.debian_image.to_str().unwrap_or("").to_string();
        let mut r = Ok(());
        for t in targets.iter() {
            if let Err(e) = t.lxc(&["image", "import", &img, "--alias", "benchdeb"]) {
                r = Err(e);
                break;
            }
        }
        result = r.and_then(|()| {
            debian_res = Some(debian::run(
                &targets,
                args.iterations,
                args.running,
                "benchdeb",
            )?);
            Ok(vec![])
        });
    } else if result.is_ok() {
        result = run_all(&mut targets, &args);
    }
    for t in targets.iter_mut() {
        t.stop();
    }
    let res = result?;
    if let Some(d) = debian_res {
        debian::print(&d, args.iterations, args.running);
        return Ok(());
    }
    println!(
        "\nmedians of {} iterations, {} instances running for list/memory (busybox image, dir pool)\n",
        args.iterations, args.running
    );
    type Show = Box<dyn Fn(&Results) -> String>;
    type Value = Box<dyn Fn(&Results) -> f64>;
    let rows: Vec<(&str, Show, Value)> = vec![
        (
            "launch",
            Box::new(|r: &Results| ms(r.launch)),
            Box::new(|r: &Results| r.launch.as_secs_f64()),
        ),
        (
            "exec true",
            Box::new(|r: &Results| ms(r.exec)),
            Box::new(|r: &Results| r.exec.as_secs_f64()),
        ),
        (
            "delete --force",
            Box::new(|r: &Results| ms(r.delete)),
            Box::new(|r: &Results| r.delete.as_secs_f64()),
        ),
        (
            "list (N running)",
            Box::new(|r: &Results| ms(r.list)),
            Box::new(|r: &Results| r.list.as_secs_f64()),
        ),
        (
            "GET /1.0",
            Box::new(|r: &Results| ms(r.get)),
            Box::new(|r: &Results| r.get.as_secs_f64()),
        ),
        (
            "daemon RSS idle",
            Box::new(|r: &Results| format!("{:.1} MiB", r.rss_idle_kib as f64 / 1024.0)),
            Box::new(|r: &Results| r.rss_idle_kib as f64),
        ),
        (
            "daemon RSS N running",
            Box::new(|r: &Results| format!("{:.1} MiB", r.rss_loaded_kib as f64 / 1024.0)),
            Box::new(|r: &Results| r.rss_loaded_kib as f64),
        ),
        (
            "host mem / instance (monitor PSS)",
            Box::new(|r: &Results| format!("{:.2} MiB", r.per_instance_kib as f64 / 1024.0)),
            Box::new(|r: &Results| r.per_instance_kib as f64),
        ),
    ];
    print!("{:<36}{:>14}", "", "ours");
    if res.len() > 1 {
        print!("{:>14}{:>10}", "lxd", "ratio");
    }
    println!();
    for (label, show, val) in rows {
        print!("{label:<36}{:>14}", show(&res[0]));
        if res.len() > 1 {
            let ratio = if val(&res[1]) > 0.0 {
                val(&res[0]) / val(&res[1])
            } else {
                f64::NAN
            };
            print!("{:>14}{:>10.2}", show(&res[1]), ratio);
        }
        println!();
    }
    Ok(())
}
