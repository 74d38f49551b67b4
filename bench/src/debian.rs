//! The Debian (systemd) workload: launch until `systemctl is-system-running` says `running`, a
//! clean stop, a restart back to `running`, exec with several Debian instances running, and file
//! push/pull of 10 MiB and 1 GiB. Same alternation and ratios as the busybox workload.

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
    for it in 0..iterations {
        for (i, t) in targets.iter().enumerate() {
            let name = format!("{}-deb{it}", t.prefix);
            let t0 = Instant::now();
            t.lxc(&["launch", alias, &name])?;
            wait_running(t, &name)?;
            l[i].push(t0.elapsed());
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
        res[i].launch_to_running = median(l[i].clone());
        res[i].stop = median(s[i].clone());
        res[i].restart_to_running = median(r[i].clone());
    }
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(res)
}

pub fn print(res: &[DebianResults], iterations: usize, running: usize) {
    println!(
        "\nDebian 12 (systemd), dir pool: medians of {iterations} iterations; exec/file with {running} Debian instances running\n"
    );
    type Get = fn(&DebianResults) -> Duration;
    let rows: [(&str, Get); 8] = [
        ("launch to running", |r| r.launch_to_running),
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
}
