//! `lxd-bench --migrate`: `lxc copy SRC:C DST:` of a Debian instance with two snapshots between
//! two servers on this machine, over HTTPS on loopback: our daemon to our daemon, and with
//! `--with-lxd` Debian's LXD to Debian's LXD. Both pairs are driven by the real LXD 5.0 client,
//! so only the daemons differ; the pairs alternate iteration by iteration.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Target, median, ms};

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
        let src = format!("{}-msrc", s.prefix);
        real(s, &["init", "benchdeb", &src])?;
        real(s, &["snapshot", &src, "s0"])?;
        real(s, &["snapshot", &src, "s1"])?;
    }
    let mut copy = vec![vec![]; n];
    let mut only = vec![vec![]; n];
    let mut refresh = vec![vec![]; n];
    for it in 0..iterations {
        for (i, s) in sources.iter().enumerate() {
            let src = format!("{}-msrc", s.prefix);
            let dst = format!("dst:{}-m{it}", s.prefix);
            let t = std::time::Instant::now();
            real(s, &["copy", &src, &dst])?;
            copy[i].push(t.elapsed());
            let t = std::time::Instant::now();
            real(s, &["copy", "--refresh", &src, &dst])?;
            refresh[i].push(t.elapsed());
            real(s, &["delete", &dst])?;
            let t = std::time::Instant::now();
            real(s, &["copy", "--instance-only", &src, &dst])?;
            only[i].push(t.elapsed());
            real(s, &["delete", &dst])?;
        }
    }
    Ok((0..n)
        .map(|i| MigrateResults {
            copy: median(copy[i].clone()),
            copy_instance_only: median(only[i].clone()),
            refresh: median(refresh[i].clone()),
        })
        .collect())
}

pub fn print(res: &[MigrateResults], iterations: usize) {
    println!(
        "\nlxc copy SRC:C DST: between two servers on loopback (Debian 12 instance, 2 snapshots, dir pools, the real LXD 5.0 client for both): medians of {iterations}\n"
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
