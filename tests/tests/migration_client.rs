//! Our `lxc` driving migrations between two of our daemons on loopback: `lxc copy A:C B:C` in
//! pull, push and relay modes, snapshots and `--instance-only`, a snapshot as the source,
//! `--refresh`, and `lxc move` of a running instance `--stateless` (stopped, moved, started).
//! tests/tests/migration.rs drives the same server side with the real LXD 5.0 client; a
//! snapshot copied to another server is checked with both clients here.

use lxd_tests::streams::free_port;
use lxd_tests::{TestDaemon, root_or_skip, text, unique};

/// Two daemons on HTTPS; `b`'s own client (ours) knows both as remotes `a` and `b`.
fn pair() -> (TestDaemon, TestDaemon) {
    let a = TestDaemon::start();
    let b = TestDaemon::start();
    for d in [&a, &b] {
        let port = free_port();
        d.lxc_ok(&[
            "config",
            "set",
            "core.https_address",
            &format!("127.0.0.1:{port}"),
        ]);
    }
    for (d, name) in [(&a, "a"), (&b, "b")] {
        let out = d.lxc_ok(&["config", "trust", "add", "--name", "ours"]);
        let token = out.lines().nth(1).unwrap().trim().to_string();
        b.lxc_ok(&["remote", "add", name, &token]);
        // The real client too, for what it does differently (a snapshot as the source).
        let out = d.lxc_ok(&["config", "trust", "add", "--name", "real"]);
        let token = out.lines().nth(1).unwrap().trim().to_string();
        b.real_lxc_ok(&["remote", "add", name, &token]);
    }
    (a, b)
}

fn exec(b: &TestDaemon, rc: &str, cmd: &str) -> String {
    b.lxc_ok(&["exec", rc, "--", "sh", "-c", cmd])
        .trim()
        .to_string()
}

fn snapshot_names(b: &TestDaemon, rc: &str) -> String {
    b.lxc_ok(&[
        "query",
        &format!("{}/snapshots", rc.replacen(':', ":/1.0/instances/", 1)),
    ])
}

#[test]
fn our_client_copies_and_moves_between_servers() {
    if !root_or_skip("our_client_copies_and_moves_between_servers") {
        return;
    }
    let (a, b) = pair();
    a.import_busybox("bb");
    let c = unique("mc");
    let src = format!("a:{c}");
    b.lxc_ok(&["launch", "a:bb", &src]);
    exec(&b, &src, "echo one > /root/f && chown 1000:1000 /root/f");
    b.lxc_ok(&["stop", "-f", &src]);
    b.lxc_ok(&["snapshot", &src, "s1"]);
    b.lxc_ok(&["snapshot", &src, "s2"]);

    for mode in ["pull", "push", "relay"] {
        let dst = format!("b:{c}{mode}");
        b.lxc_ok(&["copy", &src, &dst, "--mode", mode]);
        let snaps = snapshot_names(&b, &dst);
        assert!(
            snaps.contains("s1") && snaps.contains("s2"),
            "{mode}: {snaps}"
        );
        b.lxc_ok(&["start", &dst]);
        assert_eq!(exec(&b, &dst, "cat /root/f"), "one", "{mode}");
        assert_eq!(
            exec(&b, &dst, "stat -c %u:%g /root/f"),
            "1000:1000",
            "{mode}"
        );
        assert_eq!(exec(&b, &dst, "hostname"), format!("{c}{mode}"));
        b.lxc_ok(&["delete", "-f", &dst]);
    }

    // --instance-only.
    let only = format!("b:{c}only");
    b.lxc_ok(&["copy", &src, &only, "--instance-only"]);
    assert_eq!(snapshot_names(&b, &only).trim(), "[]");
    b.lxc_ok(&["delete", "-f", &only]);

    // --refresh brings a changed file and a new snapshot over.
    let r = format!("b:{c}r");
    b.lxc_ok(&["copy", &src, &r]);
    b.lxc_ok(&["start", &src]);
    exec(&b, &src, "echo two > /root/f");
    b.lxc_ok(&["stop", "-f", &src]);
    b.lxc_ok(&["snapshot", &src, "s3"]);
    b.lxc_ok(&["copy", &src, &r, "--refresh"]);
    assert!(snapshot_names(&b, &r).contains("s3"));
    b.lxc_ok(&["start", &r]);
    assert_eq!(exec(&b, &r, "cat /root/f"), "two");
    b.lxc_ok(&["delete", "-f", &r]);

    // A running instance moves --stateless: stopped, moved, started on b; gone from a.
    b.lxc_ok(&["start", &src]);
    let out = b.lxc(&["move", &src, "b:"]);
    assert!(
        !out.status.success(),
        "a live move needs CRIU and must be refused"
    );
    assert!(b.lxc_ok(&["list", "a:", "--format", "csv"]).contains(&c));
    b.lxc_ok(&["move", &src, "b:", "--stateless"]);
    let moved = format!("b:{c}");
    let list = b.lxc_ok(&["list", "b:", "--format", "csv", "-c", "ns"]);
    assert!(list.contains(&format!("{c},RUNNING")), "{list}");
    assert!(!b.lxc_ok(&["list", "a:", "--format", "csv"]).contains(&c));
    assert_eq!(exec(&b, &moved, "cat /root/f"), "two");
    // The move kept the volatile keys (same MAC on the same instance).
    let cfg = b.lxc_ok(&["config", "show", &moved]);
    assert!(cfg.contains("volatile.base_image"), "{cfg}");

    // The received snapshots are the instance's past, not aliases of its files: an in-place
    // write in the instance leaves s3 (taken when /root/f said "two") as it was.
    exec(&b, &moved, "echo three > /root/f");
    let chk = format!("b:{c}chk");
    b.lxc_ok(&["copy", &format!("{moved}/s3"), &chk]);
    b.lxc_ok(&["start", &chk]);
    assert_eq!(exec(&b, &chk, "cat /root/f"), "two");
    b.lxc_ok(&["delete", "-f", &chk]);

    // A snapshot as the source of a new instance on another server.
    let from_snap = format!("a:{c}snap");
    b.lxc_ok(&["copy", &format!("{moved}/s1"), &from_snap]);
    b.lxc_ok(&["start", &from_snap]);
    assert_eq!(exec(&b, &from_snap, "cat /root/f"), "one");
    b.lxc_ok(&["delete", "-f", &from_snap]);
    b.real_lxc_ok(&["copy", &format!("{moved}/s2"), &from_snap]);
    b.lxc_ok(&["start", &from_snap]);
    assert_eq!(exec(&b, &from_snap, "cat /root/f"), "one");
    assert_eq!(snapshot_names(&b, &from_snap).trim(), "[]");
    b.lxc_ok(&["delete", "-f", &from_snap]);

    // A bad mode is refused before anything is made.
    let out = b.lxc(&["copy", &moved, "a:x", "--mode", "sideways"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("Invalid migration mode"));
    b.lxc_ok(&["delete", "-f", &moved]);
}
