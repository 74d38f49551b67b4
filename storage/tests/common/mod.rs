//! Helpers for the root integration tests: a root check that skips loudly, unique scratch
//! directories, a sample image filler, and guards that clean up even when a test fails.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lxd_storage::{ConfigMap, Driver};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Print to the real stderr: the test harness captures `eprintln!` of passing tests, and a skip
/// must be seen.
pub fn loud(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// True when running as root; otherwise prints a loud skip line.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    loud(&format!(
        "SKIPPED {test}: needs root (storage integration tests create pools and mounts)"
    ));
    false
}

/// A short unique scratch directory (unix socket paths and loop names stay short).
pub fn scratch(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("lxs{tag}{}-", std::process::id()))
        .tempdir_in("/tmp")
        .expect("scratch dir")
}

pub fn cfg(kv: &[(&str, &str)]) -> ConfigMap {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Fill an image volume with a small tree exercising ownership, modes, symlinks, hardlinks, a
/// device node and (when `xattrs`) an xattr.
pub fn sample_filler(xattrs: bool) -> impl FnMut(&Path) -> Result<(), BoxError> {
    move |dir: &Path| {
        let r = dir.join("rootfs");
        fs::create_dir_all(r.join("etc"))?;
        fs::create_dir_all(r.join("home/user"))?;
        fs::create_dir_all(r.join("dev"))?;
        fs::write(r.join("etc/hostname"), "image\n")?;
        fs::write(r.join("etc/big"), vec![7u8; 200_000])?;
        fs::hard_link(r.join("etc/big"), r.join("etc/big-link"))?;
        std::os::unix::fs::symlink("/etc/hostname", r.join("etc/hn-link"))?;
        std::os::unix::fs::chown(r.join("home/user"), Some(1000), Some(1000))?;
        fs::set_permissions(r.join("home/user"), fs::Permissions::from_mode(0o700))?;
        sh(
            "mknod",
            &[r.join("dev/null").to_str().unwrap_or(""), "c", "1", "3"],
        )?;
        if xattrs {
            sh(
                "setfattr",
                &[
                    "-n",
                    "user.lxd",
                    "-v",
                    "yes",
                    r.join("etc/hostname").to_str().unwrap_or(""),
                ],
            )?;
        }
        fs::write(
            dir.join("metadata.yaml"),
            "architecture: x86_64\ncreation_date: 1\n",
        )?;
        fs::create_dir_all(dir.join("templates"))?;
        fs::write(dir.join("templates/hostname.tpl"), "{{ container.name }}\n")?;
        Ok(())
    }
}

/// Check what `sample_filler` made survived a copy into `root` (an instance volume).
pub fn check_sample(root: &Path, xattrs: bool) {
    let r = root.join("rootfs");
    assert_eq!(
        fs::read_to_string(r.join("etc/hostname")).unwrap(),
        "image\n"
    );
    let m = fs::metadata(r.join("home/user")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o700));
    assert_eq!(fs::metadata(r.join("etc/big")).unwrap().nlink(), 2);
    assert_eq!(
        fs::read_link(r.join("etc/hn-link")).unwrap(),
        Path::new("/etc/hostname")
    );
    let dev = fs::symlink_metadata(r.join("dev/null")).unwrap();
    assert_eq!(dev.rdev(), nix::sys::stat::makedev(1, 3));
    if xattrs {
        let v = sh(
            "getfattr",
            &[
                "--only-values",
                "-n",
                "user.lxd",
                r.join("etc/hostname").to_str().unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(v, "yes");
    }
    assert!(root.join("metadata.yaml").is_file());
    assert!(root.join("templates/hostname.tpl").is_file());
}

/// Deletes the pool when dropped (also on panic), then runs extra clean-up commands.
pub struct PoolGuard {
    pub driver: Box<dyn Driver>,
    pub extra: Vec<Vec<String>>,
}

impl PoolGuard {
    pub fn new(driver: Box<dyn Driver>) -> Self {
        PoolGuard {
            driver,
            extra: Vec::new(),
        }
    }
}

impl std::ops::Deref for PoolGuard {
    type Target = dyn Driver;
    fn deref(&self) -> &Self::Target {
        &*self.driver
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        if let Err(e) = self.driver.delete_pool() {
            eprintln!("cleanup: delete_pool {}: {e}", self.driver.name());
            // Best effort so a failed test leaves no mount, zpool or loop device behind.
            let path = self.driver.pool_path();
            let path = path.to_str().unwrap_or("");
            let _ = sh("umount", &["-R", "-l", path]);
            if self.driver.info().driver == "zfs"
                && let Some(z) = self.driver.config().get("zfs.pool_name")
            {
                let _ = sh("zpool", &["destroy", "-f", z]);
            }
            if let Some(src) = self.driver.config().get("source")
                && src.starts_with("/tmp/lxs")
            {
                let _ = fs::remove_file(src);
            }
        }
        for c in &self.extra {
            let args: Vec<&str> = c[1..].iter().map(String::as_str).collect();
            let _ = sh(&c[0], &args);
        }
    }
}

/// Unmounts a path when dropped.
pub struct MountGuard(pub PathBuf);
impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = sh("umount", &["-l", self.0.to_str().unwrap_or("")]);
    }
}

/// Entries in `dir` whose names start with '.' (leftover temporaries).
pub fn dot_entries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// The full driver scenario every driver must pass: image volume, instance, snapshot, restore,
/// copy, rename, delete. `xattrs` says whether the backing filesystem keeps them.
pub fn lifecycle(pool: &dyn Driver, xattrs: bool) {
    let fp = "abcdef0123456789";
    assert!(!pool.image_volume_exists(fp).unwrap());
    let mut filler = sample_filler(xattrs);
    let t = std::time::Instant::now();
    pool.create_image_volume(fp, &mut filler).unwrap();
    eprintln!(
        "[{}] create_image_volume: {:?}",
        pool.info().driver,
        t.elapsed()
    );
    assert!(pool.image_volume_exists(fp).unwrap());
    let mut filler2 = sample_filler(xattrs);
    assert!(matches!(
        pool.create_image_volume(fp, &mut filler2),
        Err(lxd_storage::Error::AlreadyExists(_))
    ));

    let t = std::time::Instant::now();
    let c1 = pool.create_instance_from_image("c1", fp).unwrap();
    eprintln!(
        "[{}] create_instance_from_image: {:?}",
        pool.info().driver,
        t.elapsed()
    );
    assert_eq!(c1, pool.instance_path("c1"));
    assert_eq!(c1, pool.pool_path().join("containers/c1"));
    check_sample(&c1, xattrs);
    assert!(matches!(
        pool.create_instance_from_image("c1", fp),
        Err(lxd_storage::Error::AlreadyExists(_))
    ));
    assert!(matches!(
        pool.create_instance_from_image("c9", "ffff"),
        Err(lxd_storage::Error::NotFound(_))
    ));
    assert!(pool.create_instance_from_image("../evil", fp).is_err());
    assert!(pool.instance_exists("c1").unwrap());
    let usage = pool.instance_usage("c1").unwrap();
    eprintln!("[{}] usage c1: {usage:?}", pool.info().driver);

    // Snapshot, change, restore.
    let hn = c1.join("rootfs/etc/hostname");
    fs::write(&hn, "c1\n").unwrap();
    pool.create_snapshot("c1", "snap0").unwrap();
    assert!(matches!(
        pool.create_snapshot("c1", "snap0"),
        Err(lxd_storage::Error::AlreadyExists(_))
    ));
    fs::write(&hn, "changed\n").unwrap();
    fs::write(c1.join("rootfs/etc/new-file"), "x").unwrap();
    pool.create_snapshot("c1", "snap1").unwrap();
    assert_eq!(pool.list_snapshots("c1").unwrap(), vec!["snap0", "snap1"]);
    fs::write(&hn, "latest\n").unwrap();
    let t = std::time::Instant::now();
    pool.restore_snapshot("c1", "snap1").unwrap();
    eprintln!(
        "[{}] restore_snapshot: {:?}",
        pool.info().driver,
        t.elapsed()
    );
    let c1 = pool.mount_instance("c1").unwrap();
    assert_eq!(
        fs::read_to_string(c1.join("rootfs/etc/hostname")).unwrap(),
        "changed\n"
    );

    // Copy with snapshots, from a snapshot, rename.
    let t = std::time::Instant::now();
    let c2 = pool.copy_instance("c1", "c2", true).unwrap();
    eprintln!(
        "[{}] copy_instance (with snapshots): {:?}",
        pool.info().driver,
        t.elapsed()
    );
    check_sample_owner(&c2);
    assert_eq!(pool.list_snapshots("c2").unwrap(), vec!["snap0", "snap1"]);
    let c3 = pool.copy_instance("c1", "c3", false).unwrap();
    assert!(pool.list_snapshots("c3").unwrap().is_empty());
    fs::write(c3.join("rootfs/etc/only-c3"), "3").unwrap();
    assert!(!c1.join("rootfs/etc/only-c3").exists());
    let c4 = pool
        .create_instance_from_snapshot("c1", "snap1", "c4")
        .unwrap();
    assert_eq!(
        fs::read_to_string(c4.join("rootfs/etc/hostname")).unwrap(),
        "changed\n"
    );

    pool.rename_snapshot("c2", "snap0", "first").unwrap();
    assert_eq!(pool.list_snapshots("c2").unwrap(), vec!["first", "snap1"]);
    pool.rename_instance("c2", "c2new").unwrap();
    assert!(!pool.instance_exists("c2").unwrap());
    assert_eq!(
        pool.list_snapshots("c2new").unwrap(),
        vec!["first", "snap1"]
    );
    assert!(
        pool.mount_instance("c2new")
            .unwrap()
            .join("rootfs/etc/hostname")
            .exists()
    );
    assert!(matches!(
        pool.rename_instance("c3", "c1"),
        Err(lxd_storage::Error::AlreadyExists(_))
    ));

    // Restore an older snapshot (zfs: only with zfs.remove_snapshots, which drops newer ones).
    if pool.info().restore_any_snapshot {
        let removed = pool.restore_snapshot("c1", "snap0").unwrap();
        if pool.info().driver == "zfs" {
            assert_eq!(removed, vec!["snap1"]);
        } else {
            assert!(removed.is_empty());
        }
        assert_eq!(
            fs::read_to_string(c1.join("rootfs/etc/hostname")).unwrap(),
            "c1\n"
        );
        assert!(!c1.join("rootfs/etc/new-file").exists());
        check_sample_owner(&c1);
    }

    // Deletes: snapshot, instances (with snapshots), image.
    pool.delete_snapshot("c2new", "first").unwrap();
    assert_eq!(pool.list_snapshots("c2new").unwrap(), vec!["snap1"]);
    let empty = pool.create_instance_empty("e1").unwrap();
    assert!(empty.join("rootfs").is_dir());
    pool.delete_image_volume(fp).unwrap();
    assert!(!pool.image_volume_exists(fp).unwrap());
    for n in ["c1", "c2new", "c3", "c4", "e1"] {
        pool.delete_instance(n).unwrap();
        assert!(!pool.instance_exists(n).unwrap(), "{n}");
        assert!(pool.list_snapshots(n).unwrap().is_empty(), "{n}");
    }
    let (used, total) = pool.resources().unwrap();
    assert!(used <= total && total > 0);
    assert!(dot_entries(&pool.pool_path().join("containers")).is_empty());
    assert!(dot_entries(&pool.pool_path().join("images")).is_empty());
}

fn check_sample_owner(root: &Path) {
    let m = fs::metadata(root.join("rootfs/home/user")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1000));
}

/// A filler that fails half way: the image volume must not exist afterwards.
pub fn failing_filler_leaves_nothing(pool: &dyn Driver) {
    let fp = "0badf00d";
    let mut filler = |dir: &Path| -> Result<(), BoxError> {
        fs::create_dir_all(dir.join("rootfs/etc"))?;
        fs::write(dir.join("rootfs/etc/x"), "x")?;
        Err("injected failure".into())
    };
    let e = pool.create_image_volume(fp, &mut filler).unwrap_err();
    assert!(e.to_string().contains("injected failure"), "{e}");
    assert!(!pool.image_volume_exists(fp).unwrap());
    let mut empty = |_: &Path| -> Result<(), BoxError> { Ok(()) };
    let e = pool.create_image_volume(fp, &mut empty).unwrap_err();
    assert!(e.to_string().contains("rootfs"), "{e}");
    assert!(!pool.image_volume_exists(fp).unwrap());
    assert!(dot_entries(&pool.pool_path().join("images")).is_empty());
}

fn zfs_answers() -> bool {
    Command::new("zpool")
        .arg("list")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// (tests currently using zfs, the zfs-fuse we started)
pub static DAEMON: Mutex<(usize, Option<Child>)> = Mutex::new((0, None));

/// Keeps zfs-fuse running while alive.
pub struct ZfsDaemon;

impl ZfsDaemon {
    pub fn start(test: &str) -> Option<ZfsDaemon> {
        if !require_root(test) {
            return None;
        }
        if Command::new("zpool").arg("-h").output().is_err() {
            loud(&format!("SKIPPED {test}: the zfs tools are not installed"));
            return None;
        }
        let mut d = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
        if d.1.is_none() && !zfs_answers() {
            let child = Command::new("setsid")
                .args(["zfs-fuse", "--no-daemon", "--no-kstat-mount"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let Ok(child) = child else {
                loud(&format!("SKIPPED {test}: cannot start zfs-fuse"));
                return None;
            };
            eprintln!("started zfs-fuse, pid {}", child.id());
            d.1 = Some(child);
            let t = Instant::now();
            while !zfs_answers() {
                if t.elapsed() > Duration::from_secs(10) {
                    panic!("zfs-fuse did not come up in 10 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        d.0 += 1;
        Some(ZfsDaemon)
    }
}

impl Drop for ZfsDaemon {
    fn drop(&mut self) {
        let mut d = DAEMON.lock().unwrap_or_else(|e| e.into_inner());
        d.0 -= 1;
        if d.0 == 0
            && let Some(mut child) = d.1.take()
        {
            // SIGTERM: zfs-fuse unmounts its datasets and exits within about 5 s.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = child.try_wait() {
                    eprintln!("stopped zfs-fuse");
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
