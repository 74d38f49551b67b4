//! Running the daemon: open state, mount pools, listen, re-attach, autostart, then wait for a
//! signal. SIGTERM/SIGINT exit and leave containers running; SIGPWR and `lxd shutdown` stop every
//! instance cleanly first (in `boot.stop.priority` order) and remember they were running.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

use crate::daemon::{Daemon, StopMode};
use crate::instance::lifecycle;
use crate::instance::runtime as rt;

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub dir: PathBuf,
    pub group: Option<String>,
}

async fn mount_pools(d: &Arc<Daemon>) -> anyhow::Result<()> {
    for row in d.db.pools()? {
        let dir = d.dir.clone();
        let r = row.clone();
        let res = tokio::task::spawn_blocking(move || {
            let drv = lxd_storage::load(&r.driver, &r.name, &dir, &r.config)?;
            drv.mount_pool()?;
            Ok::<_, lxd_storage::Error>(drv)
        })
        .await?;
        match res {
            Ok(drv) => {
                d.pools
                    .write()
                    .expect("pools lock")
                    .insert(row.name.clone(), Arc::from(drv));
            }
            Err(e) => tracing::error!(pool = %row.name, "failed to mount storage pool: {e}"),
        }
    }
    Ok(())
}

/// Start instances that should run after a (host or daemon) restart: `boot.autostart=true`, or
/// unset and running when last seen. Higher `boot.autostart.priority` first, then by name;
/// `boot.autostart.delay` seconds after each. Retried as LXD does.
pub async fn autostart(d: &Arc<Daemon>) -> anyhow::Result<()> {
    let mut todo = Vec::new();
    for row in d.db.instances()? {
        if rt::probe(d, &row.name).is_active() {
            continue;
        }
        let ex = crate::instance::expand_row(d, &row)?;
        let wanted = match ex.config.get("boot.autostart").map(String::as_str) {
            Some(v) if !v.is_empty() => crate::config::parse_bool(v).unwrap_or(false),
            _ => {
                row.config
                    .get("volatile.last_state.power")
                    .map(String::as_str)
                    == Some("RUNNING")
            }
        };
        if !wanted {
            continue;
        }
        let prio: i64 = ex
            .config
            .get("boot.autostart.priority")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let delay: u64 = ex
            .config
            .get("boot.autostart.delay")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        todo.push((prio, row.name.clone(), delay));
    }
    todo.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, name, delay) in todo {
        let mut ok = false;
        for attempt in 0..3 {
            match lifecycle::start(d, &name).await {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(instance = %name, attempt, "autostart failed: {e}");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
        if ok && delay > 0 {
            tokio::time::sleep(Duration::from_secs(delay)).await;
        }
    }
    Ok(())
}

/// Stop all running instances cleanly (`boot.host_shutdown_timeout`, default 30 s, then force),
/// higher `boot.stop.priority` first, each priority batch in parallel. Their recorded power
/// state stays RUNNING so they come back on the next start.
pub async fn shutdown_instances(d: &Arc<Daemon>) -> anyhow::Result<()> {
    let mut batches: std::collections::BTreeMap<i64, Vec<(String, u64)>> = Default::default();
    for row in d.db.instances()? {
        if !rt::probe(d, &row.name).is_active() {
            continue;
        }
        let ex = crate::instance::expand_row(d, &row)?;
        let prio: i64 = ex
            .config
            .get("boot.stop.priority")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let timeout: u64 = ex
            .config
            .get("boot.host_shutdown_timeout")
            .and_then(|v| v.parse().ok())
            .unwrap_or(30);
        batches.entry(prio).or_default().push((row.name, timeout));
    }
    for (_, batch) in batches.into_iter().rev() {
        let mut tasks = Vec::new();
        for (name, timeout) in batch {
            let d = d.clone();
            tasks.push(tokio::spawn(async move {
                let _ = rt::request_shutdown(&d, &name).await;
                if !rt::wait_stopped(&d, &name, Duration::from_secs(timeout)).await {
                    tracing::warn!(instance = %name, "did not stop within {timeout}s; killing it");
                    let _ = rt::kill(&d, &name).await;
                    rt::wait_stopped(&d, &name, Duration::from_secs(10)).await;
                }
                // Remember it ran, so the next daemon start brings it back; the monitor's
                // record of a clean poweroff must not read as "stopped from inside".
                let _ = std::fs::remove_file(d.run_dir(&name).join("state.json"));
                let _ = d.db.instance_set_config_key(
                    &name,
                    "volatile.last_state.power",
                    Some("RUNNING"),
                );
                if let Ok(row) = d.db.instance(&name)
                    && let Ok(pool) = d.pool(&row.pool)
                {
                    let _ = tokio::task::spawn_blocking(move || pool.unmount_instance(&name)).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
    Ok(())
}

/// Host limits LXD's production setup raises (doc/reference/server_settings.md): many systemd
/// containers share one host uid, so per-user kernel limits run out first. Returns the ones that
/// are too low, as `(key, current, recommended)`.
pub fn low_host_limits() -> Vec<(&'static str, u64, u64)> {
    const LIMITS: &[(&str, u64)] = &[
        ("fs.inotify.max_user_instances", 1024),
        ("fs.inotify.max_user_watches", 65536),
        ("fs.inotify.max_queued_events", 16384),
        ("kernel.keys.maxkeys", 2000),
        ("kernel.keys.maxbytes", 2_000_000),
        ("vm.max_map_count", 262_144),
    ];
    LIMITS
        .iter()
        .filter_map(|(key, want)| {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            let cur: u64 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
            (cur < *want).then_some((*key, cur, *want))
        })
        .collect()
}

pub async fn serve(opts: DaemonOptions) -> anyhow::Result<()> {
    for (key, cur, want) in low_host_limits() {
        tracing::warn!(
            "host limit {key} is {cur}, below the {want} that many running containers need \
             (raise it with: sysctl -w {key}={want}; scripts/setup-host.sh does)"
        );
    }
    let d = Daemon::open(&opts.dir)?;
    mount_pools(&d).await?;
    crate::network::startup(&d).await?;
    let listener = crate::endpoints::bind_unix(&d.socket_path(), opts.group.as_deref()).await?;
    crate::endpoints::start_network(&d).await?;
    let app = crate::api::router(d.clone());
    let stop = d.stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    lifecycle::reattach(&d).await?;
    crate::storage::schedule::spawn(d.clone());
    d.set_ready();
    crate::remotes::tasks::spawn(&d);
    tracing::info!(dir = %d.dir.display(), "daemon started");
    let d2 = d.clone();
    tokio::spawn(async move {
        if let Err(e) = autostart(&d2).await {
            tracing::error!("autostart: {e}");
        }
    });

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut pwr = signal(SignalKind::from_raw(libc::SIGPWR))?;
    tokio::select! {
        _ = term.recv() => d.request_stop(StopMode::Reload),
        _ = int.recv() => d.request_stop(StopMode::Reload),
        _ = pwr.recv() => d.request_stop(StopMode::Shutdown),
        _ = d.stop.cancelled() => {}
    }
    if d.stop_mode() == Some(StopMode::Shutdown) {
        tracing::info!("shutting down: stopping instances");
        shutdown_instances(&d).await?;
        for op in d.ops.running() {
            op.wait(Some(Duration::from_secs(10))).await;
        }
        crate::network::shutdown(&d).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = std::fs::remove_file(d.socket_path());
    tracing::info!("daemon stopped");
    Ok(())
}
