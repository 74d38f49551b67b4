//! Root integration tests of the btrfs driver on a loop file.

mod common;
use common::*;
use std::fs;

fn btrfs_ready(test: &str) -> bool {
    if !require_root(test) {
        return false;
    }
    if !lxd_storage::supported_drivers()
        .iter()
        .any(|(d, _)| *d == "btrfs")
    {
        loud(&format!(
            "SKIPPED {test}: btrfs-progs or kernel btrfs missing"
        ));
        return false;
    }
    true
}

#[test]
fn btrfs_pool_lifecycle_and_quota() {
    if !btrfs_ready("btrfs_pool_lifecycle_and_quota") {
        return;
    }
    let s = scratch("b");
    let name = format!("bt{}", std::process::id());
    let pool = PoolGuard::new(
        lxd_storage::load("btrfs", &name, s.path(), &cfg(&[("size", "1GiB")])).unwrap(),
    );
    pool.create_pool().unwrap();
    let loop_file = s.path().join(format!("disks/{name}.img"));
    assert_eq!(pool.config()["source"], loop_file.display().to_string());
    assert!(loop_file.is_file());
    assert!(pool.info().quotas && pool.info().optimized_images);
    lifecycle(&*pool, true);

    // Snapshots are read-only subvolumes, instances cloned from them writable ones.
    let c = pool.create_instance_empty("ro1").unwrap();
    pool.create_snapshot("ro1", "s0").unwrap();
    let ro = |p: &std::path::Path| {
        sh(
            "btrfs",
            &["property", "get", "-ts", &p.display().to_string(), "ro"],
        )
        .unwrap()
    };
    assert_eq!(ro(&pool.snapshot_path("ro1", "s0")).trim(), "ro=true");
    assert_eq!(ro(&c).trim(), "ro=false");
    let c2 = pool
        .create_instance_from_snapshot("ro1", "s0", "ro2")
        .unwrap();
    assert_eq!(ro(&c2).trim(), "ro=false");
    fs::write(c2.join("rootfs/w"), "x").unwrap();
    pool.delete_instance("ro2").unwrap();
    pool.delete_instance("ro1").unwrap();

    // Quota: qgroups enforce the limit, late (documented overshoot).
    let c = pool.create_instance_empty("q1").unwrap();
    pool.set_instance_quota("q1", Some(20 << 20)).unwrap();
    let out = sh(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={}", c.join("rootfs/big").display()),
            "bs=1M",
            "count=64",
            "conv=fsync",
        ],
    );
    assert!(out.is_err(), "64 MiB written under a 20 MiB quota");
    sh("sync", &[]).unwrap();
    let used = pool.instance_usage("q1").unwrap().unwrap();
    eprintln!(
        "[btrfs] 20 MiB quota: {} MiB referenced when EDQUOT hit",
        used >> 20
    );
    assert!(used < 40 << 20);
    // The limit survives restore.
    fs::remove_file(c.join("rootfs/big")).unwrap();
    pool.create_snapshot("q1", "s").unwrap();
    pool.restore_snapshot("q1", "s").unwrap();
    let c = pool.mount_instance("q1").unwrap();
    assert!(
        sh(
            "dd",
            &[
                "if=/dev/zero",
                &format!("of={}", c.join("rootfs/big").display()),
                "bs=1M",
                "count=64",
                "conv=fsync"
            ]
        )
        .is_err()
    );
    pool.set_instance_quota("q1", None).unwrap();
    pool.delete_instance("q1").unwrap();

    // Restart: unmount, mount again, data still there.
    let c = pool.create_instance_empty("keep").unwrap();
    fs::write(c.join("rootfs/f"), "x").unwrap();
    assert!(pool.unmount_pool().unwrap());
    assert!(!c.join("rootfs/f").exists());
    assert!(pool.mount_pool().unwrap());
    assert!(!pool.mount_pool().unwrap());
    assert_eq!(fs::read_to_string(c.join("rootfs/f")).unwrap(), "x");
    pool.delete_pool().unwrap();
    assert!(!loop_file.exists());
    assert!(!pool.pool_path().exists());
}

#[test]
fn btrfs_filler_failure_and_full_pool() {
    if !btrfs_ready("btrfs_filler_failure_and_full_pool") {
        return;
    }
    let s = scratch("b");
    let name = format!("bf{}", std::process::id());
    let pool = PoolGuard::new(
        lxd_storage::load("btrfs", &name, s.path(), &cfg(&[("size", "256MiB")])).unwrap(),
    );
    pool.create_pool().unwrap();
    failing_filler_leaves_nothing(&*pool);
    // A filler that fills the small pool: ENOSPC, and the image subvolume is gone.
    let mut filler = |dir: &std::path::Path| -> Result<(), BoxError> {
        fs::create_dir_all(dir.join("rootfs"))?;
        fs::write(dir.join("metadata.yaml"), "architecture: x86_64\n")?;
        sh(
            "dd",
            &[
                "if=/dev/urandom",
                &format!("of={}", dir.join("rootfs/blob").display()),
                "bs=1M",
                "count=400",
            ],
        )?;
        Ok(())
    };
    let e = pool.create_image_volume("f00d", &mut filler).unwrap_err();
    eprintln!("expected failure: {e}");
    assert!(!pool.image_volume_exists("f00d").unwrap());
    assert!(dot_entries(&pool.pool_path().join("images")).is_empty());
    // Pool sharing its loop-file name is refused.
    let twin = lxd_storage::load("btrfs", &name, s.path(), &cfg(&[])).unwrap();
    assert!(twin.create_pool().is_err());
}
