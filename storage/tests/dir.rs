//! Root integration tests of the dir driver against the real filesystem.

mod common;
use common::*;
use std::fs;

#[test]
fn dir_pool_lifecycle() {
    if !require_root("dir_pool_lifecycle") {
        return;
    }
    let s = scratch("d");
    let pool = PoolGuard::new(lxd_storage::load("dir", "p1", s.path(), &cfg(&[])).unwrap());
    pool.create_pool().unwrap();
    assert_eq!(
        pool.config()["source"],
        s.path().join("storage-pools/p1").display().to_string()
    );
    assert!(pool.pool_path().join("containers").is_dir());
    assert!(
        pool.info().idmapped_mounts,
        "ext4/tmpfs support idmapped mounts"
    );
    lifecycle(&*pool, true);
    let c = pool.create_instance_empty("q").unwrap();
    // On ext4 each volume and snapshot is its own tree for the Orlov allocator (chattr +T).
    pool.create_snapshot("q", "s0").unwrap();
    let fs_type = sh("stat", &["-f", "-c", "%T", &s.path().display().to_string()]).unwrap();
    if fs_type.trim() == "ext2/ext3" {
        for d in [
            "containers",
            "containers-snapshots",
            "containers-snapshots/q",
            "custom",
        ] {
            let p = pool.pool_path().join(d).display().to_string();
            let attrs = sh("lsattr", &["-d", &p]).unwrap();
            let flags = attrs.split_whitespace().next().unwrap_or_default();
            assert!(flags.contains('T'), "{d}: no top-dir flag: {attrs}");
        }
    }
    assert!(matches!(
        pool.set_instance_quota("q", Some(1 << 30)),
        Err(lxd_storage::Error::NotSupported(_))
    ));
    pool.set_instance_quota("q", None).unwrap();
    assert!(c.exists());
    pool.delete_pool().unwrap();
    assert!(!pool.pool_path().exists());
}

#[test]
fn dir_filler_failure_is_undone() {
    if !require_root("dir_filler_failure_is_undone") {
        return;
    }
    let s = scratch("d");
    let pool = PoolGuard::new(lxd_storage::load("dir", "p2", s.path(), &cfg(&[])).unwrap());
    pool.create_pool().unwrap();
    failing_filler_leaves_nothing(&*pool);
}

/// A dir pool whose source is a 3 MiB tmpfs: the second instance copy runs out of space and
/// must leave no partial volume behind; the source is bind-mounted and kept on delete.
#[test]
fn dir_full_pool_undoes_copy() {
    if !require_root("dir_full_pool_undoes_copy") {
        return;
    }
    let s = scratch("d");
    let src = s.path().join("src");
    fs::create_dir(&src).unwrap();
    sh(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            "size=3m",
            "tmpfs",
            src.to_str().unwrap(),
        ],
    )
    .unwrap();
    let _m = MountGuard(src.clone());
    let pool = PoolGuard::new(
        lxd_storage::load(
            "dir",
            "p3",
            s.path(),
            &cfg(&[("source", src.to_str().unwrap())]),
        )
        .unwrap(),
    );
    pool.create_pool().unwrap();
    assert!(
        src.join("containers").is_dir(),
        "pool path is bind-mounted from source"
    );
    let fp = "feed";
    let mut filler = |dir: &std::path::Path| -> Result<(), BoxError> {
        fs::create_dir_all(dir.join("rootfs"))?;
        fs::write(dir.join("rootfs/blob"), vec![1u8; 1800 * 1024])?;
        fs::write(dir.join("metadata.yaml"), "architecture: x86_64\n")?;
        Ok(())
    };
    pool.create_image_volume(fp, &mut filler).unwrap();
    let e = pool.create_instance_from_image("c1", fp).unwrap_err();
    eprintln!("expected failure: {e}");
    assert!(!pool.instance_exists("c1").unwrap());
    assert!(dot_entries(&pool.pool_path().join("containers")).is_empty());
    let (used, _) = pool.resources().unwrap();
    assert!(
        used < 2560 * 1024,
        "partial copy was removed ({used} bytes used)"
    );
    pool.delete_pool().unwrap();
    assert!(
        src.is_dir() && fs::read_dir(&src).unwrap().next().is_none(),
        "source kept, emptied"
    );
}

#[test]
fn dir_source_must_be_empty() {
    if !require_root("dir_source_must_be_empty") {
        return;
    }
    let s = scratch("d");
    let src = s.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("junk"), "x").unwrap();
    let pool = lxd_storage::load(
        "dir",
        "p4",
        s.path(),
        &cfg(&[("source", src.to_str().unwrap())]),
    )
    .unwrap();
    let e = pool.create_pool().unwrap_err();
    assert!(e.to_string().contains("isn't empty"), "{e}");
    assert!(lxd_storage::load("dir", "p4", s.path(), &cfg(&[("bogus", "1")])).is_err());
    assert!(lxd_storage::load("dir", "../p", s.path(), &cfg(&[])).is_err());
}
