//! Local images against a real daemon with the real LXD 5.0 client: unified tarballs in every
//! compression LXD accepts, split images (tarball and squashfs rootfs), fingerprints, aliases with
//! `/`, export round trips, delete, and tarballs that try to write outside the rootfs.

use lxd_tests::{TestDaemon, busybox_image, raw_request, root_or_skip, text};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().unwrap();
    text(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().unwrap();
    assert!(st.success(), "{cmd}");
}

/// The busybox image recompressed as plain tar, gz, bz2, zstd (and the original xz).
fn variants(dir: &Path) -> Vec<PathBuf> {
    let src = busybox_image();
    let tar = dir.join("bb.tar");
    sh(&format!("xz -dc {} > {}", src.display(), tar.display()));
    sh(&format!("gzip -c {0} > {0}.gz", tar.display()));
    sh(&format!("bzip2 -c {0} > {0}.bz2", tar.display()));
    sh(&format!("zstd -q -c {0} > {0}.zst", tar.display()));
    vec![
        tar.clone(),
        dir.join("bb.tar.gz"),
        dir.join("bb.tar.bz2"),
        dir.join("bb.tar.zst"),
        src,
    ]
}

#[test]
fn unified_images_in_every_compression() {
    if !root_or_skip("unified_images_in_every_compression") {
        return;
    }
    let d = TestDaemon::start();
    let tmp = tempfile::tempdir().unwrap();
    for (i, img) in variants(tmp.path()).iter().enumerate() {
        let alias = format!("v{i}");
        let out = d.real_lxc_ok(&["image", "import", img.to_str().unwrap(), "--alias", &alias]);
        let fp = sha256(img);
        assert!(
            out.contains(&fp),
            "fingerprint is the sha256 of the tarball: {out}"
        );
        let info = d.real_lxc_ok(&["image", "info", &alias]);
        assert!(info.contains(&fp), "{info}");
        assert!(info.contains("os: busybox"), "{info}");
        // Launchable: unpacked for the pool and started.
        let name = format!("img{i}x{}", std::process::id() % 10000);
        d.real_lxc_ok(&["launch", &alias, &name]);
        let out = d.real_lxc(&["exec", &name, "--", "cat", "/etc/hostname"]);
        assert_eq!(text(&out.stdout).trim(), name);
        d.real_lxc_ok(&["delete", "-f", &name]);
    }
    let list = d.real_lxc_ok(&["image", "list", "--format", "csv"]);
    assert_eq!(list.lines().count(), 5, "{list}");
    // Importing the same image twice is a conflict.
    let out = d.real_lxc(&["image", "import", busybox_image().to_str().unwrap()]);
    assert!(!out.status.success());
}

#[test]
fn split_images_with_tarball_and_squashfs_rootfs() {
    if !root_or_skip("split_images_with_tarball_and_squashfs_rootfs") {
        return;
    }
    let d = TestDaemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    sh(&format!(
        "cd {0} && mkdir x && xz -dc {1} | tar -C x -xf - && tar -C x -cJf meta.tar.xz metadata.yaml templates && tar -C x/rootfs -czf rootfs.tar.gz . && mksquashfs x/rootfs rootfs.squashfs -quiet -noappend",
        t.display(),
        busybox_image().display()
    ));
    for (alias, rootfs) in [
        ("split-tar", "rootfs.tar.gz"),
        ("split-sq", "rootfs.squashfs"),
    ] {
        let meta = t.join("meta.tar.xz");
        let rootfs = t.join(rootfs);
        let out = d.real_lxc_ok(&[
            "image",
            "import",
            meta.to_str().unwrap(),
            rootfs.to_str().unwrap(),
            "--alias",
            alias,
        ]);
        // Split fingerprint: sha256(metadata || rootfs).
        let both = t.join("both");
        sh(&format!(
            "cat {} {} > {}",
            meta.display(),
            rootfs.display(),
            both.display()
        ));
        assert!(out.contains(&sha256(&both)), "{out}");
        let name = format!("{alias}x{}", std::process::id() % 10000);
        d.real_lxc_ok(&["launch", alias, &name]);
        let out = d.real_lxc(&["exec", &name, "--", "hostname"]);
        assert_eq!(text(&out.stdout).trim(), name);
        d.real_lxc_ok(&["delete", "-f", &name]);
        // Export gives back both parts, byte for byte.
        let exp = t.join(format!("exp-{alias}"));
        std::fs::create_dir_all(&exp).unwrap();
        d.real_lxc_ok(&["image", "export", alias, exp.join("out").to_str().unwrap()]);
        let mut got: Vec<String> = std::fs::read_dir(&exp)
            .unwrap()
            .map(|e| sha256(&e.unwrap().path()))
            .collect();
        got.sort();
        let mut want = vec![sha256(&meta), sha256(&rootfs)];
        want.sort();
        assert_eq!(got, want);
    }
}

#[test]
fn aliases_with_slashes_export_and_delete() {
    if !root_or_skip("aliases_with_slashes_export_and_delete") {
        return;
    }
    let d = TestDaemon::start();
    let img = busybox_image();
    d.real_lxc_ok(&[
        "image",
        "import",
        img.to_str().unwrap(),
        "--alias",
        "debian/12/busy",
    ]);
    let aliases = d.real_lxc_ok(&["image", "alias", "list", "--format", "csv"]);
    assert!(aliases.contains("debian/12/busy"), "{aliases}");
    let (code, v) = raw_request(
        &d.dir,
        "GET",
        "/1.0/images/aliases/debian%2F12%2Fbusy",
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["metadata"]["target"], sha256(&img));
    d.real_lxc_ok(&["image", "alias", "rename", "debian/12/busy", "bb/renamed"]);
    d.real_lxc_ok(&["image", "alias", "create", "second", &sha256(&img)[..12]]);
    let info = d.real_lxc_ok(&["image", "info", "bb/renamed"]);
    assert!(
        info.contains("bb/renamed") && info.contains("second"),
        "{info}"
    );

    let tmp = tempfile::tempdir().unwrap();
    d.real_lxc_ok(&[
        "image",
        "export",
        "second",
        tmp.path().join("x").to_str().unwrap(),
    ]);
    let exported: Vec<PathBuf> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(exported.len(), 1);
    assert_eq!(sha256(&exported[0]), sha256(&img));

    d.real_lxc_ok(&["image", "alias", "delete", "second"]);
    d.real_lxc_ok(&["image", "delete", "bb/renamed"]);
    assert!(
        d.real_lxc_ok(&["image", "list", "--format", "csv"])
            .trim()
            .is_empty()
    );
    assert!(
        d.real_lxc_ok(&["image", "alias", "list", "--format", "csv"])
            .trim()
            .is_empty()
    );
    assert!(!d.dir.join("images").join(sha256(&img)).exists());
    let (code, _) = raw_request(&d.dir, "GET", "/1.0/images/aliases/nope", None);
    assert_eq!(code, 404);
}

#[test]
fn hostile_tarballs_write_nothing_outside() {
    if !root_or_skip("hostile_tarballs_write_nothing_outside") {
        return;
    }
    let d = TestDaemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let victim = t.join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    // A tarball whose rootfs has a symlink to a host directory and then a file "through" it, plus
    // an entry with `..`.
    sh(&format!(
        "cd {0} && mkdir -p evil/rootfs/bin && printf 'architecture: x86_64\\ncreation_date: 1\\n' > evil/metadata.yaml \
         && cp /bin/busybox evil/rootfs/bin/ && ln -s {1} evil/rootfs/escape \
         && tar -C evil -cf evil.tar metadata.yaml rootfs \
         && mkdir -p ev2/escape && echo pwned > ev2/escape/owned && tar -C ev2 --transform 's,^escape,rootfs/escape,' -rf evil.tar escape/owned",
        t.display(),
        victim.display()
    ));
    // GNU tar refuses to store `..` names, so write that one with Python's tarfile.
    let script = t.join("mk.py");
    std::fs::write(
        &script,
        r#"import io, sys, tarfile
t = tarfile.open(sys.argv[1], "w")
for name, data in [("metadata.yaml", b"architecture: x86_64\ncreation_date: 1\n"),
                   ("rootfs/bin/sh", b"x"),
                   ("rootfs/../../../../../../tmp/dotdot-pwned", b"pwned")]:
    i = tarfile.TarInfo(name)
    i.size = len(data)
    t.addfile(i, io.BytesIO(data))
t.close()
"#,
    )
    .unwrap();
    sh(&format!(
        "python3 {} {}",
        script.display(),
        t.join("dotdot.tar").display()
    ));
    sh(&format!(
        "tar -tf {} | grep -q '[.][.]/'",
        t.join("dotdot.tar").display()
    ));
    for tarball in ["evil.tar", "dotdot.tar"] {
        let p = t.join(tarball);
        let name = format!("ev{}x{}", tarball.len(), std::process::id() % 10000);
        let import = d.real_lxc(&["image", "import", p.to_str().unwrap(), "--alias", &name]);
        if import.status.success() {
            // Accepted (sanitised): creating an instance must not write outside either.
            let _ = d.real_lxc(&["init", &name, &name]);
        }
    }
    assert!(
        !victim.join("owned").exists(),
        "a tarball wrote through a symlink to the host"
    );
    assert!(
        !Path::new("/tmp/dotdot-pwned").exists(),
        "a `..` entry escaped the rootfs"
    );
}
