//! Root integration tests of what every driver does beyond instances: custom volumes and their
//! snapshots, read-only snapshot mounts, refreshes (native where the driver has one) and copies
//! between pools of different drivers.

mod common;
use common::*;
use std::fs;
use std::path::Path;

use lxd_storage::{Driver, Error, VolumeType};

const CUSTOM: VolumeType = VolumeType::Custom;

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Custom volumes: create, files, snapshots, restore, rename, copy, quota, delete.
fn custom_volume_flow(pool: &dyn Driver) {
    let drv = pool.info().driver;
    let v = pool.create_volume(CUSTOM, "data").unwrap();
    assert_eq!(v, pool.pool_path().join("custom/data"));
    assert!(!v.join("rootfs").exists(), "custom volumes have no rootfs/");
    assert!(matches!(
        pool.create_volume(CUSTOM, "data"),
        Err(Error::AlreadyExists(_))
    ));
    assert!(pool.create_volume(CUSTOM, "a/b").is_err());
    fs::write(v.join("f"), "one").unwrap();
    pool.create_volume_snapshot(CUSTOM, "data", "s1").unwrap();
    fs::write(v.join("f"), "two").unwrap();
    pool.create_volume_snapshot(CUSTOM, "data", "s2").unwrap();
    assert_eq!(
        pool.list_volume_snapshots(CUSTOM, "data").unwrap(),
        vec!["s1", "s2"]
    );
    // A read-only view of an older snapshot.
    let s1 = pool.mount_volume_snapshot(CUSTOM, "data", "s1").unwrap();
    assert_eq!(read(&s1.join("f")), "one");
    if drv != "dir" {
        assert!(
            fs::write(s1.join("g"), "x").is_err(),
            "[{drv}] snapshot view is writable"
        );
    }
    pool.unmount_volume_snapshot(CUSTOM, "data", "s1").unwrap();
    fs::write(v.join("f"), "three").unwrap();
    pool.restore_volume_snapshot(CUSTOM, "data", "s2", None)
        .unwrap();
    let v = pool.mount_volume(CUSTOM, "data").unwrap();
    assert_eq!(read(&v.join("f")), "two");
    // Older snapshot: zfs only when allowed for this volume.
    if drv == "zfs" {
        assert!(
            pool.restore_volume_snapshot(CUSTOM, "data", "s1", Some(false))
                .is_err()
        );
        assert_eq!(
            pool.restore_volume_snapshot(CUSTOM, "data", "s1", Some(true))
                .unwrap(),
            vec!["s2"]
        );
    } else {
        assert!(
            pool.restore_volume_snapshot(CUSTOM, "data", "s1", None)
                .unwrap()
                .is_empty()
        );
        pool.delete_volume_snapshot(CUSTOM, "data", "s2").unwrap();
    }
    assert_eq!(read(&v.join("f")), "one");
    pool.rename_volume_snapshot(CUSTOM, "data", "s1", "first")
        .unwrap();
    pool.rename_volume(CUSTOM, "data", "data2").unwrap();
    assert!(!pool.volume_exists(CUSTOM, "data").unwrap());
    assert_eq!(
        pool.list_volume_snapshots(CUSTOM, "data2").unwrap(),
        vec!["first"]
    );
    let c = pool.copy_volume(CUSTOM, "data2", "copy", true).unwrap();
    assert_eq!(read(&c.join("f")), "one");
    assert_eq!(
        pool.list_volume_snapshots(CUSTOM, "copy").unwrap(),
        vec!["first"]
    );
    let f = pool
        .create_volume_from_snapshot(CUSTOM, "data2", "first", "fromsnap")
        .unwrap();
    assert_eq!(read(&f.join("f")), "one");
    if pool.info().quotas {
        pool.set_volume_quota(CUSTOM, "copy", Some(64 << 20))
            .unwrap();
        assert!(pool.volume_usage(CUSTOM, "copy").unwrap().is_some());
        pool.set_volume_quota(CUSTOM, "copy", None).unwrap();
    } else {
        assert!(matches!(
            pool.set_volume_quota(CUSTOM, "copy", Some(1 << 30)),
            Err(Error::NotSupported(_))
        ));
    }
    for n in ["data2", "copy", "fromsnap"] {
        pool.delete_volume(CUSTOM, n).unwrap();
        assert!(!pool.volume_exists(CUSTOM, n).unwrap());
    }
    assert!(dot_entries(&pool.pool_path().join("custom")).is_empty());
}

/// Rewrite a file right after a snapshot, with a time of its own. A rewrite of the same size
/// within one clock tick of the snapshot keeps the snapshot's mtime to the nanosecond, and the
/// rsync quick check of file-by-file copies (as LXD's) cannot tell the two apart; these tests
/// are about the flows.
fn rewrite(p: &Path, content: &str) {
    fs::write(p, content).unwrap();
    fs::File::options()
        .write(true)
        .open(p)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(1))
        .unwrap();
}

/// Refresh in one pool: new snapshots and contents arrive, target-only snapshots go.
fn refresh_flow(pool: &dyn Driver) {
    let drv = pool.info().driver;
    let c1 = pool.create_instance_empty("r1").unwrap();
    fs::write(c1.join("rootfs/f"), "1").unwrap();
    pool.create_snapshot("r1", "s1").unwrap();
    pool.copy_instance("r1", "r2", true).unwrap();
    rewrite(&c1.join("rootfs/f"), "2");
    fs::write(c1.join("rootfs/new"), "n").unwrap();
    pool.create_snapshot("r1", "s2").unwrap();
    rewrite(&c1.join("rootfs/f"), "3");
    let c2 = pool.mount_instance("r2").unwrap();
    fs::write(c2.join("rootfs/only-on-target"), "x").unwrap();
    let t = std::time::Instant::now();
    let out = pool
        .refresh_volume(VolumeType::Container, "r1", "r2", &["s1".to_string()], true)
        .unwrap();
    eprintln!("[{drv}] refresh: {:?} {out:?}", t.elapsed());
    assert_eq!(out.added, vec!["s2"]);
    assert!(out.removed.is_empty());
    if drv != "dir" {
        assert!(out.incremental, "[{drv}] native refresh expected");
    }
    let c2 = pool.mount_instance("r2").unwrap();
    assert_eq!(read(&c2.join("rootfs/f")), "3");
    assert!(!c2.join("rootfs/only-on-target").exists());
    assert_eq!(pool.list_snapshots("r2").unwrap(), vec!["s1", "s2"]);
    let s2 = pool
        .mount_volume_snapshot(VolumeType::Container, "r2", "s2")
        .unwrap();
    assert_eq!(read(&s2.join("rootfs/f")), "2");
    pool.unmount_volume_snapshot(VolumeType::Container, "r2", "s2")
        .unwrap();
    // A snapshot only the target has is removed; without snapshots only the contents move.
    pool.create_snapshot("r2", "mine").unwrap();
    fs::write(c1.join("rootfs/f"), "4").unwrap();
    let out = pool
        .refresh_volume(
            VolumeType::Container,
            "r1",
            "r2",
            &["s1".to_string(), "s2".to_string()],
            false,
        )
        .unwrap();
    assert_eq!(out.removed, vec!["mine"]);
    assert!(out.added.is_empty());
    assert_eq!(
        read(&pool.mount_instance("r2").unwrap().join("rootfs/f")),
        "4"
    );
    pool.delete_instance("r2").unwrap();
    pool.delete_instance("r1").unwrap();
}

/// Copy and refresh between two pools of different drivers.
fn cross_pool_flow(a: &dyn Driver, b: &dyn Driver) {
    let tag = format!("{}->{}", a.info().driver, b.info().driver);
    let c = a.create_instance_empty("x1").unwrap();
    fs::write(c.join("rootfs/f"), "1").unwrap();
    fs::create_dir(c.join("rootfs/home")).unwrap();
    std::os::unix::fs::chown(c.join("rootfs/home"), Some(1_000_000), Some(1_000_000)).unwrap();
    a.create_snapshot("x1", "s1").unwrap();
    rewrite(&c.join("rootfs/f"), "2");
    let t = std::time::Instant::now();
    let d = lxd_storage::copy_across(a, VolumeType::Container, "x1", None, b, "x1", true).unwrap();
    eprintln!("[{tag}] copy with snapshots: {:?}", t.elapsed());
    assert_eq!(read(&d.join("rootfs/f")), "2");
    let m = fs::metadata(d.join("rootfs/home")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&m),
        1_000_000,
        "[{tag}] ownership kept"
    );
    assert_eq!(b.list_snapshots("x1").unwrap(), vec!["s1"]);
    let s = b
        .mount_volume_snapshot(VolumeType::Container, "x1", "s1")
        .unwrap();
    assert_eq!(read(&s.join("rootfs/f")), "1");
    b.unmount_volume_snapshot(VolumeType::Container, "x1", "s1")
        .unwrap();
    // A copy of one snapshot, and a failed copy leaves nothing.
    let one = lxd_storage::copy_across(a, VolumeType::Container, "x1", Some("s1"), b, "x2", false)
        .unwrap();
    assert_eq!(read(&one.join("rootfs/f")), "1");
    assert!(b.list_snapshots("x2").unwrap().is_empty());
    assert!(
        lxd_storage::copy_across(a, VolumeType::Container, "x1", Some("nope"), b, "x3", false)
            .is_err()
    );
    assert!(!b.instance_exists("x3").unwrap());
    // Refresh across pools.
    a.create_snapshot("x1", "s2").unwrap();
    rewrite(&c.join("rootfs/f"), "3");
    let out = lxd_storage::refresh_across(
        a,
        VolumeType::Container,
        "x1",
        b,
        "x1",
        &["s1".to_string()],
        true,
    )
    .unwrap();
    assert_eq!(out.added, vec!["s2"]);
    assert_eq!(read(&b.mount_instance("x1").unwrap().join("rootfs/f")), "3");
    for n in ["x1", "x2"] {
        b.delete_instance(n).unwrap();
    }
    a.delete_instance("x1").unwrap();
}

fn pools(s: &tempfile::TempDir, with_zfs: bool) -> Vec<PoolGuard> {
    let id = std::process::id();
    let mut out = vec![PoolGuard::new(
        lxd_storage::load("dir", &format!("vd{id}"), s.path(), &cfg(&[])).unwrap(),
    )];
    if lxd_storage::supported_drivers()
        .iter()
        .any(|(d, _)| *d == "btrfs")
    {
        out.push(PoolGuard::new(
            lxd_storage::load(
                "btrfs",
                &format!("vb{id}"),
                s.path(),
                &cfg(&[("size", "512MiB")]),
            )
            .unwrap(),
        ));
    }
    if with_zfs {
        out.push(PoolGuard::new(
            lxd_storage::load(
                "zfs",
                &format!("vz{id}"),
                s.path(),
                &cfg(&[("size", "512MiB")]),
            )
            .unwrap(),
        ));
    }
    for p in &out {
        p.create_pool().unwrap();
    }
    out
}

#[test]
fn custom_volumes_refresh_and_cross_pool_copies() {
    let Some(_z) = ZfsDaemon::start("custom_volumes_refresh_and_cross_pool_copies") else {
        return;
    };
    let s = scratch("v");
    let pools = pools(&s, true);
    for p in &pools {
        custom_volume_flow(&**p);
        refresh_flow(&**p);
    }
    for a in &pools {
        for b in &pools {
            if a.info().driver != b.info().driver {
                cross_pool_flow(&**a, &**b);
            }
        }
    }
}
