//! `lxd-bench --migrate`: `lxc copy SRC:C DST:` of a Debian instance with two snapshots between
//! two servers on this machine, over HTTPS on loopback: our daemon to our daemon, and with
//! `--with-lxd` Debian's LXD to Debian's LXD. Both pairs are driven by the real LXD 5.0 client,
//! so only the daemons differ; the pairs alternate iteration by iteration. Once between dir
//! pools (rsync) and once between btrfs pools on loop files (send/receive, for both daemons).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Target, median, ms, settle};

/// The real client with `t`'s client config, for both flavours.
fn real(t: &Target, args: &[&str]) -> Result<String> {
    t.run(Path::new("/usr/bin/lxc"), args)
}

fn listen(t: &Target) -> Result<String> {
    let port = lxd_tests::streams::free_port();
    real(
        t,
        &[
            "config",
            "set",
            "core.https_address",
            &format!("127.0.0.1:{port}"),
        ],
    )?;
    real(t, &["config", "set", "core.trust_password", "bench"])?;
    Ok(format!("https://127.0.0.1:{port}"))
}

/// The pool drivers measured, in order.
pub const DRIVERS: [&str; 2] = ["dir", "btrfs"];

#[derive(Debug, Default, Clone)]
pub struct MigrateResults {
    pub copy: Duration,
    pub copy_instance_only: Duration,
    pub refresh: Duration,
}

pub fn run(
    sources: &mut [Target],
    busybox: &Path,
    debian: &Path,
    iterations: usize,
) -> Result<Vec<MigrateResults>> {
    let mut dests: Vec<Target> = sources
        .iter()
        .map(|s| Target {
            label: s.label,
            dir: PathBuf::from(format!("{}-b", s.dir.display())),
            lxd: s.lxd.clone(),
            lxc: s.lxc.clone(),
            prefix: s.prefix,
            daemon: None,
        })
        .collect();
    let res = run_pairs(sources, &mut dests, busybox, debian, iterations);
    for d in dests.iter_mut() {
        d.stop();
    }
    res
}

fn run_pairs(
    sources: &mut [Target],
    dests: &mut [Target],
    busybox: &Path,
    debian: &Path,
    iterations: usize,
) -> Result<Vec<MigrateResults>> {
    let n = sources.len();
    for (s, d) in sources.iter().zip(dests.iter_mut()) {
        d.start(busybox)
            .with_context(|| format!("starting the second {} daemon", d.label))?;
        listen(s)?;
        let url = listen(d)?;
        real(
            s,
            &[
                "remote",
                "add",
                "dst",
                &url,
                "--accept-certificate",
                "--password",
                "bench",
            ],
        )?;
        real(
            s,
            &[
                "image",
                "import",
                debian.to_str().context("utf8")?,
                "--alias",
                "benchdeb",
            ],
        )?;
        for driver in DRIVERS {
            let pool = pool_for(s, driver)?;
            pool_for(d, driver)?;
            let src = format!("{}-{driver}", s.prefix);
            real(s, &["init", "benchdeb", &src, "-s", &pool])?;
            real(s, &["snapshot", &src, "s0"])?;
            real(s, &["snapshot", &src, "s1"])?;
        }
    }
    // Deleted btrfs subvolumes are cleaned up by the kernel after the fact: each step waits for
    // that cleaning (of every daemon's pools) too, so it does not land in the next step.
    let btrfs_pools: Vec<PathBuf> = sources
        .iter()
        .chain(dests.iter())
        .map(|t| t.dir.join("storage-pools").join(pool_name("btrfs")))
        .collect();
    let settle_all = || {
        settle();
        for p in &btrfs_pools {
            let _ = std::process::Command::new("btrfs")
                .args(["subvolume", "sync"])
                .arg(p)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    };
    // [driver][daemon] samples
    let mut copy = vec![vec![vec![]; n]; DRIVERS.len()];
    let mut only = copy.clone();
    let mut refresh = copy.clone();
    for it in 0..iterations {
        for (k, driver) in DRIVERS.iter().enumerate() {
            for (i, s) in sources.iter().enumerate() {
                let pool = pool_name(driver);
                let src = format!("{}-{driver}", s.prefix);
                let dst = format!("dst:{}-{driver}-m{it}", s.prefix);
                let dst_only = format!("dst:{}-{driver}-o{it}", s.prefix);
                let timed = |args: &[&str]| -> Result<Duration> {
                    settle_all();
                    let t = std::time::Instant::now();
                    real(s, args)?;
                    let e = t.elapsed();
                    eprintln!("{} {driver} {} #{it}: {e:?}", s.label, args.join(" "));
                    Ok(e)
                };
                copy[k][i].push(timed(&["copy", &src, &dst, "-s", &pool])?);
                refresh[k][i].push(timed(&["copy", "--refresh", &src, &dst])?);
                only[k][i].push(timed(&[
                    "copy",
                    "--instance-only",
                    &src,
                    &dst_only,
                    "-s",
                    &pool,
                ])?);
            }
        }
    }
    // The copies go only now: ext4 allocates inodes slowly for about 30 s after many were
    // freed (`recently_deleted`), which would slow whichever copy came next.
    for s in sources.iter() {
        for driver in DRIVERS {
            for it in 0..iterations {
                for kind in ["m", "o"] {
                    real(
                        s,
                        &["delete", &format!("dst:{}-{driver}-{kind}{it}", s.prefix)],
                    )?;
                }
            }
        }
    }
    Ok((0..DRIVERS.len())
        .flat_map(|k| {
            let (copy, only, refresh) = (&copy[k], &only[k], &refresh[k]);
            (0..n).map(move |i| MigrateResults {
                copy: median(copy[i].clone()),
                copy_instance_only: median(only[i].clone()),
                refresh: median(refresh[i].clone()),
            })
        })
        .collect())
}

fn pool_name(driver: &str) -> String {
    if driver == "dir" {
        "default".into()
    } else {
        format!("bench-{driver}")
    }
}

/// The pool of `driver` on `t`: the default dir pool, or a new pool on a loop file.
fn pool_for(t: &Target, driver: &str) -> Result<String> {
    if driver == "dir" {
        return Ok(pool_name(driver));
    }
    super::storage::create_pool(t, driver)
}

/// `res` holds, per driver of `DRIVERS`, one result per daemon (ours, then LXD's if measured).
pub fn print(res: &[MigrateResults], iterations: usize) {
    let per = res.len() / DRIVERS.len();
    for (driver, res) in DRIVERS.iter().zip(res.chunks(per.max(1))) {
        print_one(driver, res, iterations);
    }
}

fn print_one(driver: &str, res: &[MigrateResults], iterations: usize) {
    println!(
        "\nlxc copy SRC:C DST: between two servers on loopback (Debian 12 instance, 2 snapshots, {driver} pools, the real LXD 5.0 client for both): medians of {iterations}\n"
    );
    type Get = fn(&MigrateResults) -> Duration;
    let rows: [(&str, Get); 3] = [
        ("copy with 2 snapshots", |r| r.copy),
        ("copy --refresh (unchanged)", |r| r.refresh),
        ("copy --instance-only", |r| r.copy_instance_only),
    ];
    print!("{:<36}{:>14}", "", "ours");
    if res.len() > 1 {
        print!("{:>14}{:>10}", "lxd", "ratio");
    }
    println!();
    for (label, get) in rows {
        print!("{label:<36}{:>14}", ms(get(&res[0])));
        if res.len() > 1 {
            let ratio = get(&res[0]).as_secs_f64() / get(&res[1]).as_secs_f64().max(1e-9);
            print!("{:>14}{:>10.2}", ms(get(&res[1])), ratio);
        }
        println!();
    }
}
