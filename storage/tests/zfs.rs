//! Root integration tests of the zfs driver on zfs-fuse (or OpenZFS when the host has it).
//! zfs-fuse is started by the test when its daemon is not running, and stopped at the end only
//! if this test started it.

mod common;
use common::*;
use std::fs;
use std::time::Instant;

use lxd_storage::Error;

fn zfs_pool(s: &tempfile::TempDir, tag: &str, extra: &[(&str, &str)]) -> PoolGuard {
    let name = format!("lx{tag}{}", std::process::id());
    let mut kv = vec![("size", "512MiB")];
    kv.extend_from_slice(extra);
    let pool = PoolGuard::new(lxd_storage::load("zfs", &name, s.path(), &cfg(&kv)).unwrap());
    pool.create_pool().unwrap();
    pool
}

fn zfs_list(root: &str) -> String {
    sh(
        "zfs",
        &["list", "-H", "-o", "name", "-t", "all", "-r", root],
    )
    .unwrap_or_default()
}

#[test]
fn zfs_pool_lifecycle() {
    let Some(_d) = ZfsDaemon::start("zfs_pool_lifecycle") else {
        return;
    };
    let s = scratch("z");
    let pool = zfs_pool(&s, "a", &[("zfs.remove_snapshots", "true")]);
    let zname = pool.config()["zfs.pool_name"].clone();
    assert_eq!(zname, pool.name());
    let info = pool.info();
    if !std::path::Path::new("/sys/module/zfs").exists() {
        assert!(
            !info.idmapped_mounts && !info.xattrs,
            "zfs-fuse has neither"
        );
    }
    lifecycle(&*pool, info.xattrs);

    // Quota via refquota.
    let c = pool.create_instance_empty("q1").unwrap();
    pool.set_instance_quota("q1", Some(20 << 20)).unwrap();
    let dd = sh(
        "dd",
        &[
            "if=/dev/zero",
            &format!("of={}", c.join("rootfs/big").display()),
            "bs=1M",
            "count=64",
            "conv=fsync",
        ],
    );
    assert!(dd.is_err(), "64 MiB written under a 20 MiB refquota");
    assert!(matches!(
        pool.set_instance_quota("q1", Some(1 << 20)),
        Err(Error::Invalid(_))
    ));
    pool.set_instance_quota("q1", None).unwrap();
    pool.delete_instance("q1").unwrap();

    // Restart: export + import; data comes back mounted.
    let c = pool.create_instance_empty("keep").unwrap();
    fs::write(c.join("rootfs/f"), "x").unwrap();
    assert!(pool.unmount_pool().unwrap());
    assert!(!c.join("rootfs/f").exists());
    assert!(pool.mount_pool().unwrap());
    assert_eq!(fs::read_to_string(c.join("rootfs/f")).unwrap(), "x");
    // After a zfs-fuse restart the pool is imported but nothing is mounted: mount_pool mounts.
    sh("zfs", &["umount", &format!("{zname}/containers/keep")]).unwrap();
    assert!(!c.join("rootfs/f").exists());
    assert!(pool.mount_pool().unwrap());
    assert_eq!(fs::read_to_string(c.join("rootfs/f")).unwrap(), "x");
    pool.unmount_instance("keep").unwrap();
    assert_eq!(pool.mount_instance("keep").unwrap(), c);
    assert!(c.join("rootfs/f").exists());
    pool.delete_pool().unwrap();
    assert!(!s.path().join(format!("disks/{zname}.img")).exists());
    assert!(sh("zpool", &["list", &zname]).is_err());
}

/// An image still used by clones is only marked deleted and collected with its last clone;
/// copies are full send/receive copies unless zfs.clone_copy=true; restore is latest-only
/// unless zfs.remove_snapshots.
#[test]
fn zfs_deferred_deletes_copies_and_restore_rules() {
    let Some(_d) = ZfsDaemon::start("zfs_deferred_deletes_copies_and_restore_rules") else {
        return;
    };
    let s = scratch("z");
    let pool = zfs_pool(&s, "b", &[]);
    let z = pool.config()["zfs.pool_name"].clone();
    let fp = "cafe01";
    let img_ds = format!("{z}/images/{fp}");
    let mut filler = sample_filler(false);
    pool.create_image_volume(fp, &mut filler).unwrap();
    pool.create_instance_from_image("c1", fp).unwrap();
    pool.delete_image_volume(fp).unwrap();
    assert!(!pool.image_volume_exists(fp).unwrap());
    assert!(
        zfs_list(&z).contains(&format!("{img_ds}@readonly")),
        "kept for c1"
    );
    // Re-creating the image brings the hidden one back without running the filler.
    let mut never =
        |_: &std::path::Path| -> Result<(), BoxError> { Err("filler must not run".into()) };
    pool.create_image_volume(fp, &mut never).unwrap();
    assert!(pool.image_volume_exists(fp).unwrap());
    pool.delete_image_volume(fp).unwrap();

    // Restore only the latest snapshot.
    pool.create_snapshot("c1", "s1").unwrap();
    pool.create_snapshot("c1", "s2").unwrap();
    let e = pool.restore_snapshot("c1", "s1").unwrap_err();
    assert!(e.to_string().contains("zfs.remove_snapshots"), "{e}");
    assert!(pool.restore_snapshot("c1", "s2").unwrap().is_empty());

    // Default copies are independent: the source can go first.
    let c2 = pool
        .create_instance_from_snapshot("c1", "s1", "c2")
        .unwrap();
    check_sample(&c2, false);
    assert!(pool.list_snapshots("c2").unwrap().is_empty());
    pool.copy_instance("c1", "c3", false).unwrap();
    let c4 = pool.copy_instance("c1", "c4", true).unwrap();
    assert_eq!(pool.list_snapshots("c4").unwrap(), vec!["s1", "s2"]);
    check_sample(&c4, false);
    pool.delete_snapshot("c1", "s1").unwrap();
    pool.delete_instance("c1").unwrap();
    let left = zfs_list(&z);
    assert!(
        !left.contains(&img_ds),
        "image collected with its last clone: {left}"
    );
    for n in ["c2", "c3", "c4"] {
        assert!(
            pool.mount_instance(n)
                .unwrap()
                .join("rootfs/etc/hostname")
                .exists()
        );
        pool.delete_instance(n).unwrap();
    }
    assert_eq!(zfs_list(&format!("{z}/containers")).lines().count(), 1);
}

#[test]
fn zfs_clone_copy_pins_its_origin() {
    let Some(_d) = ZfsDaemon::start("zfs_clone_copy_pins_its_origin") else {
        return;
    };
    let s = scratch("z");
    let pool = zfs_pool(
        &s,
        "d",
        &[("zfs.clone_copy", "true"), ("zfs.remove_snapshots", "true")],
    );
    let z = pool.config()["zfs.pool_name"].clone();
    let c1 = pool.create_instance_empty("c1").unwrap();
    fs::write(c1.join("rootfs/f"), "1").unwrap();
    let t = Instant::now();
    pool.copy_instance("c1", "c2", false).unwrap();
    eprintln!("[zfs] clone copy: {:?}", t.elapsed());
    assert!(matches!(pool.delete_instance("c1"), Err(Error::Busy(_))));
    assert!(matches!(
        pool.rename_instance("c1", "c9"),
        Err(Error::Busy(_))
    ));
    pool.create_snapshot("c1", "s0").unwrap();
    pool.create_instance_from_snapshot("c1", "s0", "c3")
        .unwrap();
    assert!(matches!(
        pool.delete_snapshot("c1", "s0"),
        Err(Error::Busy(_))
    ));
    pool.delete_instance("c3").unwrap();
    pool.delete_snapshot("c1", "s0").unwrap();
    pool.delete_instance("c2").unwrap();
    assert!(
        !zfs_list(&z).contains("@copy-"),
        "copy snapshot collected with its clone"
    );
    pool.delete_instance("c1").unwrap();
}

#[test]
fn zfs_failures_are_undone() {
    let Some(_d) = ZfsDaemon::start("zfs_failures_are_undone") else {
        return;
    };
    let s = scratch("z");
    let pool = zfs_pool(&s, "c", &[("size", "128MiB")]);
    let z = pool.config()["zfs.pool_name"].clone();
    failing_filler_leaves_nothing(&*pool);
    // Fill the small pool from the filler: ENOSPC, and no image dataset is left.
    let mut filler = |dir: &std::path::Path| -> Result<(), BoxError> {
        fs::create_dir_all(dir.join("rootfs"))?;
        fs::write(dir.join("metadata.yaml"), "architecture: x86_64\n")?;
        sh(
            "dd",
            &[
                "if=/dev/urandom",
                &format!("of={}", dir.join("rootfs/blob").display()),
                "bs=1M",
                "count=200",
            ],
        )?;
        Ok(())
    };
    let e = pool.create_image_volume("f00d", &mut filler).unwrap_err();
    eprintln!("expected failure: {e}");
    assert!(!zfs_list(&z).contains("images/f00d"));
    // A send/receive copy that runs out of space: no half copy, no temporary snapshot left.
    let c1 = pool.create_instance_empty("c1").unwrap();
    sh(
        "dd",
        &[
            "if=/dev/urandom",
            &format!("of={}", c1.join("rootfs/blob").display()),
            "bs=1M",
            "count=50",
        ],
    )
    .unwrap();
    let e = pool.copy_instance("c1", "c2", false).unwrap_err();
    eprintln!("expected failure: {e}");
    assert!(!pool.instance_exists("c2").unwrap());
    let left = zfs_list(&z);
    assert!(
        !left.contains("@copy-") && !left.contains("containers/c2"),
        "{left}"
    );
    assert!(
        pool.mount_instance("c1")
            .unwrap()
            .join("rootfs/blob")
            .exists()
    );
    // Same pool name again: refused, the existing pool untouched.
    let twin = lxd_storage::load("zfs", pool.name(), s.path(), &cfg(&[])).unwrap();
    assert!(matches!(twin.create_pool(), Err(Error::AlreadyExists(_))));
    assert!(zfs_list(&z).contains(&format!("{z}/containers")));
}
