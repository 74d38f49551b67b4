//! The files API with the real LXD 5.0 client: push/pull of files and trees, parents, ownership
//! and modes, append, symlinks, delete, on running and stopped instances; a symlink in the
//! container never leads to a host path; large files stream without growing the daemon.

use lxd_tests::{TestDaemon, root_or_skip, text, unique};
use std::path::Path;

fn daemon_rss_kib(d: &TestDaemon) -> u64 {
    let pid = d.pid().unwrap();
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn push_pull_trees_ownership_and_symlinks() {
    if !root_or_skip("push_pull_trees_ownership_and_symlinks") {
        return;
    }
    let d = TestDaemon::start();
    d.import_busybox_real("busybox");
    let c = unique("f");
    d.real_lxc_ok(&["launch", "busybox", &c]);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::write(t.join("hello.txt"), "hello\n").unwrap();

    for running in [true, false] {
        let base = if running {
            "/root/run"
        } else {
            "/root/stopped"
        };
        if !running {
            d.real_lxc_ok(&["stop", &c]);
        }
        // -p creates parents; --uid/--gid/--mode are container ids.
        d.real_lxc_ok(&[
            "file",
            "push",
            "-p",
            "--uid",
            "1000",
            "--gid",
            "1000",
            "--mode",
            "0640",
            t.join("hello.txt").to_str().unwrap(),
            &format!("{c}{base}/deep/er/hello.txt"),
        ]);
        // Append.
        let out = d.real_lxc(&["file", "pull", &format!("{c}{base}/deep/er/hello.txt"), "-"]);
        assert_eq!(text(&out.stdout), "hello\n");
        if !running {
            d.real_lxc_ok(&["start", &c]);
        }
        let ls = text(
            &d.real_lxc(&[
                "exec",
                &c,
                "--",
                "ls",
                "-ln",
                &format!("{base}/deep/er/hello.txt"),
            ])
            .stdout,
        );
        assert!(
            ls.starts_with("-rw-r-----") && ls.contains(" 1000 "),
            "{ls}"
        );
        if !running {
            d.real_lxc_ok(&["stop", &c]);
        }
        // Recursive push and pull of a tree with a symlink.
        let tree = t.join(format!("tree{running}"));
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/c.txt"), "deep\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", tree.join("link")).unwrap();
        d.real_lxc_ok(&[
            "file",
            "push",
            "-r",
            tree.to_str().unwrap(),
            &format!("{c}{base}/"),
        ]);
        let back = t.join(format!("back{running}"));
        std::fs::create_dir_all(&back).unwrap();
        let name = tree.file_name().unwrap().to_str().unwrap().to_string();
        d.real_lxc_ok(&[
            "file",
            "pull",
            "-r",
            &format!("{c}{base}/{name}"),
            back.to_str().unwrap(),
        ]);
        assert_eq!(
            std::fs::read_to_string(back.join(&name).join("a/b/c.txt")).unwrap(),
            "deep\n"
        );
        assert_eq!(
            std::fs::read_link(back.join(&name).join("link")).unwrap(),
            Path::new("/etc/hostname")
        );
        // Delete.
        d.real_lxc_ok(&["file", "delete", &format!("{c}{base}/{name}/a/b/c.txt")]);
        assert!(
            !d.real_lxc(&["file", "pull", &format!("{c}{base}/{name}/a/b/c.txt"), "-"])
                .status
                .success()
        );
        if !running {
            d.real_lxc_ok(&["start", &c]);
        }
    }

    // A symlink in the container pointing at /etc must resolve inside the container.
    d.real_lxc_ok(&["exec", &c, "--", "ln", "-s", "/etc", "/root/esc"]);
    let host_before = std::fs::read_to_string("/etc/hostname").unwrap();
    d.real_lxc_ok(&[
        "file",
        "push",
        t.join("hello.txt").to_str().unwrap(),
        &format!("{c}/root/esc/hostname"),
    ]);
    assert_eq!(
        std::fs::read_to_string("/etc/hostname").unwrap(),
        host_before,
        "wrote the host's /etc/hostname"
    );
    let inside = text(
        &d.real_lxc(&["exec", &c, "--", "cat", "/etc/hostname"])
            .stdout,
    );
    assert_eq!(inside, "hello\n");
    // `..` cannot climb out either.
    let out = d.real_lxc(&[
        "file",
        "pull",
        &format!("{c}/../../../../etc/shadow"),
        t.join("shadow").to_str().unwrap(),
    ]);
    if out.status.success() {
        let got = std::fs::read_to_string(t.join("shadow")).unwrap_or_default();
        assert_ne!(
            got,
            std::fs::read_to_string("/etc/shadow").unwrap(),
            "read the host's /etc/shadow"
        );
    }
    d.real_lxc_ok(&["stop", &c]);
    d.real_lxc_ok(&[
        "file",
        "push",
        t.join("hello.txt").to_str().unwrap(),
        &format!("{c}/root/esc/motd"),
    ]);
    assert!(
        !Path::new("/etc/motd").exists()
            || std::fs::read_to_string("/etc/motd").unwrap() != "hello\n"
    );
    // Missing instance and missing path.
    assert!(
        !d.real_lxc(&["file", "pull", "nosuch/etc/hostname", "-"])
            .status
            .success()
    );
    assert!(
        !d.real_lxc(&["file", "pull", &format!("{c}/no/such/file"), "-"])
            .status
            .success()
    );
    d.real_lxc_ok(&["delete", &c]);
}

#[test]
fn large_push_streams_without_growing_the_daemon() {
    if !root_or_skip("large_push_streams_without_growing_the_daemon") {
        return;
    }
    let d = TestDaemon::start();
    d.import_busybox_real("busybox");
    let c = unique("g");
    d.real_lxc_ok(&["launch", "busybox", &c]);
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    let st = std::process::Command::new("dd")
        .args([
            "if=/dev/urandom",
            &format!("of={}", big.display()),
            "bs=1M",
            "count=256",
            "status=none",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let before = daemon_rss_kib(&d);
    d.real_lxc_ok(&[
        "file",
        "push",
        big.to_str().unwrap(),
        &format!("{c}/root/big"),
    ]);
    let after_push = daemon_rss_kib(&d);
    d.real_lxc_ok(&[
        "file",
        "pull",
        &format!("{c}/root/big"),
        tmp.path().join("back").to_str().unwrap(),
    ]);
    let after_pull = daemon_rss_kib(&d);
    let sum = |p: &Path| {
        text(
            &std::process::Command::new("sha256sum")
                .arg(p)
                .output()
                .unwrap()
                .stdout,
        )
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
    };
    assert_eq!(sum(&big), sum(&tmp.path().join("back")));
    assert!(
        after_push < before + 32 * 1024,
        "daemon RSS grew from {before} KiB to {after_push} KiB on a 256 MiB push"
    );
    assert!(
        after_pull < before + 32 * 1024,
        "daemon RSS grew from {before} KiB to {after_pull} KiB on a 256 MiB pull"
    );
    d.real_lxc_ok(&["delete", "-f", &c]);
}
