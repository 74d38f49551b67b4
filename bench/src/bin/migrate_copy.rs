//! `lxd-bench-migrate`: what `lxc copy src:C dst:C` costs between two servers on one machine for
//! a stopped Debian instance with two snapshots (LXD's migration protocol over loopback HTTPS),
//! ours to ours and, with `--with-lxd`, Debian's real LXD to real LXD. Both pairs are driven by
//! the same client (the real LXD 5.0 `lxc`), have dir pools and no network; medians and ratio.

use anyhow::{Result, bail};
use clap::Parser;
use lxd_tests::real::RealLxd;
use lxd_tests::streams::free_port;
use lxd_tests::{TestDaemon, text};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Copy a Debian instance with two snapshots between two servers")]
struct Args {
    /// Also measure Debian's LXD (`apt-get install lxd lxd-client`)
    #[arg(long)]
    with_lxd: bool,
    /// Iterations (each copies and deletes the copy)
    #[arg(long, default_value_t = 3)]
    iterations: usize,
    /// The Debian image (built by scripts/build-debian-image.sh)
    #[arg(long, default_value = "/var/cache/lxd-test/debian-12.tar.zst")]
    image: PathBuf,
}

/// One server of a pair: ours or a real LXD.
enum Server {
    Ours(TestDaemon),
    Real(RealLxd),
}

impl Server {
    /// The real client against this server's unix socket (its own config).
    fn admin(&self, args: &[&str]) -> Result<String> {
        let out = match self {
            Server::Ours(d) => d.real_lxc(args),
            Server::Real(r) => r.lxc(args),
        };
        if !out.status.success() {
            bail!(
                "lxc {} failed: {}",
                args.join(" "),
                text(&out.stderr).trim()
            );
        }
        Ok(text(&out.stdout))
    }

    /// Listen on a loopback port with a trust password; returns the URL.
    fn listen(&self) -> Result<String> {
        let port = free_port();
        self.admin(&[
            "config",
            "set",
            "core.https_address",
            &format!("127.0.0.1:{port}"),
        ])?;
        self.admin(&["config", "set", "core.trust_password", "bench"])?;
        Ok(format!("https://127.0.0.1:{port}"))
    }
}

/// A client configuration holding both servers as remotes `src` and `dst`.
struct Client {
    home: tempfile::TempDir,
}

impl Client {
    fn run(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("/usr/bin/lxc")
            .args(args)
            .env("HOME", self.home.path())
            .env("LXD_CONF", self.home.path().join("lxc"))
            .env_remove("LXD_DIR")
            .env_remove("LXD_SOCKET")
            .output()?;
        if !out.status.success() {
            bail!(
                "lxc {} failed: {}",
                args.join(" "),
                text(&out.stderr).trim()
            );
        }
        Ok(text(&out.stdout))
    }

    fn new(src: &str, dst: &str) -> Result<Client> {
        let c = Client {
            home: tempfile::tempdir()?,
        };
        for (name, url) in [("src", src), ("dst", dst)] {
            c.run(&[
                "remote",
                "add",
                name,
                url,
                "--accept-certificate",
                "--password",
                "bench",
            ])?;
        }
        Ok(c)
    }
}

/// Start a pair, prepare `src:deb` with two snapshots, and time `iterations` copies.
fn measure(pair: (Server, Server), image: &Path, iterations: usize) -> Result<Vec<Duration>> {
    let (src, dst) = pair;
    let client = Client::new(&src.listen()?, &dst.listen()?)?;
    src.admin(&[
        "image",
        "import",
        image.to_str().unwrap_or_default(),
        "--alias",
        "benchdeb",
    ])?;
    src.admin(&["init", "benchdeb", "deb"])?;
    src.admin(&["snapshot", "deb", "s1"])?;
    src.admin(&["snapshot", "deb", "s2"])?;
    let mut times = Vec::new();
    for i in 0..iterations {
        let name = format!("copy{i}");
        let t = Instant::now();
        client.run(&["copy", "src:deb", &format!("dst:{name}")])?;
        times.push(t.elapsed());
        let snaps = client.run(&["info", &format!("dst:{name}")])?;
        if !snaps.contains("s2") {
            bail!("the copy lacks its snapshots:\n{snaps}");
        }
        client.run(&["delete", &format!("dst:{name}")])?;
    }
    Ok(times)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix::unistd::geteuid().is_root() {
        bail!("the benchmark starts daemons: run it as root");
    }
    if !args.image.exists() {
        bail!(
            "{} is missing: run scripts/build-debian-image.sh /var/cache/lxd-test",
            args.image.display()
        );
    }
    let ours = || Server::Ours(TestDaemon::start_with(&["--network-bridge", "none"]));
    let o = median(measure((ours(), ours()), &args.image, args.iterations)?);
    let l = if args.with_lxd {
        if !lxd_tests::real::available() {
            bail!("--with-lxd needs Debian's lxd and lxd-client packages");
        }
        let real = || Server::Real(RealLxd::start(&[]));
        Some(median(measure(
            (real(), real()),
            &args.image,
            args.iterations,
        )?))
    } else {
        None
    };
    println!(
        "\nmedian of {} copies: stopped Debian 12 instance with two snapshots, dir pools, loopback HTTPS, real lxc client\n",
        args.iterations
    );
    println!("{:<28}{:>12}{:>12}{:>10}", "", "ours", "lxd", "ratio");
    match l {
        Some(l) => println!(
            "{:<28}{:>10.2} s{:>10.2} s{:>10.2}",
            "lxc copy src:C dst:C",
            o.as_secs_f64(),
            l.as_secs_f64(),
            o.as_secs_f64() / l.as_secs_f64()
        ),
        None => println!(
            "{:<28}{:>10.2} s{:>12}{:>10}",
            "lxc copy src:C dst:C",
            o.as_secs_f64(),
            "-",
            "-"
        ),
    }
    Ok(())
}
