//! The daemon's shared state and its lifecycle: directories, database, storage pools, listeners,
//! re-attaching to running instances, and the two ways to stop (reload leaves containers running,
//! shutdown stops them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::error::{ApiError, Result, io_err};
use crate::events::Events;
use crate::operations::Operations;

/// How the daemon was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM/SIGINT: exit, containers keep running (LXD's "reload").
    Reload,
    /// SIGPWR or `lxd shutdown`: stop instances cleanly, then exit.
    Shutdown,
}

#[derive(Debug)]
pub struct Daemon {
    pub dir: PathBuf,
    pub db: Db,
    pub events: Events,
    pub ops: Arc<Operations>,
    pub started: Instant,
    /// Our own binary, re-executed for the fork helpers (`lxd forkstart`, `forkexec`, ...).
    pub exe: PathBuf,
    pub stop: CancellationToken,
    stop_mode: Mutex<Option<StopMode>>,
    ready: AtomicBool,
    instance_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub pools: RwLock<HashMap<String, Arc<dyn lxd_storage::Driver>>>,
    /// Managed networks: dnsmasq supervisors, proxy relays, the ruleset lock.
    pub net: crate::network::NetState,
    /// The server certificate and the HTTPS listener.
    pub https: crate::endpoints::Https,
    /// Remote image servers: download locks, index cache, the image refresh/expiry tasks.
    pub remotes: crate::remotes::RemoteState,
}

/// The directories under `$LXD_DIR`, created at start.
pub const SUBDIRS: &[(&str, u32)] = &[
    ("database", 0o700),
    ("images", 0o700),
    ("storage-pools", 0o711),
    ("containers", 0o711),
    ("snapshots", 0o700),
    ("logs", 0o700),
    ("run", 0o711),
    ("disks", 0o700),
    ("devices", 0o711),
    ("networks", 0o711),
];

impl Daemon {
    pub fn open(dir: &Path) -> Result<Arc<Daemon>> {
        create_dir_mode(dir, 0o711)?;
        for (sub, mode) in SUBDIRS {
            create_dir_mode(&dir.join(sub), *mode)?;
        }
        let db = Db::open(&dir.join("database").join("local.db"))?;
        let events = Events::new();
        let ops = Operations::new(events.clone());
        let exe = std::env::current_exe()
            .map_err(|e| ApiError::internal(format!("Failed to find our own binary: {e}")))?;
        let d = Arc::new(Daemon {
            dir: dir.to_path_buf(),
            db,
            events,
            ops,
            started: Instant::now(),
            exe,
            stop: CancellationToken::new(),
            stop_mode: Mutex::new(None),
            ready: AtomicBool::new(false),
            instance_locks: Mutex::new(HashMap::new()),
            pools: RwLock::new(HashMap::new()),
            net: Default::default(),
            https: Default::default(),
            remotes: Default::default(),
        });
        d.ensure_default_profile()?;
        Ok(d)
    }

    fn ensure_default_profile(&self) -> Result<()> {
        if self.db.profile_opt("default")?.is_none() {
            self.db.profile_create(&crate::db::profiles::ProfileRow {
                name: "default".into(),
                description: "Default LXD profile".into(),
                ..Default::default()
            })?;
        }
        Ok(())
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn request_stop(&self, mode: StopMode) {
        let mut m = self.stop_mode.lock().expect("stop mode lock");
        // A shutdown request wins over a reload.
        if *m != Some(StopMode::Shutdown) {
            *m = Some(mode);
        }
        drop(m);
        self.stop.cancel();
    }

    pub fn stop_mode(&self) -> Option<StopMode> {
        *self.stop_mode.lock().expect("stop mode lock")
    }

    /// The lock serialising lifecycle changes (start, stop, delete, ...) of one instance.
    pub fn instance_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.instance_locks
            .lock()
            .expect("instance locks")
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.join("unix.socket")
    }

    /// Runtime directory of an instance (spec, state, monitor socket): outside its volume.
    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.dir.join("run").join(name)
    }

    pub fn log_dir(&self, name: &str) -> PathBuf {
        self.dir.join("logs").join(name)
    }

    pub fn images_dir(&self) -> PathBuf {
        self.dir.join("images")
    }

    pub fn pool(&self, name: &str) -> Result<Arc<dyn lxd_storage::Driver>> {
        self.pools
            .read()
            .expect("pools lock")
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("Storage pool \"{name}\" not found")))
    }
}

pub fn create_dir_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // Keep the mode LXD expects even if something else created it.
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
        }
        Err(e) => return Err(io_err("create", path, e)),
    }
    Ok(())
}
