//! The filesystem half of a migration: which streams go over the `fs` websocket in which
//! order, and what the target makes of them. rsync streams (`rsync.rs`) into the instance
//! volume, snapshotting after each snapshot's stream; btrfs send streams (snapshots oldest first,
//! each relative to the previous one, then a read-only snapshot of the instance), received
//! into a scratch directory of the pool and moved into place, as LXD's btrfs driver does.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::conn::{Conn, Frame, IDLE_TIMEOUT};
use super::progress::Tracker;
use super::{proto, rsync};
use crate::daemon::Daemon;
use crate::error::{ApiError, Result};
use crate::operations::Op;
use lxd_storage::Driver;

#[derive(Debug)]
pub struct SendPlan {
    pub name: String,
    pub fs_type: i32,
    /// Snapshots to send, oldest first.
    pub snapshots: Vec<String>,
    /// All of the source's snapshots (parents for incremental streams).
    pub all_snapshots: Vec<String>,
    pub rsync_features: Vec<&'static str>,
    pub final_sync: bool,
    pub refresh: bool,
    /// Send this snapshot as the instance volume (a copy of a snapshot to another server).
    pub from_snapshot: Option<String>,
}

#[derive(Debug)]
pub struct RecvPlan {
    pub name: String,
    pub fs_type: i32,
    /// Snapshots that will arrive, oldest first.
    pub snapshots: Vec<String>,
    pub rsync_features: Vec<&'static str>,
    pub final_sync: bool,
    pub existing: bool,
}

type Pool = Arc<dyn Driver>;

/// The volume's top directory as our instances have it (root, 0100). A running LXD
/// container's volume is owned by its root user, and rsync or a send stream carries that over.
fn fix_top_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::os::unix::fs::chown(path, Some(0), Some(0))
        .map_err(|e| crate::error::io_err("chown", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o100))
        .map_err(|e| crate::error::io_err("chmod", path, e))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> lxd_storage::Result<T> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

pub async fn send(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    pool: &Pool,
    plan: &SendPlan,
    fs: &mut Conn,
) -> Result<()> {
    match plan.fs_type {
        proto::FS_BTRFS => send_btrfs(op, pool, plan, fs).await,
        proto::FS_ZFS => send_zfs(op, pool, plan, fs).await,
        _ => send_rsync(d, op, pool, plan, fs).await,
    }
}

async fn send_rsync(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    pool: &Pool,
    plan: &SendPlan,
    fs: &mut Conn,
) -> Result<()> {
    let name = plan.name.clone();
    for snap in &plan.snapshots {
        let (p, n, s) = (pool.clone(), name.clone(), snap.clone());
        let path =
            blocking(move || p.mount_volume_snapshot(lxd_storage::VolumeType::Container, &n, &s))
                .await?;
        let mut t = Tracker::new(op, snap);
        let res = rsync::send(&d.exe, &name, &path, fs, &plan.rsync_features, &mut t).await;
        let (p, n, s) = (pool.clone(), name.clone(), snap.clone());
        let _ =
            blocking(move || p.unmount_volume_snapshot(lxd_storage::VolumeType::Container, &n, &s))
                .await;
        res?;
    }
    if let Some(snap) = &plan.from_snapshot {
        let (p, n, s) = (pool.clone(), name.clone(), snap.clone());
        let path =
            blocking(move || p.mount_volume_snapshot(lxd_storage::VolumeType::Container, &n, &s))
                .await?;
        let mut t = Tracker::new(op, &name);
        let res = rsync::send(&d.exe, &name, &path, fs, &plan.rsync_features, &mut t).await;
        let (p, n, s) = (pool.clone(), name.clone(), snap.clone());
        let _ =
            blocking(move || p.unmount_volume_snapshot(lxd_storage::VolumeType::Container, &n, &s))
                .await;
        return res;
    }
    let (p, n) = (pool.clone(), name.clone());
    let path = blocking(move || p.mount_instance(&n)).await?;
    let passes = if plan.final_sync { 2 } else { 1 };
    for _ in 0..passes {
        let mut t = Tracker::new(op, &name);
        rsync::send(&d.exe, &name, &path, fs, &plan.rsync_features, &mut t).await?;
    }
    Ok(())
}

/// How long one receive phase took, in the debug log (`LXD_LOG=lxd::migration=debug`).
async fn timed<T>(what: String, f: impl std::future::Future<Output = T>) -> T {
    let start = std::time::Instant::now();
    let out = f.await;
    tracing::debug!("migration: {what} in {:?}", start.elapsed());
    out
}

/// New snapshots on a dir pool: each is received straight into its snapshot directory, files
/// unchanged since the previous one hard-linked to it (snapshots are read-only, so they may share
/// inodes; the instance never does). The instance volume starts as a parallel local copy of the
/// oldest snapshot, made while the newer ones arrive, and its own rsync then sends only what
/// differs: one full copy in all instead of one per snapshot. The copy is always awaited before
/// anything else writes there, and a cancelled migration's undo waits for it (`busy`).
async fn recv_dir_snapshots(
    op: &Arc<Op>,
    pool: &Pool,
    plan: &RecvPlan,
    fs: &mut Conn,
    on_snapshot: &mut (dyn FnMut(&str) -> Result<()> + Send),
    busy: &Arc<std::sync::Mutex<()>>,
) -> Result<()> {
    use lxd_storage::VolumeType::Container;
    let mut copying: Option<tokio::task::JoinHandle<Result<()>>> = None;
    let received = async {
        let mut prev: Option<PathBuf> = None;
        for snap in &plan.snapshots {
            let dir = pool.volume_snapshot_path(Container, &plan.name, snap);
            if let Some(parent) = dir.parent() {
                mkdir_private(parent)?;
            }
            std::fs::create_dir(&dir).map_err(|e| crate::error::io_err("create", &dir, e))?;
            let mut t = Tracker::new(op, snap);
            let recv = rsync::recv(&dir, prev.as_deref(), fs, &plan.rsync_features, &mut t);
            timed(format!("snapshot {snap} received"), recv).await?;
            fix_top_dir(&dir)?;
            on_snapshot(snap)?;
            if copying.is_none() {
                let (p, n, s) = (pool.clone(), plan.name.clone(), snap.clone());
                let busy = busy.clone();
                copying = Some(tokio::task::spawn_blocking(move || {
                    let _busy = busy.lock().unwrap_or_else(|e| e.into_inner());
                    let start = std::time::Instant::now();
                    p.restore_snapshot(&n, &s)?;
                    tracing::debug!(
                        "migration: instance copied from {s} in {:?}",
                        start.elapsed()
                    );
                    Ok(())
                }));
            }
            prev = Some(dir);
        }
        Ok::<(), ApiError>(())
    }
    .await;
    let copied = match copying {
        Some(h) => h
            .await
            .map_err(|e| ApiError::internal(format!("The instance copy failed: {e}")))
            .and_then(|r| r),
        None => Ok(()),
    };
    received?;
    copied
}

/// A directory only root may enter (a dir pool's per-instance snapshot directory).
fn mkdir_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(crate::error::io_err("create", dir, e))
        }
        _ => Ok(()),
    }
}

async fn recv_rsync(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    pool: &Pool,
    plan: &RecvPlan,
    fs: &mut Conn,
    made: &mut super::Made,
    on_snapshot: &mut (dyn FnMut(&str) -> Result<()> + Send),
) -> Result<()> {
    let _ = d;
    let name = plan.name.clone();
    if !plan.existing {
        let (p, n) = (pool.clone(), name.clone());
        blocking(move || p.create_instance_empty(&n)).await?;
        made.volume = true;
    }
    let (p, n) = (pool.clone(), name.clone());
    let path = blocking(move || p.mount_instance(&n)).await?;
    if !plan.existing && pool.info().driver == "dir" && !plan.snapshots.is_empty() {
        recv_dir_snapshots(op, pool, plan, fs, on_snapshot, &made.busy).await?;
    } else {
        for snap in &plan.snapshots {
            let mut t = Tracker::new(op, snap);
            rsync::recv(&path, None, fs, &plan.rsync_features, &mut t).await?;
            fix_top_dir(&path)?;
            let (p, n, s) = (pool.clone(), name.clone(), snap.clone());
            blocking(move || p.create_snapshot(&n, &s)).await?;
            on_snapshot(snap)?;
        }
    }
    let passes = if plan.final_sync { 2 } else { 1 };
    for _ in 0..passes {
        let mut t = Tracker::new(op, &name);
        let recv = rsync::recv(&path, None, fs, &plan.rsync_features, &mut t);
        timed(format!("instance {name} received"), recv).await?;
    }
    fix_top_dir(&path)
}

pub async fn recv(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    pool: &Pool,
    plan: &RecvPlan,
    fs: &mut Conn,
    made: &mut super::Made,
    on_snapshot: &mut (dyn FnMut(&str) -> Result<()> + Send),
) -> Result<()> {
    match plan.fs_type {
        proto::FS_BTRFS => recv_btrfs(op, pool, plan, fs, made, on_snapshot).await,
        proto::FS_ZFS => recv_zfs(op, pool, plan, fs, made, on_snapshot).await,
        _ => recv_rsync(d, op, pool, plan, fs, made, on_snapshot).await,
    }
}

// ---------------------------------------------------------------- btrfs

/// Run `cmd` and send its stdout as one stream (ending with the barrier).
async fn send_stream(
    mut cmd: tokio::process::Command,
    fs: &mut Conn,
    t: &mut Tracker,
) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ApiError::internal(format!("Failed to run the send command: {e}")))?;
    let mut out = child.stdout.take().expect("piped stdout");
    let mut errp = child.stderr.take().expect("piped stderr");
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = errp.read_to_string(&mut s).await;
        s
    });
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = out
            .read(&mut buf)
            .await
            .map_err(|e| ApiError::internal(format!("Failed to read the send stream: {e}")))?;
        if n == 0 {
            break;
        }
        t.add(n as u64);
        fs.tx
            .send(Frame::Binary(buf[..n].to_vec()))
            .await
            .map_err(|_| ApiError::bad_request("The migration connection was closed"))?;
    }
    let st = child
        .wait()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let err = err_task.await.unwrap_or_default();
    if !st.success() {
        return Err(ApiError::internal(format!(
            "Failed to send the volume: {}",
            err.trim()
        )));
    }
    fs.tx
        .send(Frame::Barrier)
        .await
        .map_err(|_| ApiError::bad_request("The migration connection was closed"))?;
    Ok(())
}

/// Feed one stream (up to the barrier) into `cmd`'s stdin.
async fn recv_stream(
    mut cmd: tokio::process::Command,
    fs: &mut Conn,
    t: &mut Tracker,
) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ApiError::internal(format!("Failed to run the receive command: {e}")))?;
    let mut stdin = child.stdin.take();
    let mut errp = child.stderr.take().expect("piped stderr");
    let err_task = tokio::spawn(async move {
        let mut s = String::new();
        let _ = errp.read_to_string(&mut s).await;
        s
    });
    loop {
        let f = tokio::time::timeout(IDLE_TIMEOUT, fs.rx.recv())
            .await
            .map_err(|_| ApiError::bad_request("Timed out waiting for migration data"))?;
        match f {
            None => {
                return Err(ApiError::bad_request(
                    "The migration connection was closed by the other side",
                ));
            }
            Some(Frame::Barrier) => break,
            Some(Frame::Binary(b)) => {
                t.add(b.len() as u64);
                if let Some(w) = stdin.as_mut()
                    && w.write_all(&b).await.is_err()
                {
                    stdin = None;
                }
            }
        }
    }
    drop(stdin);
    let st = child
        .wait()
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let err = err_task.await.unwrap_or_default();
    if !st.success() {
        return Err(ApiError::internal(format!(
            "Failed to receive the volume: {}",
            err.trim()
        )));
    }
    Ok(())
}

fn btrfs_send_cmd(path: &Path, parent: Option<&Path>) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("btrfs");
    c.arg("send");
    if let Some(p) = parent {
        c.arg("-p").arg(p);
    }
    c.arg(path);
    c
}

fn btrfs_recv_cmd(dir: &Path) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("btrfs");
    c.arg("receive").arg("-e").arg(dir);
    c
}

/// A scratch directory in the pool for one transfer.
fn scratch(pool: &Pool) -> Result<PathBuf> {
    let p = pool
        .pool_path()
        .join(format!("migration.{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&p).map_err(|e| crate::error::io_err("create", &p, e))?;
    Ok(p)
}

/// Remove a scratch directory and the (read-only) subvolumes received into it.
fn cleanup_scratch(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if lxd_storage::btrfs::stream::is_subvolume(&p) {
                let _ = lxd_storage::btrfs::stream::delete(&p);
            } else if e.file_type().is_ok_and(|t| t.is_dir()) {
                cleanup_scratch(&p);
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

async fn send_btrfs(op: &Arc<Op>, pool: &Pool, plan: &SendPlan, fs: &mut Conn) -> Result<()> {
    let name = &plan.name;
    // Parent of the first stream: in a refresh, the newest snapshot the target already has.
    let mut parent: Option<PathBuf> = None;
    if plan.refresh
        && let Some(first) = plan.snapshots.first()
    {
        let idx = plan.all_snapshots.iter().position(|s| s == first);
        if let Some(i) = idx
            && i > 0
        {
            parent = Some(pool.snapshot_path(name, &plan.all_snapshots[i - 1]));
        }
    }
    for snap in &plan.snapshots {
        let path = pool.snapshot_path(name, snap);
        let mut t = Tracker::new(op, snap);
        send_stream(btrfs_send_cmd(&path, parent.as_deref()), fs, &mut t).await?;
        parent = Some(path);
    }
    if plan.refresh && plan.snapshots.is_empty() {
        parent = plan
            .all_snapshots
            .last()
            .map(|s| pool.snapshot_path(name, s));
    }
    if let Some(snap) = &plan.from_snapshot {
        // Already a read-only subvolume.
        let mut t = Tracker::new(op, name);
        let path = pool.snapshot_path(name, snap);
        return send_stream(btrfs_send_cmd(&path, None), fs, &mut t).await;
    }
    // A writable subvolume cannot be sent: send a read-only snapshot of it.
    let dir = scratch(pool)?;
    let ro = dir.join(".migration-send");
    let res = async {
        let (src, dst) = (pool.instance_path(name), ro.clone());
        blocking(move || lxd_storage::btrfs::stream::snapshot_readonly(&src, &dst)).await?;
        let mut t = Tracker::new(op, name);
        send_stream(btrfs_send_cmd(&ro, parent.as_deref()), fs, &mut t).await
    }
    .await;
    let d2 = dir.clone();
    let _ = tokio::task::spawn_blocking(move || cleanup_scratch(&d2)).await;
    res
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// The one subvolume `btrfs receive` made in `dir`.
fn received(dir: &Path) -> Result<PathBuf> {
    let mut rd = std::fs::read_dir(dir)
        .map_err(|e| crate::error::io_err("read", dir, e))?
        .flatten();
    rd.next()
        .map(|e| e.path())
        .ok_or_else(|| ApiError::internal("The btrfs stream created no subvolume"))
}

async fn recv_btrfs(
    op: &Arc<Op>,
    pool: &Pool,
    plan: &RecvPlan,
    fs: &mut Conn,
    made: &mut super::Made,
    on_snapshot: &mut (dyn FnMut(&str) -> Result<()> + Send),
) -> Result<()> {
    let name = plan.name.clone();
    let work = scratch(pool)?;
    let res = async {
        if !plan.existing {
            let snaps_dir = pool.snapshot_path(&name, "x");
            if let Some(parent) = snaps_dir.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| crate::error::io_err("create", parent, e))?;
            }
        }
        for snap in &plan.snapshots {
            // Received in place: a read-only subvolume cannot move to another directory, and
            // it must keep its received UUID, which later streams name as their parent.
            let dst = pool.snapshot_path(&name, snap);
            let dir = dst
                .parent()
                .ok_or_else(|| ApiError::internal("Invalid snapshot path"))?
                .to_path_buf();
            let before = entries(&dir);
            let mut t = Tracker::new(op, snap);
            let recv = recv_stream(btrfs_recv_cmd(&dir), fs, &mut t);
            timed(format!("snapshot {snap} received"), recv).await?;
            made.volume = true;
            let got = entries(&dir)
                .into_iter()
                .find(|e| !before.contains(e))
                .ok_or_else(|| ApiError::internal("The btrfs stream created no subvolume"))?;
            if got != dst {
                std::fs::rename(&got, &dst).map_err(|e| crate::error::io_err("rename", &got, e))?;
            }
            on_snapshot(snap)?;
        }
        let dir = work.join("main");
        std::fs::create_dir_all(&dir).map_err(|e| crate::error::io_err("create", &dir, e))?;
        let mut t = Tracker::new(op, &name);
        let recv = recv_stream(btrfs_recv_cmd(&dir), fs, &mut t);
        timed(format!("instance {name} received"), recv).await?;
        let got = received(&dir)?;
        let dst = pool.instance_path(&name);
        let (g, d2, existing) = (got.clone(), dst.clone(), plan.existing);
        let (fresh, old) = (work.join("fresh"), work.join("old"));
        blocking(move || {
            if !existing {
                return lxd_storage::btrfs::stream::snapshot_writable(&g, &d2);
            }
            // A refresh swaps the volume only once the new one exists (a writable subvolume
            // can move between directories); the old one goes with the scratch directory.
            lxd_storage::btrfs::stream::snapshot_writable(&g, &fresh)?;
            std::fs::rename(&d2, &old).map_err(|e| lxd_storage::Error::Io {
                op: "rename",
                path: d2.clone(),
                source: e,
            })?;
            std::fs::rename(&fresh, &d2).map_err(|e| lxd_storage::Error::Io {
                op: "rename",
                path: fresh.clone(),
                source: e,
            })
        })
        .await?;
        made.volume = true;
        fix_top_dir(&dst)?;
        Ok(())
    }
    .await;
    let w = work.clone();
    let _ = tokio::task::spawn_blocking(move || cleanup_scratch(&w)).await;
    res
}

// ---------------------------------------------------------------- zfs

fn zfs_cmd(args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("zfs");
    c.args(args);
    c
}

fn need_dataset(pool: &Pool, name: &str) -> Result<String> {
    pool.instance_dataset(name)
        .ok_or_else(|| ApiError::internal("The pool has no zfs datasets"))
}

/// zfs streams: each snapshot relative to the previous one, then a temporary snapshot of the
/// instance relative to the last; the target receives them into one dataset.
async fn send_zfs(op: &Arc<Op>, pool: &Pool, plan: &SendPlan, fs: &mut Conn) -> Result<()> {
    let ds = need_dataset(pool, &plan.name)?;
    if let Some(snap) = &plan.from_snapshot {
        let full = format!("{ds}@snapshot-{snap}");
        let mut t = Tracker::new(op, &plan.name);
        return send_stream(zfs_cmd(&["send", &full]), fs, &mut t).await;
    }
    let mut prev: Option<String> = None;
    for snap in &plan.snapshots {
        let full = format!("{ds}@snapshot-{snap}");
        let mut args = vec!["send"];
        if let Some(p) = &prev {
            args.extend(["-i", p.as_str()]);
        }
        args.push(&full);
        let mut t = Tracker::new(op, snap);
        send_stream(zfs_cmd(&args), fs, &mut t).await?;
        prev = Some(full);
    }
    let tmp = format!("{ds}@migration-{}", uuid::Uuid::new_v4().simple());
    let st = zfs_cmd(&["snapshot", &tmp])
        .status()
        .await
        .map_err(|e| ApiError::internal(format!("zfs snapshot: {e}")))?;
    if !st.success() {
        return Err(ApiError::internal(format!(
            "Failed to snapshot {ds} for sending"
        )));
    }
    let mut args = vec!["send"];
    if let Some(p) = &prev {
        args.extend(["-i", p.as_str()]);
    }
    args.push(&tmp);
    let mut t = Tracker::new(op, &plan.name);
    let res = send_stream(zfs_cmd(&args), fs, &mut t).await;
    let _ = zfs_cmd(&["destroy", &tmp]).status().await;
    res
}

async fn recv_zfs(
    op: &Arc<Op>,
    pool: &Pool,
    plan: &RecvPlan,
    fs: &mut Conn,
    made: &mut super::Made,
    on_snapshot: &mut (dyn FnMut(&str) -> Result<()> + Send),
) -> Result<()> {
    let ds = need_dataset(pool, &plan.name)?;
    let mut first = true;
    for snap in &plan.snapshots {
        let mut args = vec!["receive"];
        if !first {
            args.push("-F");
        }
        args.push(&ds);
        let mut t = Tracker::new(op, snap);
        made.volume = true;
        recv_zfs_stream(&args, &ds, fs, &mut t).await?;
        first = false;
        on_snapshot(snap)?;
    }
    let mut args = vec!["receive"];
    if !first {
        args.push("-F");
    }
    args.push(&ds);
    let mut t = Tracker::new(op, &plan.name);
    made.volume = true;
    recv_zfs_stream(&args, &ds, fs, &mut t).await?;
    let (p, n, keep) = (pool.clone(), plan.name.clone(), plan.snapshots.clone());
    let path = blocking(move || p.adopt_received_instance(&n, &keep)).await?;
    fix_top_dir(&path)
}

/// One `zfs receive` of a stream that ends in a snapshot. zfs-fuse sometimes answers "I/O
/// error" after it has received the whole stream and remounted the dataset: the new snapshot
/// is then there, and ZFS only creates it once the stream is complete, so that is success.
async fn recv_zfs_stream(args: &[&str], ds: &str, fs: &mut Conn, t: &mut Tracker) -> Result<()> {
    let before = zfs_snapshots(ds).await;
    match recv_stream(zfs_cmd(args), fs, t).await {
        Err(e) if e.message.contains("I/O error") && zfs_snapshots(ds).await > before => {
            tracing::warn!(
                "zfs receive into {ds} reported an I/O error after a complete stream; kept"
            );
            Ok(())
        }
        other => other,
    }
}

/// How many snapshots dataset `ds` has (0 when it does not exist yet).
async fn zfs_snapshots(ds: &str) -> usize {
    match zfs_cmd(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", ds])
        .output()
        .await
    {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.split_once('@').is_some_and(|(d, _)| d == ds))
            .count(),
        _ => 0,
    }
}

/// Remove what a failed receive left of instance `name` when the driver no longer sees an
/// instance there: subvolumes or datasets of snapshots that arrived before the instance.
pub fn remove_leftovers(pool: &Pool, name: &str) {
    let snap_dir = pool.snapshot_path(name, "x");
    let dirs = [
        snap_dir.parent().map(Path::to_path_buf),
        Some(pool.instance_path(name)),
    ];
    for dir in dirs.into_iter().flatten() {
        if !dir.exists() {
            continue;
        }
        if lxd_storage::btrfs::stream::is_subvolume(&dir) {
            let _ = lxd_storage::btrfs::stream::delete(&dir);
        } else {
            cleanup_scratch(&dir);
        }
    }
    if let Some(ds) = pool.instance_dataset(name) {
        let _ = std::process::Command::new("zfs")
            .args(["destroy", "-r", &ds])
            .status();
    }
}
