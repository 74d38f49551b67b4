//! Instance migration between servers, LXD's protocol (`lxd/migrate_instance.go`): the source
//! serves a websocket operation (`control`, `fs`) or dials the target's (push mode); over
//! `control` the source offers a `MigrationHeader`, the target answers with its choice, the
//! filesystem streams follow on `fs` (snapshots oldest first, then the instance; rsync, or btrfs
//! / zfs send streams when both pools speak them) and the target ends with a
//! `MigrationControl`. The source is never modified; a failed target removes what it made.

pub mod conn;
pub mod progress;
pub mod proto;
pub mod rsync;
mod volumes;

use lxd_api::instance::InstancePost;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::db::instances::{InstanceRow, SnapshotRow};
use crate::error::{ApiError, Result};
use crate::instance::runtime as rt;
use crate::operations::{Op, instance_resources, random_secret};
use conn::Conn;
use proto::{MigrationControl, MigrationHeader};

/// How long the other side has to connect the websockets of a migration operation (LXD: 10 s).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a create request with `source.type=migration` asks for.
#[derive(Debug, Clone)]
pub struct SinkSource {
    /// `pull` (we dial the source) or `push` (the source dials us).
    pub push: bool,
    pub operation: String,
    pub certificate: String,
    pub secrets: BTreeMap<String, String>,
    pub refresh: bool,
    pub instance_only: bool,
}

impl SinkSource {
    pub fn from_request(s: &lxd_api::instance::InstanceSource) -> Result<SinkSource> {
        let push = match s.mode.as_str() {
            "" | "pull" => false,
            "push" => true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "Unknown migration mode \"{other}\""
                )));
            }
        };
        if s.live {
            return Err(ApiError::bad_request(
                "Unable to perform container live migration. CRIU isn't installed on the destination server",
            ));
        }
        if !push {
            if s.operation.is_empty() {
                return Err(ApiError::bad_request("Missing migration source operation"));
            }
            for k in ["control", "fs"] {
                if !s.websockets.contains_key(k) {
                    return Err(ApiError::bad_request(format!("Missing {k} secret")));
                }
            }
            if s.websockets.contains_key("criu") {
                return Err(ApiError::bad_request(
                    "Unable to perform container live migration. CRIU isn't installed on the destination server",
                ));
            }
        }
        Ok(SinkSource {
            push,
            operation: s.operation.clone(),
            certificate: s.certificate.clone(),
            secrets: s.websockets.clone(),
            refresh: s.refresh,
            instance_only: s.instance_only,
        })
    }
}

// ---------------------------------------------------------------- types and features

/// The transfer methods a pool offers, preferred first (LXD `MigrationTypes`).
fn pool_types(driver: &str) -> Vec<i32> {
    match driver {
        "btrfs" => vec![proto::FS_BTRFS, proto::FS_RSYNC],
        "zfs" => vec![proto::FS_ZFS, proto::FS_RSYNC],
        _ => vec![proto::FS_RSYNC],
    }
}

/// Our rsync features. No `compress`: it costs more CPU than it saves on a LAN, and both
/// ends use only what both offer.
fn our_rsync_features(info: &lxd_storage::Info) -> Vec<&'static str> {
    let mut v = Vec::new();
    if info.xattrs {
        v.push("xattrs");
    }
    v.push("delete");
    v.push("bidirectional");
    v
}

fn rsync_features_msg(names: &[&str]) -> proto::RsyncFeatures {
    let has = |n| Some(names.contains(&n));
    proto::RsyncFeatures {
        xattrs: has("xattrs"),
        delete: has("delete"),
        compress: has("compress"),
        bidirectional: has("bidirectional"),
    }
}

/// The rsync arguments both ends derive from the answer: without `bidirectional` the peer is
/// an old LXD and LXD 3.7's fixed set applies.
fn effective_rsync_features(resp: &MigrationHeader) -> Vec<&'static str> {
    let f = resp.rsync_feature_names();
    if f.contains(&"bidirectional") {
        f
    } else {
        vec!["xattrs", "delete", "compress"]
    }
}

fn type_features(h: &mut MigrationHeader, fs: i32) {
    match fs {
        proto::FS_BTRFS => h.btrfs_features = Some(proto::BtrfsFeatures::default()),
        proto::FS_ZFS => {
            h.zfs_features = Some(proto::ZfsFeatures {
                compress: Some(false),
                ..Default::default()
            });
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- conversions

const ARCHES: &[(&str, i32)] = &[
    ("i686", 1),
    ("x86_64", 2),
    ("armv7l", 3),
    ("aarch64", 4),
    ("ppc", 5),
    ("ppc64", 6),
    ("ppc64le", 7),
    ("s390x", 8),
    ("mips", 9),
    ("mips64", 10),
    ("riscv32", 11),
    ("riscv64", 12),
];

fn arch_id(name: &str) -> i32 {
    ARCHES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, i)| *i)
}

fn arch_name(id: i32) -> String {
    ARCHES
        .iter()
        .find(|(_, i)| *i == id)
        .map_or("x86_64", |(n, _)| n)
        .to_string()
}

fn unix(ts: &str) -> i64 {
    ts.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .unwrap_or(-62_135_596_800)
}

fn from_unix(secs: Option<i64>) -> String {
    match secs.and_then(|s| jiff::Timestamp::from_second(s).ok()) {
        Some(t) if secs != Some(-62_135_596_800) && secs != Some(0) => t.to_string(),
        _ => lxd_api::ZERO_TIME.to_string(),
    }
}

fn snapshot_to_proto(s: &SnapshotRow) -> proto::Snapshot {
    proto::Snapshot {
        name: s.name.clone(),
        local_config: s.config.clone().into_iter().collect(),
        profiles: s.profiles.clone(),
        ephemeral: s.ephemeral,
        local_devices: s
            .devices
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_iter().collect()))
            .collect(),
        architecture: arch_id(&s.architecture),
        stateful: s.stateful,
        creation_date: Some(unix(&s.created_at)),
        last_used_date: Some(-62_135_596_800),
        expiry_date: Some(unix(&s.expires_at)),
    }
}

fn snapshot_from_proto(s: &proto::Snapshot, pool: &str) -> SnapshotRow {
    let mut devices: lxd_api::DevicesMap = s
        .local_devices
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_iter().collect()))
        .collect();
    // The snapshot's root disk lives where the instance now does.
    for dev in devices.values_mut() {
        if dev.get("type").map(String::as_str) == Some("disk")
            && dev.get("path").map(String::as_str) == Some("/")
        {
            dev.insert("pool".into(), pool.to_string());
        }
    }
    SnapshotRow {
        id: 0,
        instance_id: 0,
        name: s.name.clone(),
        architecture: arch_name(s.architecture),
        stateful: false,
        description: String::new(),
        created_at: from_unix(s.creation_date),
        expires_at: from_unix(s.expiry_date),
        config: s.local_config.clone().into_iter().collect(),
        devices,
        profiles: s.profiles.clone(),
        ephemeral: s.ephemeral,
    }
}

fn idmap_to_proto(v: Option<&String>) -> Vec<proto::IdmapType> {
    let Some(map) = v.and_then(|s| crate::instance::idmap::from_volatile(s)) else {
        return vec![];
    };
    let mut out = Vec::new();
    for (r, uid) in map
        .uid
        .iter()
        .map(|r| (r, true))
        .chain(map.gid.iter().map(|r| (r, false)))
    {
        out.push(proto::IdmapType {
            isuid: uid,
            isgid: !uid,
            hostid: r.host_id as i32,
            nsid: r.ns_id as i32,
            maprange: r.count as i32,
        });
    }
    out
}

fn idmap_from_proto(v: &[proto::IdmapType]) -> String {
    let entries: Vec<crate::instance::idmap::IdmapEntry> = v
        .iter()
        .map(|e| crate::instance::idmap::IdmapEntry {
            is_uid: e.isuid,
            is_gid: e.isgid,
            host_id: i64::from(e.hostid),
            ns_id: i64::from(e.nsid),
            range: i64::from(e.maprange),
        })
        .collect();
    serde_json::to_string(&entries).unwrap_or_else(|_| "[]".into())
}

async fn send_control(c: &Conn, res: &Result<()>) {
    let msg = MigrationControl {
        success: res.is_ok(),
        message: res.as_ref().err().map(|e| e.message.clone()),
    };
    let _ = c.send_msg(msg.encode()).await;
}

fn decode_header(b: &[u8]) -> Result<MigrationHeader> {
    MigrationHeader::decode(b).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Receive the websockets of a migration operation in order, within `CONNECT_TIMEOUT`.
async fn accept(
    sockets: Vec<(
        String,
        tokio::sync::oneshot::Receiver<axum::extract::ws::WebSocket>,
    )>,
) -> Result<(Conn, Conn)> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut got = BTreeMap::new();
    for (name, rx) in sockets {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(ws)) => {
                got.insert(name, Conn::from_axum(ws));
            }
            _ => {
                return Err(ApiError::bad_request(
                    "Timed out waiting for the migration connections",
                ));
            }
        }
    }
    match (got.remove("control"), got.remove("fs")) {
        (Some(c), Some(f)) => Ok((c, f)),
        _ => Err(ApiError::internal("Missing migration websockets")),
    }
}

// ---------------------------------------------------------------- source

/// `POST /1.0/instances/NAME {"migration": true}`: a websocket operation the target (or the
/// client, relaying) connects to, or with `target` set a task that dials the target.
///
/// With `snapshot` the source is that snapshot (`POST /1.0/instances/NAME/snapshots/SNAP`): it
/// goes as an instance volume without snapshots of its own.
pub fn start_source(
    d: &Arc<Daemon>,
    name: &str,
    snapshot: Option<String>,
    req: &InstancePost,
) -> Result<Arc<Op>> {
    let row = d.db.instance(name)?;
    if let Some(s) = &snapshot {
        d.db.snapshot(name, s)?;
    }
    let running = snapshot.is_none() && rt::probe(d, name).is_active();
    if req.live && running {
        return Err(ApiError::bad_request(
            "Unable to perform container live migration. CRIU isn't installed on the source server",
        ));
    }
    let instance_only = req.instance_only || req.container_only;
    let d2 = d.clone();
    let name = row.name.clone();
    let resources = instance_resources(&[&name]);
    if let Some(target) = req.target.clone() {
        for k in ["control", "fs"] {
            if !target.websockets.contains_key(k) {
                return Err(ApiError::bad_request(format!("Missing {k} secret")));
            }
        }
        return Ok(d.ops.start_task(
            "Migrating instance",
            resources,
            false,
            move |op| async move {
                let id = crate::endpoints::identity(&d2)?;
                let dial = |k: &str| {
                    conn::dial(
                        &id,
                        &target.operation,
                        &target.certificate,
                        &target.websockets[k],
                    )
                };
                let control = dial("control").await?;
                let fs = dial("fs").await?;
                run_source(
                    &d2,
                    &op,
                    &name,
                    snapshot.as_deref(),
                    instance_only,
                    control,
                    fs,
                )
                .await?;
                Ok(None)
            },
        ));
    }
    let secrets: Vec<(String, String)> = ["control", "fs"]
        .iter()
        .map(|k| (k.to_string(), random_secret()))
        .collect();
    let meta: BTreeMap<String, String> = secrets.iter().cloned().collect();
    Ok(d.ops.start_websocket(
        "Migrating instance",
        resources,
        json!(meta),
        secrets,
        move |op, sockets| async move {
            let (control, fs) = accept(sockets).await?;
            run_source(
                &d2,
                &op,
                &name,
                snapshot.as_deref(),
                instance_only,
                control,
                fs,
            )
            .await?;
            Ok(None)
        },
    ))
}

async fn run_source(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    name: &str,
    snapshot: Option<&str>,
    instance_only: bool,
    mut control: Conn,
    mut fs: Conn,
) -> Result<()> {
    let lock = d.instance_lock(name);
    let _g = lock.lock().await;
    let row = d.db.instance(name)?;
    let pool = d.pool(&row.pool)?;
    let info = pool.info();
    let running = snapshot.is_none() && rt::probe(d, name).is_active();
    let disk_idmap = match snapshot {
        Some(s) => {
            d.db.snapshot(name, s)?
                .config
                .get("volatile.last_state.idmap")
                .cloned()
        }
        None => row.config.get("volatile.last_state.idmap").cloned(),
    };
    // A running instance goes by rsync, twice (LXD's multi-sync): the second pass catches up.
    let types = if running {
        vec![proto::FS_RSYNC]
    } else {
        pool_types(info.driver)
    };
    let snapshots = if instance_only || snapshot.is_some() {
        vec![]
    } else {
        d.db.snapshots(name)?
    };
    let mut offer = MigrationHeader {
        fs: types[0],
        criu: running.then_some(proto::CRIU_NONE),
        idmap: idmap_to_proto(disk_idmap.as_ref()),
        snapshot_names: snapshots.iter().map(|s| s.name.clone()).collect(),
        snapshots: snapshots.iter().map(snapshot_to_proto).collect(),
        predump: Some(false),
        rsync_features: Some(rsync_features_msg(&our_rsync_features(&info))),
        ..Default::default()
    };
    type_features(&mut offer, types[0]);
    let res = async {
        control.send_msg(offer.encode()).await?;
        let resp = decode_header(&control.recv_msg().await?)?;
        let fs_type = if types.contains(&resp.fs) {
            resp.fs
        } else {
            proto::FS_RSYNC
        };
        let send_snaps: Vec<String> = if resp.refresh == Some(true) {
            resp.snapshot_names.clone()
        } else {
            offer.snapshot_names.clone()
        };
        let features = effective_rsync_features(&resp);
        let final_sync = resp.criu == Some(proto::CRIU_NONE);
        let plan = volumes::SendPlan {
            name: name.to_string(),
            fs_type,
            snapshots: send_snaps,
            all_snapshots: offer.snapshot_names.clone(),
            rsync_features: features,
            final_sync,
            refresh: resp.refresh == Some(true),
            from_snapshot: snapshot.map(str::to_string),
        };
        let transfer = volumes::send(d, op, &pool, &plan, &mut fs);
        tokio::pin!(transfer);
        // The target may report on the control channel while we still send: a failure ends
        // the transfer, its success can arrive before our last stream is closed.
        let decode = |m: Vec<u8>| {
            MigrationControl::decode(&m).map_err(|e| ApiError::bad_request(e.to_string()))
        };
        let c = tokio::select! {
            r = &mut transfer => {
                r?;
                decode(control.recv_msg().await?)?
            }
            m = control.recv_msg_within(None) => {
                let c = decode(m?)?;
                if c.success {
                    transfer.await?;
                }
                c
            }
        };
        if !c.success {
            return Err(ApiError::bad_request(
                c.message
                    .unwrap_or_else(|| "Migration failed on the target".into()),
            ));
        }
        Ok(())
    }
    .await;
    if let Err(e) = &res {
        send_control(&control, &Err(e.clone())).await;
    }
    drop(fs);
    res
}

// ---------------------------------------------------------------- target

/// `POST /1.0/instances` with `source.type=migration`. `row` is the prepared new instance, or
/// the existing one for a refresh. Pull: a task that dials the source. Push: a websocket
/// operation the source connects to.
pub fn start_sink(
    d: &Arc<Daemon>,
    row: InstanceRow,
    src: SinkSource,
    existing: bool,
    start: bool,
) -> Result<Arc<Op>> {
    let d2 = d.clone();
    let resources = instance_resources(&[&row.name]);
    if !src.push {
        return Ok(d
            .ops
            .start_task("Creating instance", resources, true, move |op| async move {
                let id = crate::endpoints::identity(&d2)?;
                let dial =
                    |k: &str| conn::dial(&id, &src.operation, &src.certificate, &src.secrets[k]);
                let control = dial("control").await?;
                let fs = match dial("fs").await {
                    Ok(f) => f,
                    Err(e) => {
                        send_control(&control, &Err(e.clone())).await;
                        return Err(e);
                    }
                };
                sink_and_start(&d2, &op, row, &src, existing, start, control, fs).await
            }));
    }
    let secrets: Vec<(String, String)> = ["control", "fs"]
        .iter()
        .map(|k| (k.to_string(), random_secret()))
        .collect();
    let meta: BTreeMap<String, String> = secrets.iter().cloned().collect();
    Ok(d.ops.start_websocket_with(
        "Creating instance",
        resources,
        json!(meta),
        secrets,
        true,
        move |op, sockets| async move {
            let (control, fs) = accept(sockets).await?;
            sink_and_start(&d2, &op, row, &src, existing, start, control, fs).await
        },
    ))
}

#[allow(clippy::too_many_arguments)]
async fn sink_and_start(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    row: InstanceRow,
    src: &SinkSource,
    existing: bool,
    start: bool,
    control: Conn,
    fs: Conn,
) -> crate::operations::TaskResult {
    let name = row.name.clone();
    run_sink(d, op, row, src, existing, control, fs).await?;
    if start {
        crate::instance::lifecycle::start(d, &name).await?;
    }
    Ok(None)
}

/// What the target made so far, undone on failure.
#[derive(Debug, Default, Clone)]
struct Made {
    row: bool,
    volume: bool,
    /// Held by work that outlives a cancelled task (a local copy on the blocking pool): the
    /// undo waits for it before removing the volume.
    busy: Arc<std::sync::Mutex<()>>,
}

/// Undoes a half-made target: inline when the receive fails, from `Drop` when the operation is
/// cancelled (its task is dropped wherever it was).
struct Undo {
    d: Arc<Daemon>,
    name: String,
    pool: String,
    made: Made,
    armed: bool,
}

impl std::fmt::Debug for Undo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Undo")
            .field("name", &self.name)
            .field("made", &self.made)
            .field("armed", &self.armed)
            .finish()
    }
}

impl Undo {
    fn job(&self) -> impl FnOnce() + Send + 'static {
        let (d, name, pool, made) = (
            self.d.clone(),
            self.name.clone(),
            self.pool.clone(),
            self.made.clone(),
        );
        move || {
            let _busy = made.busy.lock().unwrap_or_else(|e| e.into_inner());
            if made.volume
                && let Ok(pool) = d.pool(&pool)
                && pool.delete_instance(&name).is_err()
            {
                // Snapshots received before the instance volume existed.
                volumes::remove_leftovers(&pool, &name);
            }
            let _ = std::fs::remove_file(d.dir.join("containers").join(&name));
            if made.row {
                let _ = d.db.instance_delete(&name);
            }
        }
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if self.armed {
            std::thread::spawn(self.job());
        }
    }
}

async fn run_sink(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    row: InstanceRow,
    src: &SinkSource,
    existing: bool,
    mut control: Conn,
    mut fs: Conn,
) -> Result<()> {
    let lock = d.instance_lock(&row.name);
    let _g = lock.lock().await;
    let mut undo = Undo {
        d: d.clone(),
        name: row.name.clone(),
        pool: row.pool.clone(),
        made: Made::default(),
        armed: !existing,
    };
    let res = sink_locked(
        d,
        op,
        &row,
        src,
        existing,
        &mut control,
        &mut fs,
        &mut undo.made,
    )
    .await;
    send_control(&control, &res).await;
    if res.is_err() && undo.armed {
        let _ = tokio::task::spawn_blocking(undo.job()).await;
    }
    undo.armed = false;
    // The control message is on the wire before the filesystem socket closes.
    control.close().await;
    drop(fs);
    if res.is_ok() {
        d.events.lifecycle(
            "instance-created",
            &format!("/1.0/instances/{}", row.name),
            json!({"type": "container", "storage-pool": row.pool}),
        );
    }
    res
}

#[allow(clippy::too_many_arguments)]
async fn sink_locked(
    d: &Arc<Daemon>,
    op: &Arc<Op>,
    row: &InstanceRow,
    src: &SinkSource,
    existing: bool,
    control: &mut Conn,
    fs: &mut Conn,
    made: &mut Made,
) -> Result<()> {
    let pool = d.pool(&row.pool)?;
    let info = pool.info();
    if existing && rt::probe(d, &row.name).is_active() {
        return Err(ApiError::bad_request("Cannot refresh a running instance"));
    }
    let offer = decode_header(&control.recv_msg().await?)?;
    let ours = pool_types(info.driver);
    let mut fs_type = if ours.contains(&offer.fs) {
        offer.fs
    } else {
        proto::FS_RSYNC
    };
    let offered_rsync = offer.rsync_feature_names();
    let common: Vec<&str> = our_rsync_features(&info)
        .into_iter()
        .filter(|f| offered_rsync.contains(f))
        .collect();
    let final_sync = offer.criu == Some(proto::CRIU_NONE);
    let mut resp = MigrationHeader {
        fs: fs_type,
        criu: final_sync.then_some(proto::CRIU_NONE),
        snapshot_names: offer.snapshot_names.clone(),
        snapshots: offer.snapshots.clone(),
        refresh: Some(existing),
        predump: Some(false),
        rsync_features: Some(rsync_features_msg(&common)),
        ..Default::default()
    };
    type_features(&mut resp, fs_type);

    // Legacy sources send names only: the snapshots then take the instance's config.
    let mut snaps: Vec<proto::Snapshot> = if offer.snapshot_names.len() == offer.snapshots.len() {
        offer.snapshots.clone()
    } else {
        offer
            .snapshot_names
            .iter()
            .map(|n| proto::Snapshot {
                name: n.clone(),
                local_config: row.config.clone().into_iter().collect(),
                profiles: row.profiles.clone(),
                architecture: arch_id(&row.architecture),
                ..Default::default()
            })
            .collect()
    };
    if src.instance_only {
        snaps.clear();
        resp.snapshot_names.clear();
        resp.snapshots.clear();
    }
    // A refresh keeps the target's snapshots that match the source's by name and creation
    // date, deletes the others, and asks only for the missing ones.
    let mut have: Vec<String> = vec![];
    if existing {
        let target_snaps = d.db.snapshots(&row.name)?;
        let src_dates: BTreeMap<&str, Option<i64>> = snaps
            .iter()
            .map(|s| (s.name.as_str(), s.creation_date))
            .collect();
        for t in &target_snaps {
            let keep = src_dates.get(t.name.as_str()) == Some(&Some(unix(&t.created_at)));
            if keep {
                have.push(t.name.clone());
            } else {
                let (p, n, s) = (pool.clone(), row.name.clone(), t.name.clone());
                tokio::task::spawn_blocking(move || p.delete_snapshot(&n, &s)).await??;
                d.db.snapshot_delete(&row.name, &t.name)?;
            }
        }
        snaps.retain(|s| !have.contains(&s.name));
        resp.snapshots = snaps.clone();
        resp.snapshot_names = snaps.iter().map(|s| s.name.clone()).collect();
        // An incremental btrfs refresh needs the kept snapshots to be the source's own
        // (received by an earlier send stream, which later streams name as their parent);
        // otherwise, and for zfs, rsync brings the differences.
        let incremental = fs_type == proto::FS_BTRFS
            && have.iter().all(|s| {
                lxd_storage::btrfs::stream::was_received(&pool.snapshot_path(&row.name, s))
            });
        if !incremental {
            fs_type = proto::FS_RSYNC;
        }
        resp.fs = fs_type;
        resp.btrfs_features = None;
        resp.zfs_features = None;
        type_features(&mut resp, fs_type);
    }
    control.send_msg(resp.encode()).await?;

    // The row first (LXD creates the instance record before the volume).
    let mut row = row.clone();
    if !existing {
        row.id = d.db.instance_create(&row)?;
        made.row = true;
    }
    let plan = volumes::RecvPlan {
        name: row.name.clone(),
        fs_type,
        snapshots: snaps.iter().map(|s| s.name.clone()).collect(),
        rsync_features: effective_rsync_features(&resp),
        final_sync,
        existing,
    };
    let instance_id = row.id;
    let pool_name = row.pool.clone();
    let mut on_snapshot = |name: &str| -> Result<()> {
        if let Some(s) = snaps.iter().find(|s| s.name == name) {
            let mut r = snapshot_from_proto(s, &pool_name);
            r.instance_id = instance_id;
            d.db.snapshot_create(&r)?;
        }
        Ok(())
    };
    let transfer = volumes::recv(d, op, &pool, &plan, fs, made, &mut on_snapshot);
    tokio::select! {
        r = transfer => r?,
        m = control.recv_msg_within(None) => {
            let m = m?;
            let c = MigrationControl::decode(&m).map_err(|e| ApiError::bad_request(e.to_string()))?;
            return Err(ApiError::bad_request(c.message.unwrap_or_else(|| "Migration failed on the source".into())));
        }
    }

    // The files arrive with the source's on-disk ownership; record it so the first start
    // shifts them as needed (LXD's resetContainerDiskIdmap).
    let mut row = d.db.instance(&row.name)?;
    row.config.insert(
        "volatile.last_state.idmap".into(),
        idmap_from_proto(&offer.idmap),
    );
    d.db.instance_update(&row)?;
    let path = pool.instance_path(&row.name);
    let link = d.dir.join("containers").join(&row.name);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&path, &link)
        .map_err(|e| crate::error::io_err("create symlink", &link, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_through_protobuf() {
        let mut root = BTreeMap::new();
        root.insert("type".to_string(), "disk".to_string());
        root.insert("path".to_string(), "/".to_string());
        root.insert("pool".to_string(), "src-pool".to_string());
        let mut devices = lxd_api::DevicesMap::new();
        devices.insert("root".into(), root.into_iter().collect());
        let mut config = lxd_api::ConfigMap::new();
        config.insert("user.a".into(), "b".into());
        let row = SnapshotRow {
            id: 7,
            instance_id: 3,
            name: "s0".into(),
            architecture: "x86_64".into(),
            stateful: false,
            description: String::new(),
            created_at: "2026-11-28T03:00:00Z".into(),
            expires_at: lxd_api::ZERO_TIME.into(),
            config,
            devices,
            profiles: vec!["default".into()],
            ephemeral: false,
        };
        let p = snapshot_to_proto(&row);
        assert_eq!(p.architecture, 2);
        assert_eq!(p.expiry_date, Some(-62_135_596_800));
        let wire = MigrationHeader {
            snapshots: vec![p],
            ..Default::default()
        }
        .encode();
        let back = &MigrationHeader::decode(&wire).unwrap().snapshots[0];
        let r = snapshot_from_proto(back, "dst-pool");
        assert_eq!(r.name, "s0");
        assert_eq!(r.architecture, "x86_64");
        assert_eq!(
            r.created_at.parse::<jiff::Timestamp>().unwrap(),
            "2026-11-28T03:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
        assert_eq!(r.expires_at, lxd_api::ZERO_TIME);
        assert_eq!(r.config["user.a"], "b");
        assert_eq!(r.devices["root"]["pool"], "dst-pool");
        assert_eq!(r.profiles, vec!["default".to_string()]);
    }

    #[test]
    fn rsync_features_fall_back_to_lxd_3_7() {
        let mut h = MigrationHeader::default();
        assert_eq!(
            effective_rsync_features(&h),
            vec!["xattrs", "delete", "compress"]
        );
        h.rsync_features = Some(rsync_features_msg(&["delete", "bidirectional"]));
        assert_eq!(
            effective_rsync_features(&h),
            vec!["delete", "bidirectional"]
        );
    }

    #[test]
    fn idmaps_convert_both_ways() {
        let v = r#"[{"Isuid":true,"Isgid":false,"Hostid":100000,"Nsid":0,"Maprange":65536},{"Isuid":false,"Isgid":true,"Hostid":100000,"Nsid":0,"Maprange":65536}]"#;
        let p = idmap_to_proto(Some(&v.to_string()));
        assert_eq!(p.len(), 2);
        assert!(p[0].isuid && !p[0].isgid && p[0].hostid == 100000);
        let back: serde_json::Value = serde_json::from_str(&idmap_from_proto(&p)).unwrap();
        let want: serde_json::Value = serde_json::from_str(v).unwrap();
        assert_eq!(back, want);
        assert!(idmap_to_proto(Some(&"[]".to_string())).is_empty());
        assert_eq!(idmap_from_proto(&[]), "[]");
    }
}
