//! The realistic case for every driver: the project's busybox image (scripts/
//! build-busybox-image.sh) as an image volume, then instances, snapshots and copies of it,
//! with timings printed. Root only; zfs runs on zfs-fuse, started here if needed.

mod common;
use common::*;
use std::path::Path;
use std::time::Instant;

fn build_image(dir: &Path) -> Option<std::path::PathBuf> {
    if !Path::new("/bin/busybox").exists() {
        loud("SKIPPED busybox tests: busybox-static is not installed");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-busybox-image.sh");
    let out = sh("sh", &[script.to_str()?, dir.to_str()?]).ok()?;
    Some(std::path::PathBuf::from(out.trim()))
}

fn run_driver(driver: &str, s: &tempfile::TempDir, image: &Path, config: &[(&str, &str)]) {
    let name = format!("bb{}{}", &driver[..1], std::process::id());
    let pool = PoolGuard::new(lxd_storage::load(driver, &name, s.path(), &cfg(config)).unwrap());
    pool.create_pool().unwrap();
    let fp = "b5b5";
    let mut filler = |dir: &Path| -> Result<(), BoxError> {
        sh(
            "tar",
            &[
                "-C",
                dir.to_str().unwrap(),
                "--numeric-owner",
                "-xJpf",
                image.to_str().unwrap(),
            ],
        )?;
        Ok(())
    };
    let t = Instant::now();
    pool.create_image_volume(fp, &mut filler).unwrap();
    let t_img = t.elapsed();
    let t = Instant::now();
    let c = pool.create_instance_from_image("c1", fp).unwrap();
    let t_inst = t.elapsed();
    assert!(
        std::fs::symlink_metadata(c.join("rootfs/bin/sh"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(c.join("templates/hostname.tpl").is_file());
    let t = Instant::now();
    pool.create_snapshot("c1", "s0").unwrap();
    let t_snap = t.elapsed();
    let t = Instant::now();
    pool.restore_snapshot("c1", "s0").unwrap();
    let t_restore = t.elapsed();
    let t = Instant::now();
    pool.copy_instance("c1", "c2", false).unwrap();
    let t_copy = t.elapsed();
    let t = Instant::now();
    pool.delete_instance("c2").unwrap();
    pool.delete_instance("c1").unwrap();
    let t_del = t.elapsed();
    eprintln!(
        "[{driver}] busybox: image volume (tar -xJ) {t_img:.1?}, instance from image {t_inst:.1?}, \
         snapshot {t_snap:.1?}, restore {t_restore:.1?}, copy {t_copy:.1?}, delete x2 {t_del:.1?}"
    );
}

#[test]
fn busybox_on_every_driver() {
    if !require_root("busybox_on_every_driver") {
        return;
    }
    let s = scratch("bb");
    let Some(image) = build_image(s.path()) else {
        return;
    };
    run_driver("dir", &s, &image, &[]);
    let drivers = lxd_storage::supported_drivers();
    if drivers.iter().any(|(d, _)| *d == "btrfs") {
        run_driver("btrfs", &s, &image, &[("size", "1GiB")]);
    } else {
        loud("SKIPPED busybox on btrfs: not supported here");
    }
    if let Some(_d) = ZfsDaemon::start("busybox_on_every_driver (zfs)") {
        run_driver("zfs", &s, &image, &[("size", "512MiB")]);
    }
}
