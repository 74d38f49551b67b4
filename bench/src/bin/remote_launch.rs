//! `lxd-bench-remote`: what `lxc launch images:ALIAS` costs when the image comes from a
//! simplestreams server: the first launch (index, download, verify, unpack) and a launch from
//! the cached image, for our daemon and, with `--with-lxd`, for Debian's LXD pulling the same
//! image from the same loopback HTTPS server (a test CA trusted through `SSL_CERT_FILE`).
//! Medians of N, the two daemons alternating; nothing leaves the machine.

use anyhow::{Context, Result, bail};
use clap::Parser;
use lxd_tests::streams::{FileServer, Layout, ProductSpec, StreamsTree, TestCa};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Also measure Debian's LXD (`apt-get install lxd lxd-client`).
    #[arg(long)]
    with_lxd: bool,
    /// Iterations per measurement.
    #[arg(long, default_value_t = 5)]
    iterations: usize,
    /// Directory holding our release binaries (lxd, lxc).
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    /// Image layout in the stream: split (lxd.tar.xz + squashfs, as images: serves) or unified.
    #[arg(long, default_value = "split")]
    layout: String,
}

#[derive(Debug)]
struct Target {
    label: &'static str,
    dir: PathBuf,
    lxd: PathBuf,
    lxc: PathBuf,
    env: Vec<(String, String)>,
    daemon: Option<Child>,
}

impl Target {
    fn cmd(&self, bin: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.args(args)
            .env("LXD_DIR", &self.dir)
            .env("HOME", self.dir.join("home"))
            .env("LXD_CONF", self.dir.join("home/lxc"))
            .env("XDG_CACHE_HOME", self.dir.join("home/cache"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("LXD_SOCKET")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, bin: &Path, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(bin, args)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "{}: {} {} failed: {}",
                self.label,
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

    fn timed(&self, args: &[&str]) -> Result<Duration> {
        let t = Instant::now();
        self.lxc(args)?;
        Ok(t.elapsed())
    }

    fn start(&mut self, url: &str) -> Result<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(self.dir.join("home"))?;
        let log = std::fs::File::create(self.dir.join("bench-daemon.log"))?;
        let mut c = self.cmd(&self.lxd, &["--group", "root"]);
        c.stdout(Stdio::null()).stderr(log);
        self.daemon = Some(c.spawn().context("starting the daemon")?);
        self.run(&self.lxd, &["waitready", "--timeout", "60"])?;
        let preseed = "config:\n  images.auto_update_interval: \"0\"\nstorage_pools:\n- name: default\n  driver: dir\nprofiles:\n- name: default\n  devices:\n    root:\n      path: /\n      pool: default\n      type: disk\n";
        let mut c = self.cmd(&self.lxd, &["init", "--preseed"]);
        c.stdin(Stdio::piped()).stdout(Stdio::null());
        let mut child = c.spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(preseed.as_bytes())?;
        if !child.wait()?.success() {
            bail!("{}: lxd init --preseed failed", self.label);
        }
        self.lxc(&["remote", "add", "bench", url, "--protocol=simplestreams"])?;
        Ok(())
    }

    /// Delete every image (so the next launch downloads again).
    fn drop_images(&self) -> Result<()> {
        let out = self.lxc(&["image", "list", "--format", "csv", "-c", "F"])?;
        for fp in out.lines().map(str::trim).filter(|l| !l.is_empty()) {
            self.lxc(&["image", "delete", fp])?;
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
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
        lxd_tests::cleanup_dir(&self.dir);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("the benchmark starts daemons and containers: run it as root");
    }
    let layout = match args.layout.as_str() {
        "split" => Layout::SplitSquashfs,
        "unified" => Layout::Unified,
        other => bail!("unknown layout {other} (split or unified)"),
    };
    let ca = TestCa::new();
    let tree_dir = tempfile::tempdir()?;
    let mut tree = StreamsTree::new(tree_dir.path());
    let product = ProductSpec {
        id: "busybox:bench:amd64:default".into(),
        aliases: vec!["busybox/bench".into()],
        os: "BusyBox".into(),
        release: "bench".into(),
        release_title: "bench".into(),
        arch: "amd64".into(),
    };
    let image = lxd_tests::busybox_image_named("bench-remote");
    let added = tree.add(&product, "20240101_0000", &image, layout);
    // What a launch downloads (a split squashfs version also lists a root.tar.xz).
    let size: u64 = added
        .files
        .iter()
        .filter(|f| !(layout == Layout::SplitSquashfs && f.ends_with("root.tar.xz")))
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let server = FileServer::start(tree_dir.path(), &ca);

    let mut targets = vec![Target {
        label: "ours",
        dir: PathBuf::from("/tmp/lxb-rem-ours"),
        lxd: std::fs::canonicalize(args.bin_dir.join("lxd"))?,
        lxc: std::fs::canonicalize(args.bin_dir.join("lxc"))?,
        env: ca.env(),
        daemon: None,
    }];
    if args.with_lxd {
        if !lxd_tests::real::available() {
            bail!("--with-lxd needs Debian's lxd and lxd-client packages");
        }
        let mut env = ca.env();
        // Never let the real LXD reach the internet (Go does not proxy loopback).
        env.push(("https_proxy".into(), "http://127.0.0.1:9".into()));
        env.push(("http_proxy".into(), "http://127.0.0.1:9".into()));
        targets.push(Target {
            label: "lxd",
            dir: PathBuf::from("/tmp/lxb-rem-real"),
            lxd: PathBuf::from("/usr/bin/lxd"),
            lxc: PathBuf::from("/usr/bin/lxc"),
            env,
            daemon: None,
        });
    }
    let mut result = Ok(());
    for t in targets.iter_mut() {
        if let Err(e) = t.start(&server.url) {
            result = Err(e);
            break;
        }
    }
    let mut first = vec![vec![]; targets.len()];
    let mut cached = vec![vec![]; targets.len()];
    if result.is_ok() {
        result = (|| -> Result<()> {
            for it in 0..args.iterations {
                for (i, t) in targets.iter().enumerate() {
                    t.drop_images()?;
                    let a = format!("rb{it}a");
                    first[i].push(t.timed(&["launch", "bench:busybox/bench", &a])?);
                    let b = format!("rb{it}b");
                    cached[i].push(t.timed(&["launch", "bench:busybox/bench", &b])?);
                    t.lxc(&["delete", "--force", &a, &b])?;
                }
            }
            Ok(())
        })();
    }
    for t in targets.iter_mut() {
        t.stop();
    }
    result?;
    println!(
        "\nmedians of {} iterations: busybox image ({} layout, {:.2} MB) from a loopback HTTPS simplestreams server, dir pool\n",
        args.iterations,
        args.layout,
        size as f64 / 1e6
    );
    print!("{:<40}{:>14}", "", "ours");
    if targets.len() > 1 {
        print!("{:>14}{:>10}", "lxd", "ratio");
    }
    println!();
    for (label, v) in [
        ("launch, first (index+download+unpack)", &first),
        ("launch, image cached", &cached),
    ] {
        let ours = median(v[0].clone());
        print!("{label:<40}{:>14}", ms(ours));
        if v.len() > 1 {
            let lxd = median(v[1].clone());
            print!(
                "{:>14}{:>10.2}",
                ms(lxd),
                ours.as_secs_f64() / lxd.as_secs_f64().max(1e-9)
            );
        }
        println!();
    }
    Ok(())
}
