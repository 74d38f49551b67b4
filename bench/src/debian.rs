//! The Debian (systemd) workload: launch until `systemctl is-system-running` says `running`, a
//! clean stop, a restart back to `running`, exec with several Debian instances running, and file
//! push/pull of 10 MiB and 1 GiB. Same alternation and ratios as the busybox workload. Then launch
//! to `running` on btrfs (both daemons) and zfs-fuse (ours), each against systemd's own startup
//! time in that instance (`systemd-analyze time`).

use anyhow::{Result, bail};
use std::time::{Duration, Instant};

use super::{Target, median, ms};

#[derive(Debug, Default, Clone)]
pub struct DebianResults {
    pub launch_to_running: Duration,
    pub stop: Duration,
    pub restart_to_running: Duration,
    pub exec_loaded: Duration,
    pub push_10m: Duration,
    pub pull_10m: Duration,
    pub push_1g: Duration,
    pub pull_1g: Duration,
    /// Launch to systemd's "startup finished", on systemd's clock (dir pool).
    pub launch_to_finished: Duration,
    /// Per loop-backed pool driver: (driver, launch to systemd's "startup finished", systemd's
    /// own startup), medians.
    pub pools: Vec<(&'static str, Duration, Duration)>,
}

/// The host's CLOCK_MONOTONIC in microseconds: containers share it (no time namespace), so
/// systemd's own `*TimestampMonotonic` values inside compare with it directly.
fn monotonic_us() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid, exclusively borrowed `t`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000 + t.tv_nsec as u64 / 1000
}

/// From `launched_at` (host monotonic µs) to systemd's "startup finished" in `name`, and
/// systemd's own startup (its start to "startup finished", as `systemd-analyze time` reports):
/// exact, without the polling's granularity.
fn systemd_times(t: &Target, name: &str, launched_at: u64) -> Result<(Duration, Duration)> {
    let out = t.lxc(&[
        "exec",
        name,
        "--",
        "systemctl",
        "show",
        "-p",
        "UserspaceTimestampMonotonic",
        "-p",
        "FinishTimestampMonotonic",
        "--value",
    ])?;
    let v: Vec<u64> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let [userspace, finish] = v[..] else {
        bail!("unexpected systemctl show output: {out}");
    };
    if finish < launched_at || finish < userspace {
        bail!("systemd's timestamps in {name} do not follow the launch");
    }
    Ok((
        Duration::from_micros(finish - launched_at),
        Duration::from_micros(finish - userspace),
    ))
}

/// Launch to `running` on a new loop-backed pool of `driver`, and systemd's own startup time.
fn on_pool(
    t: &Target,
    driver: &str,
    alias: &str,
    iterations: usize,
) -> Result<(Duration, Duration)> {
    let pool = super::storage::create_pool(t, driver)?;
    let (mut launch, mut boot) = (vec![], vec![]);
    for it in 0..iterations {
        let name = format!("{}-deb{driver}{it}", t.prefix);
        super::settle();
        let t0 = monotonic_us();
        t.lxc(&["launch", alias, &name, "-s", &pool])?;
        wait_running(t, &name)?;
        let (to_finished, own) = systemd_times(t, &name, t0)?;
        launch.push(to_finished);
        boot.push(own);
        t.lxc(&["delete", "--force", &name])?;
    }
    let _ = t.lxc(&["storage", "delete", &pool]);
    Ok((median(launch), median(boot)))
}

fn wait_running(t: &Target, name: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Ok(s) = t.lxc(&["exec", name, "--", "systemctl", "is-system-running"])
            && s.trim() == "running"
        {
            return Ok(());
        }
        // `is-system-running` exits non-zero while starting or degraded; keep polling.
        if Instant::now() > deadline {
            bail!("{}: {name} did not reach running", t.label);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn file(dir: &std::path::Path, name: &str, mib: usize) -> Result<std::path::PathBuf> {
    let p = dir.join(name);
    if !p.exists() {
        let st = std::process::Command::new("dd")
            .args([
                "if=/dev/urandom",
                &format!("of={}", p.display()),
                "bs=1M",
                &format!("count={mib}"),
                "status=none",
            ])
            .status()?;
        if !st.success() {
            bail!("dd failed");
        }
    }
    Ok(p)
}

pub fn run(
    targets: &[Target],
    iterations: usize,
    running: usize,
    alias: &str,
) -> Result<Vec<DebianResults>> {
    let n = targets.len();
    let mut l = vec![vec![]; n];
    let mut s = vec![vec![]; n];
    let mut r = vec![vec![]; n];
    let mut f = vec![vec![]; n];
    for it in 0..iterations {
        for (i, t) in targets.iter().enumerate() {
            let name = format!("{}-deb{it}", t.prefix);
            super::settle();
            let (t0, m0) = (Instant::now(), monotonic_us());
            t.lxc(&["launch", alias, &name])?;
            wait_running(t, &name)?;
            l[i].push(t0.elapsed());
            f[i].push(systemd_times(t, &name, m0)?.0);
            s[i].push(t.timed_lxc(&["stop", &name])?);
            t.lxc(&["start", &name])?;
            wait_running(t, &name)?;
            let t0 = Instant::now();
            t.lxc(&["restart", &name])?;
            wait_running(t, &name)?;
            r[i].push(t0.elapsed());
            t.lxc(&["delete", "--force", &name])?;
        }
    }
    let tmp = std::env::temp_dir().join("lxd-bench-files");
    std::fs::create_dir_all(&tmp)?;
    let f10 = file(&tmp, "10m", 10)?;
    let f1g = file(&tmp, "1g", 1024)?;
    let mut res = vec![DebianResults::default(); n];
    let zfs = super::storage::ZfsFuse::start();
    for (i, t) in targets.iter().enumerate() {
        for k in 0..running {
            let name = format!("{}-debr{k}", t.prefix);
            t.lxc(&["launch", alias, &name])?;
        }
        for k in 0..running {
            wait_running(t, &format!("{}-debr{k}", t.prefix))?;
        }
        let target = format!("{}-debr0", t.prefix);
        let mut ex = vec![];
        let mut push = vec![];
        let mut pull = vec![];
        for _ in 0..iterations.max(3) {
            ex.push(t.timed_lxc(&["exec", &target, "--", "true"])?);
            push.push(t.timed_lxc(&[
                "file",
                "push",
                f10.to_str().unwrap_or(""),
                &format!("{target}/root/10m"),
            ])?);
            pull.push(t.timed_lxc(&[
                "file",
                "pull",
                &format!("{target}/root/10m"),
                tmp.join("back10").to_str().unwrap_or(""),
            ])?);
        }
        res[i].exec_loaded = median(ex);
        res[i].push_10m = median(push);
        res[i].pull_10m = median(pull);
        res[i].push_1g = t.timed_lxc(&[
            "file",
            "push",
            f1g.to_str().unwrap_or(""),
            &format!("{target}/root/1g"),
        ])?;
        res[i].pull_1g = t.timed_lxc(&[
            "file",
            "pull",
            &format!("{target}/root/1g"),
            tmp.join("back1g").to_str().unwrap_or(""),
        ])?;
        for k in 0..running {
            t.lxc(&["delete", "--force", &format!("{}-debr{k}", t.prefix)])?;
        }
        for driver in ["btrfs", "zfs"] {
            if driver == "zfs" && (zfs.is_none() || t.label != "ours") {
                continue;
            }
            let (launch, boot) = on_pool(t, driver, alias, iterations.min(5))?;
            res[i].pools.push((driver, launch, boot));
        }
        res[i].launch_to_running = median(l[i].clone());
        res[i].launch_to_finished = median(f[i].clone());
        res[i].stop = median(s[i].clone());
        res[i].restart_to_running = median(r[i].clone());
    }
    let _ = std::fs::remove_dir_all(&tmp);
    drop(zfs);
    Ok(res)
}

pub fn print(res: &[DebianResults], iterations: usize, running: usize) {
    println!(
        "\nDebian 12 (systemd), dir pool: medians of {iterations} iterations; exec/file with {running} Debian instances running\n"
    );
    type Get = fn(&DebianResults) -> Duration;
    let rows: [(&str, Get); 9] = [
        ("launch to running (polled)", |r| r.launch_to_running),
        ("launch to startup finished", |r| r.launch_to_finished),
        ("clean stop", |r| r.stop),
        ("restart to running", |r| r.restart_to_running),
        ("exec true (loaded)", |r| r.exec_loaded),
        ("file push 10 MiB", |r| r.push_10m),
        ("file pull 10 MiB", |r| r.pull_10m),
        ("file push 1 GiB", |r| r.push_1g),
        ("file pull 1 GiB", |r| r.pull_1g),
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
    println!(
        "\nlaunch to systemd's \"startup finished\" on loop-backed pools (systemd's clock), against systemd's own startup (as systemd-analyze time)\n"
    );
    println!(
        "{:<8}{:>14}{:>14}{:>10}{:>14}{:>10}",
        "driver", "ours", "systemd", "x systemd", "lxd", "ratio"
    );
    for (driver, launch, boot) in &res[0].pools {
        let theirs = res
            .get(1)
            .and_then(|r| r.pools.iter().find(|p| p.0 == *driver));
        print!(
            "{driver:<8}{:>14}{:>14}{:>10.2}",
            ms(*launch),
            ms(*boot),
            launch.as_secs_f64() / boot.as_secs_f64().max(1e-9)
        );
        match theirs {
            Some((_, l, _)) => println!(
                "{:>14}{:>10.2}",
                ms(*l),
                launch.as_secs_f64() / l.as_secs_f64().max(1e-9)
            ),
            None => println!("{:>14}{:>10}", "-", "-"),
        }
    }
}
