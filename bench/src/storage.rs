//! `lxd-bench --storage`: what users wait for on each storage driver (launch, snapshot of a
//! running instance, restore and copy of a stopped one), medians per driver, for our daemon on
//! dir, btrfs (loop file) and zfs-fuse (loop file), and with `--with-lxd` for Debian's LXD on dir
//! and btrfs (its zfs driver needs the kernel module). The daemons alternate iteration by
//! iteration so machine noise hits both alike.

use anyhow::{Result, bail};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Target, median, ms};

/// Keeps zfs-fuse running for the benchmark: started (and later stopped, by its pid) only when
/// nothing answers.
pub(crate) struct ZfsFuse(Option<Child>);

fn zfs_answers() -> bool {
    Command::new("zpool")
        .arg("list")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl ZfsFuse {
    pub(crate) fn start() -> Option<ZfsFuse> {
        if zfs_answers() {
            return Some(ZfsFuse(None));
        }
        let child = Command::new("zfs-fuse")
            .args(["--no-daemon", "--no-kstat-mount"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let t = Instant::now();
        while !zfs_answers() {
            if t.elapsed() > Duration::from_secs(10) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(ZfsFuse(Some(child)))
    }
}

impl Drop for ZfsFuse {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Picks one measurement out of a driver's medians.
type Pick = fn(&Medians) -> Duration;

#[derive(Debug, Default, Clone)]
struct Medians {
    launch: Duration,
    start: Duration,
    snapshot: Duration,
    restore: Duration,
    copy: Duration,
}

/// A pool of `driver` on target `t`; loop-backed pools get 4 GiB.
pub(crate) fn create_pool(t: &Target, driver: &str) -> Result<String> {
    let name = format!("bench-{driver}");
    let mut args = vec![
        "storage".to_string(),
        "create".into(),
        name.clone(),
        driver.into(),
    ];
    if driver != "dir" {
        args.push("size=4GiB".into());
    }
    if driver == "zfs" {
        args.push(format!("zfs.pool_name=lxdbench{}", std::process::id()));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    t.lxc(&a)?;
    Ok(name)
}

/// One round on one target and pool: launch (then stop), snapshot while running, restore, start
/// (then stop) and copy while stopped; returns launch, snapshot, restore, copy and start.
fn round(t: &Target, pool: &str, it: usize) -> Result<[Duration; 5]> {
    let name = format!("{}-{}-{it}", t.prefix, &pool[6..]);
    let launch = t.timed_lxc(&["launch", "benchbb", &name, "-s", pool])?;
    let snapshot = t.timed_lxc(&["snapshot", &name, "s0"])?;
    t.lxc(&["stop", "--force", &name])?;
    let restore = t.timed_lxc(&["restore", &name, "s0"])?;
    let start = t.timed_lxc(&["start", &name])?;
    t.lxc(&["stop", "--force", &name])?;
    let copy_name = format!("{name}c");
    let copy = t.timed_lxc(&["copy", &name, &copy_name, "--instance-only"])?;
    t.lxc(&["delete", "--force", &copy_name])?;
    t.lxc(&["delete", "--force", &name])?;
    Ok([launch, snapshot, restore, copy, start])
}

pub fn run(targets: &mut [Target], iterations: usize) -> Result<()> {
    let zfs = ZfsFuse::start();
    if zfs.is_none() {
        eprintln!("zfs-fuse is not available: skipping the zfs pool");
    }
    // (target index, driver, pool name)
    let mut pools = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        for driver in ["dir", "btrfs", "zfs"] {
            if driver == "zfs" && (zfs.is_none() || t.label != "ours") {
                continue;
            }
            pools.push((i, driver, create_pool(t, driver)?));
        }
    }
    if pools.is_empty() {
        bail!("no pool could be created");
    }
    let mut samples: Vec<[Vec<Duration>; 5]> = vec![Default::default(); pools.len()];
    for it in 0..iterations {
        for (k, (i, _, pool)) in pools.iter().enumerate() {
            let r = round(&targets[*i], pool, it)?;
            for (s, v) in samples[k].iter_mut().zip(r) {
                s.push(v);
            }
        }
    }
    let medians: Vec<Medians> = samples
        .into_iter()
        .map(|s| {
            let [a, b, c, d, e] = s;
            Medians {
                launch: median(a),
                snapshot: median(b),
                restore: median(c),
                copy: median(d),
                start: median(e),
            }
        })
        .collect();
    // The floor of a launch: the bare clone of the pool's image volume, plus a start.
    let mut bare = Vec::new();
    for (k, (i, driver, pool)) in pools.iter().enumerate() {
        if targets[*i].label == "ours" && *driver != "dir" {
            let clone = bare_clone(&targets[*i], driver, pool, iterations)?;
            bare.push((*driver, clone, medians[k].start, medians[k].launch));
        }
    }
    for (i, _, pool) in &pools {
        let _ = targets[*i].lxc(&["storage", "delete", pool]);
    }
    println!(
        "\nmedians of {iterations} iterations (busybox image): launch; snapshot of the running instance; restore and copy --instance-only of the stopped instance\n"
    );
    println!(
        "{:<8}{:<18}{:>14}{:>14}{:>10}",
        "driver", "operation", "ours", "lxd", "ratio"
    );
    let get = |label: &str, driver: &str| {
        pools
            .iter()
            .position(|(i, d, _)| targets[*i].label == label && *d == driver)
            .map(|k| medians[k].clone())
    };
    for driver in ["dir", "btrfs", "zfs"] {
        let Some(ours) = get("ours", driver) else {
            continue;
        };
        let theirs = get("lxd", driver);
        let rows: [(&str, Pick); 4] = [
            ("launch", |m| m.launch),
            ("snapshot", |m| m.snapshot),
            ("restore", |m| m.restore),
            ("copy", |m| m.copy),
        ];
        for (label, f) in rows {
            let o = f(&ours);
            match &theirs {
                Some(l) => println!(
                    "{driver:<8}{label:<18}{:>14}{:>14}{:>10.2}",
                    ms(o),
                    ms(f(l)),
                    o.as_secs_f64() / f(l).as_secs_f64()
                ),
                None => println!("{driver:<8}{label:<18}{:>14}{:>14}{:>10}", ms(o), "-", "-"),
            }
        }
    }
    if !bare.is_empty() {
        println!(
            "\nour launch against its floor: the bare clone of the image volume (median of {iterations}) plus `lxc start` of a stopped instance\n"
        );
        println!(
            "{:<8}{:>12}{:>12}{:>12}{:>12}{:>10}",
            "driver", "clone", "start", "floor", "launch", "x floor"
        );
        for (driver, clone, start, launch) in bare {
            let floor = clone + start;
            println!(
                "{driver:<8}{:>12}{:>12}{:>12}{:>12}{:>10.2}",
                ms(clone),
                ms(start),
                ms(floor),
                ms(launch),
                launch.as_secs_f64() / floor.as_secs_f64()
            );
        }
    }
    drop(zfs);
    Ok(())
}

/// Median time of the bare clone a launch on `driver` starts from: `btrfs subvolume snapshot`
/// of our pool's image volume, or `zfs clone` of its `@readonly` snapshot (each removed again).
fn bare_clone(t: &Target, driver: &str, pool: &str, iterations: usize) -> Result<Duration> {
    let run = |prog: &str, args: &[&str]| -> Result<()> {
        let out = Command::new(prog).args(args).output()?;
        if !out.status.success() {
            bail!(
                "{prog} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    let images = t.dir.join("storage-pools").join(pool).join("images");
    let mut samples = Vec::new();
    if driver == "btrfs" {
        let fp = std::fs::read_dir(&images)?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .ok_or_else(|| anyhow::anyhow!("no image volume in {}", images.display()))?;
        let dst = t.dir.join("storage-pools").join(pool).join("bench-bare");
        let (src, dst) = (fp.to_string_lossy(), dst.to_string_lossy());
        for _ in 0..iterations {
            super::settle();
            let t0 = Instant::now();
            run("btrfs", &["subvolume", "snapshot", &src, &dst])?;
            samples.push(t0.elapsed());
            run("btrfs", &["subvolume", "delete", &dst])?;
        }
    } else {
        let zpool = format!("lxdbench{}", std::process::id());
        let out = Command::new("zfs")
            .args(["list", "-H", "-o", "name", "-t", "snapshot", "-r"])
            .arg(format!("{zpool}/images"))
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let snap = text
            .lines()
            .find(|l| l.ends_with("@readonly"))
            .ok_or_else(|| anyhow::anyhow!("no image snapshot in {zpool}/images"))?
            .to_string();
        let dst = format!("{zpool}/bench-bare");
        for _ in 0..iterations {
            super::settle();
            let t0 = Instant::now();
            run("zfs", &["clone", &snap, &dst])?;
            samples.push(t0.elapsed());
            run("zfs", &["destroy", &dst])?;
        }
    }
    Ok(median(samples))
}
