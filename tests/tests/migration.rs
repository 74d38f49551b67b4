//! Instance migration between servers (`lxc copy A:C B:C`, `lxc move`): two of our daemons on
//! loopback driven by the real LXD 5.0 client in pull, push and relay modes, snapshots,
//! `--instance-only`, `--refresh`, `-s POOL`, the btrfs send/receive path, bad input, and both
//! directions with a real LXD 5.0.

use lxd_tests::real::RealLxd;
use lxd_tests::streams::free_port;
use lxd_tests::{TestDaemon, root_or_skip, text, unique};

fn listen(d: &TestDaemon) -> String {
    let port = free_port();
    d.lxc_ok(&[
        "config",
        "set",
        "core.https_address",
        &format!("127.0.0.1:{port}"),
    ]);
    format!("https://127.0.0.1:{port}")
}

/// Two daemons of ours listening on HTTPS; `b`'s real client knows `a` as remote `a` and
/// itself as remote `b` (over HTTPS too, so push mode has an address for it).
fn pair() -> (TestDaemon, TestDaemon) {
    let a = TestDaemon::start();
    let b = TestDaemon::start();
    let _ = listen(&a);
    let _ = listen(&b);
    for (d, name) in [(&a, "a"), (&b, "b")] {
        let out = d.lxc_ok(&["config", "trust", "add", "--name", "mig"]);
        let token = out.lines().nth(1).unwrap().trim().to_string();
        b.real_lxc_ok(&["remote", "add", name, &token]);
    }
    (a, b)
}

/// Launch a busybox container on `d` (through `b`'s real client as `remote:`), write /root/f
/// owned by 1000:1000 and stop it.
fn prepare(b: &TestDaemon, d: &TestDaemon, remote: &str, name: &str) {
    d.import_busybox("bb");
    b.real_lxc_ok(&[
        "launch",
        &format!("{remote}:bb"),
        &format!("{remote}:{name}"),
    ]);
    b.real_lxc_ok(&[
        "exec",
        &format!("{remote}:{name}"),
        "--",
        "sh",
        "-c",
        "echo hello > /root/f && chown 1000:1000 /root/f",
    ]);
    b.real_lxc_ok(&["stop", "-f", &format!("{remote}:{name}")]);
}

/// Start `r:c`, check /root/f's owner and content inside, stop it.
fn check_started(b: &TestDaemon, rc: &str, content: &str) {
    b.real_lxc_ok(&["start", rc]);
    let st = b.real_lxc_ok(&["exec", rc, "--", "stat", "-c", "%u:%g", "/root/f"]);
    assert_eq!(st.trim(), "1000:1000", "owner of /root/f in {rc}");
    let f = b.real_lxc_ok(&["exec", rc, "--", "cat", "/root/f"]);
    assert_eq!(f.trim(), content);
    let root = b.real_lxc_ok(&["exec", rc, "--", "stat", "-c", "%u:%g", "/bin"]);
    assert_eq!(root.trim(), "0:0", "owner of /bin in {rc}");
    b.real_lxc_ok(&["stop", "-f", rc]);
}

fn snapshots(b: &TestDaemon, rc: &str) -> Vec<String> {
    let (remote, name) = rc.split_once(':').unwrap();
    let out = b.real_lxc_ok(&[
        "query",
        &format!("{remote}:/1.0/instances/{name}/snapshots"),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut s: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect();
    s.sort();
    s
}

/// Run `script` in `rc` (started for it, stopped after); its stdout.
fn in_instance(b: &TestDaemon, rc: &str, script: &str) -> String {
    b.real_lxc_ok(&["start", rc]);
    let out = b.real_lxc_ok(&["exec", rc, "--", "sh", "-c", script]);
    b.real_lxc_ok(&["stop", "-f", rc]);
    out.trim().to_string()
}

/// On a dir target the snapshots arrive as trees sharing unchanged files and the instance as a
/// copy of its own: each must hold exactly its own state, whatever changed between them.
#[test]
fn snapshots_and_the_instance_arrive_each_with_its_own_state() {
    if !root_or_skip("snapshots_and_the_instance_arrive_each_with_its_own_state") {
        return;
    }
    let (a, b) = pair();
    let c = unique("ms");
    prepare(&b, &a, "a", &c);
    let src = format!("a:{c}");
    in_instance(&b, &src, "echo 0 > /root/v && echo x > /root/gone");
    b.real_lxc_ok(&["snapshot", &src, "s0"]);
    in_instance(
        &b,
        &src,
        "echo 1 > /root/v && rm /root/gone && echo n > /root/new1",
    );
    b.real_lxc_ok(&["snapshot", &src, "s1"]);
    in_instance(&b, &src, "echo 2 > /root/v && rm /root/new1");

    let dst = format!("b:{}", unique("md"));
    b.real_lxc_ok(&["copy", &src, &dst]);
    assert_eq!(snapshots(&b, &dst), vec!["s0", "s1"]);
    let state = "cat /root/v; ls /root | tr '\\n' ' '";
    assert_eq!(in_instance(&b, &dst, state), "2\nf v");
    // The instance's own writes do not reach the snapshots it was made from.
    in_instance(&b, &dst, "echo changed > /root/f");
    b.real_lxc_ok(&["restore", &dst, "s0"]);
    assert_eq!(in_instance(&b, &dst, state), "0\nf gone v");
    assert_eq!(in_instance(&b, &dst, "cat /root/f"), "hello");
    b.real_lxc_ok(&["restore", &dst, "s1"]);
    assert_eq!(in_instance(&b, &dst, state), "1\nf new1 v");
    // The source kept its own state.
    assert_eq!(in_instance(&b, &src, state), "2\nf v");
}

#[test]
fn copy_between_our_daemons_in_pull_push_and_relay_modes() {
    if !root_or_skip("copy_between_our_daemons_in_pull_push_and_relay_modes") {
        return;
    }
    let (a, b) = pair();
    let c = unique("mc");
    prepare(&b, &a, "a", &c);
    b.real_lxc_ok(&["snapshot", &format!("a:{c}"), "s0"]);
    b.real_lxc_ok(&["config", "set", &format!("a:{c}"), "user.tag", "x1"]);

    // Pull (the default): the target dials the source's operation.
    let c1 = unique("p");
    b.real_lxc_ok(&["copy", &format!("a:{c}"), &format!("b:{c1}")]);
    assert_eq!(snapshots(&b, &format!("b:{c1}")), vec!["s0"]);
    let cfg = b.real_lxc_ok(&["config", "get", &format!("b:{c1}"), "user.tag"]);
    assert_eq!(cfg.trim(), "x1");
    check_started(&b, &format!("b:{c1}"), "hello");
    // The image's copy templates ran for the new name (as for a local copy).
    b.real_lxc_ok(&["start", &format!("b:{c1}")]);
    let hosts = b.real_lxc_ok(&["exec", &format!("b:{c1}"), "--", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&c1), "{hosts}");
    b.real_lxc_ok(&["stop", "-f", &format!("b:{c1}")]);
    // The snapshot is usable: restore it.
    b.real_lxc_ok(&["restore", &format!("b:{c1}"), "s0"]);

    // Push: the source dials the target's operation.
    let c2 = unique("q");
    b.real_lxc_ok(&[
        "copy",
        "--mode",
        "push",
        &format!("a:{c}"),
        &format!("b:{c2}"),
    ]);
    assert_eq!(snapshots(&b, &format!("b:{c2}")), vec!["s0"]);
    check_started(&b, &format!("b:{c2}"), "hello");

    // Relay: the client carries both websockets; instance only.
    let c3 = unique("r");
    b.real_lxc_ok(&[
        "copy",
        "--mode",
        "relay",
        "--instance-only",
        &format!("a:{c}"),
        &format!("b:{c3}"),
    ]);
    assert!(snapshots(&b, &format!("b:{c3}")).is_empty());
    check_started(&b, &format!("b:{c3}"), "hello");

    // A snapshot as the source: a new instance without snapshots.
    let c4 = unique("sn");
    b.real_lxc_ok(&["copy", &format!("a:{c}/s0"), &format!("b:{c4}")]);
    assert!(snapshots(&b, &format!("b:{c4}")).is_empty());
    check_started(&b, &format!("b:{c4}"), "hello");

    // The source is untouched.
    assert_eq!(snapshots(&b, &format!("a:{c}")), vec!["s0"]);
    let _ = text(b"");
    let _ = RealLxd::start;
}

#[test]
fn copy_both_ways_with_a_real_lxd() {
    if !root_or_skip("copy_both_ways_with_a_real_lxd") {
        return;
    }
    if !lxd_tests::real::available() {
        eprintln!(
            "\n*** SKIPPED copy_both_ways_with_a_real_lxd: Debian's lxd is not installed ***\n"
        );
        return;
    }
    let real = RealLxd::start(&[]);
    let rport = free_port();
    real.lxc_ok(&[
        "config",
        "set",
        "core.https_address",
        &format!("127.0.0.1:{rport}"),
    ]);
    real.lxc_ok(&["config", "set", "core.trust_password", "sekret"]);
    let ours = TestDaemon::start();
    let ours_url = listen(&ours);
    ours.lxc_ok(&["config", "set", "core.trust_password", "sekret"]);
    for (name, url) in [
        ("real", format!("https://127.0.0.1:{rport}")),
        ("ours", ours_url),
    ] {
        ours.real_lxc_ok(&[
            "remote",
            "add",
            name,
            &url,
            "--accept-certificate",
            "--password",
            "sekret",
        ]);
    }
    // Real LXD -> ours, with a snapshot, pulled by our daemon.
    let img = lxd_tests::busybox_image();
    real.lxc_ok(&["image", "import", img.to_str().unwrap(), "--alias", "bb"]);
    let rc = unique("rc");
    prepare_with(&ours, "real", &rc);
    ours.real_lxc_ok(&["snapshot", &format!("real:{rc}"), "s0"]);
    ours.real_lxc_ok(&[
        "config",
        "set",
        &format!("real:{rc}"),
        "user.tag",
        "fromreal",
    ]);
    let oc = unique("oc");
    ours.real_lxc_ok(&["copy", &format!("real:{rc}"), &format!("ours:{oc}")]);
    assert_eq!(snapshots(&ours, &format!("ours:{oc}")), vec!["s0"]);
    let tag = ours.real_lxc_ok(&["config", "get", &format!("ours:{oc}"), "user.tag"]);
    assert_eq!(tag.trim(), "fromreal");
    check_started(&ours, &format!("ours:{oc}"), "hello");

    // Ours -> real LXD (the real LXD pulls from our operation), snapshots included.
    let back = unique("bk");
    ours.real_lxc_ok(&["copy", &format!("ours:{oc}"), &format!("real:{back}")]);
    assert_eq!(snapshots(&ours, &format!("real:{back}")), vec!["s0"]);
    check_started(&ours, &format!("real:{back}"), "hello");

    // Snapshots as sources, both ways.
    let from_snap = unique("fs");
    ours.real_lxc_ok(&[
        "copy",
        &format!("real:{rc}/s0"),
        &format!("ours:{from_snap}"),
    ]);
    check_started(&ours, &format!("ours:{from_snap}"), "hello");
    let to_snap = unique("ts");
    ours.real_lxc_ok(&["copy", &format!("ours:{oc}/s0"), &format!("real:{to_snap}")]);
    assert!(snapshots(&ours, &format!("real:{to_snap}")).is_empty());
    check_started(&ours, &format!("real:{to_snap}"), "hello");
    real.lxc_ok(&["delete", "-f", &to_snap]);

    // Push mode into the real LXD, and a move from the real LXD to ours.
    let pushed = unique("pu");
    ours.real_lxc_ok(&[
        "copy",
        "--mode",
        "push",
        &format!("ours:{oc}"),
        &format!("real:{pushed}"),
    ]);
    check_started(&ours, &format!("real:{pushed}"), "hello");
    let moved = unique("mv");
    ours.real_lxc_ok(&["move", &format!("real:{pushed}"), &format!("ours:{moved}")]);
    check_started(&ours, &format!("ours:{moved}"), "hello");
    let list = real.lxc_ok(&["list", "--format", "csv", "-c", "n"]);
    assert!(!list.contains(&pushed), "{list}");

    // --refresh both ways: a changed file and a new snapshot arrive.
    ours.real_lxc_ok(&["start", &format!("ours:{oc}")]);
    ours.real_lxc_ok(&[
        "exec",
        &format!("ours:{oc}"),
        "--",
        "sh",
        "-c",
        "echo v2 > /root/f",
    ]);
    ours.real_lxc_ok(&["stop", "-f", &format!("ours:{oc}")]);
    ours.real_lxc_ok(&["snapshot", &format!("ours:{oc}"), "s9"]);
    ours.real_lxc_ok(&[
        "copy",
        "--refresh",
        &format!("ours:{oc}"),
        &format!("real:{back}"),
    ]);
    assert_eq!(snapshots(&ours, &format!("real:{back}")), vec!["s0", "s9"]);
    check_started(&ours, &format!("real:{back}"), "v2");
    ours.real_lxc_ok(&["snapshot", &format!("real:{back}"), "s10"]);
    ours.real_lxc_ok(&[
        "copy",
        "--refresh",
        &format!("real:{back}"),
        &format!("ours:{oc}"),
    ]);
    assert_eq!(
        snapshots(&ours, &format!("ours:{oc}")),
        vec!["s0", "s10", "s9"]
    );
    check_started(&ours, &format!("ours:{oc}"), "v2");
    ours.real_lxc_ok(&["start", &format!("ours:{oc}")]);
    ours.real_lxc_ok(&[
        "exec",
        &format!("ours:{oc}"),
        "--",
        "sh",
        "-c",
        "echo hello > /root/f",
    ]);
    ours.real_lxc_ok(&["stop", "-f", &format!("ours:{oc}")]);

    // Running sources, --stateless: the final sync after the first pass, both ways.
    ours.real_lxc_ok(&["start", &format!("real:{rc}")]);
    let from_running = unique("fr");
    ours.real_lxc_ok(&[
        "copy",
        "--stateless",
        &format!("real:{rc}"),
        &format!("ours:{from_running}"),
    ]);
    check_started(&ours, &format!("ours:{from_running}"), "hello");
    ours.real_lxc_ok(&["stop", "-f", &format!("real:{rc}")]);
    ours.real_lxc_ok(&["start", &format!("ours:{oc}")]);
    let to_real = unique("tr");
    ours.real_lxc_ok(&[
        "copy",
        "--stateless",
        &format!("ours:{oc}"),
        &format!("real:{to_real}"),
    ]);
    check_started(&ours, &format!("real:{to_real}"), "hello");
    ours.real_lxc_ok(&["stop", "-f", &format!("ours:{oc}")]);
    real.lxc_ok(&["delete", "-f", &to_real]);
    for c in [&rc, &back] {
        real.lxc_ok(&["delete", "-f", c]);
    }
}

/// `prepare` for an image already on the remote.
fn prepare_with(b: &TestDaemon, remote: &str, name: &str) {
    b.real_lxc_ok(&[
        "launch",
        &format!("{remote}:bb"),
        &format!("{remote}:{name}"),
    ]);
    b.real_lxc_ok(&[
        "exec",
        &format!("{remote}:{name}"),
        "--",
        "sh",
        "-c",
        "echo hello > /root/f && chown 1000:1000 /root/f",
    ]);
    b.real_lxc_ok(&["stop", "-f", &format!("{remote}:{name}")]);
}

#[test]
fn move_refresh_target_pool_and_running_sources() {
    if !root_or_skip("move_refresh_target_pool_and_running_sources") {
        return;
    }
    let (a, b) = pair();
    let c = unique("mr");
    prepare(&b, &a, "a", &c);
    b.real_lxc_ok(&["snapshot", &format!("a:{c}"), "s0"]);

    // --refresh: a changed file and a new snapshot arrive; a snapshot gone from the source goes.
    let r = unique("rf");
    b.real_lxc_ok(&["copy", &format!("a:{c}"), &format!("b:{r}")]);
    b.real_lxc_ok(&["start", &format!("a:{c}")]);
    b.real_lxc_ok(&[
        "exec",
        &format!("a:{c}"),
        "--",
        "sh",
        "-c",
        "echo v2 > /root/f && echo new > /root/g",
    ]);
    b.real_lxc_ok(&["stop", "-f", &format!("a:{c}")]);
    b.real_lxc_ok(&["snapshot", &format!("a:{c}"), "s1"]);
    b.real_lxc_ok(&["copy", "--refresh", &format!("a:{c}"), &format!("b:{r}")]);
    assert_eq!(snapshots(&b, &format!("b:{r}")), vec!["s0", "s1"]);
    b.real_lxc_ok(&["start", &format!("b:{r}")]);
    let g = b.real_lxc_ok(&["exec", &format!("b:{r}"), "--", "cat", "/root/g"]);
    assert_eq!(g.trim(), "new");
    b.real_lxc_ok(&["stop", "-f", &format!("b:{r}")]);
    check_started(&b, &format!("b:{r}"), "v2");
    b.real_lxc_ok(&["delete", &format!("a:{c}/s0")]);
    b.real_lxc_ok(&["copy", "--refresh", &format!("a:{c}"), &format!("b:{r}")]);
    assert_eq!(snapshots(&b, &format!("b:{r}")), vec!["s1"]);

    // -s POOL on the target.
    b.lxc_ok(&["storage", "create", "p2", "dir"]);
    let p = unique("pl");
    b.real_lxc_ok(&["copy", &format!("a:{c}"), &format!("b:{p}"), "-s", "p2"]);
    let inst = b.query_json(&format!("/1.0/instances/{p}"));
    assert_eq!(inst["expanded_devices"]["root"]["pool"], "p2", "{inst}");
    assert!(b.dir.join("storage-pools/p2/containers").join(&p).exists());
    check_started(&b, &format!("b:{p}"), "v2");

    // A running source: without --stateless the client asks for a live migration, which
    // LXD without CRIU refuses in one line; --stateless copies it as LXD does (two rsync
    // passes) and the source keeps running.
    b.real_lxc_ok(&["start", &format!("a:{c}")]);
    let out = b.real_lxc(&["copy", &format!("a:{c}"), &format!("b:{}", unique("lv"))]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("CRIU"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let run = unique("ru");
    b.real_lxc_ok(&[
        "copy",
        "--stateless",
        &format!("a:{c}"),
        &format!("b:{run}"),
    ]);
    let st = b.real_lxc_ok(&["list", &format!("a:{c}"), "--format", "csv", "-c", "s"]);
    assert_eq!(st.trim(), "RUNNING");
    check_started(&b, &format!("b:{run}"), "v2");

    // move --stateless of the running instance; then a stopped one: gone from the source.
    let mv = unique("mv");
    b.real_lxc_ok(&["move", "--stateless", &format!("a:{c}"), &format!("b:{mv}")]);
    let list = a.lxc_ok(&["list", "--format", "csv", "-c", "n"]);
    assert!(!list.contains(&c), "{list}");
    assert_eq!(snapshots(&b, &format!("b:{mv}")), vec!["s1"]);
    b.real_lxc(&["stop", "-f", &format!("b:{mv}")]);
    check_started(&b, &format!("b:{mv}"), "v2");
    let back = unique("bk");
    b.real_lxc_ok(&["move", &format!("b:{mv}"), &format!("a:{back}")]);
    check_started(&b, &format!("a:{back}"), "v2");
    assert!(
        !b.lxc_ok(&["list", "--format", "csv", "-c", "n"])
            .contains(&mv)
    );
}

/// True when `d` has no trace of instance `name` (row, volume, snapshots, symlink).
fn target_clean(d: &TestDaemon, name: &str) -> bool {
    let (code, _) = lxd_tests::raw_request(&d.dir, "GET", &format!("/1.0/instances/{name}"), None);
    code == 404
        && !d.dir.join("containers").join(name).exists()
        && !d
            .dir
            .join("storage-pools/default/containers")
            .join(name)
            .exists()
        && !d
            .dir
            .join("storage-pools/default/containers-snapshots")
            .join(name)
            .exists()
}

#[test]
fn bad_input_leaves_the_source_intact_and_the_target_clean() {
    if !root_or_skip("bad_input_leaves_the_source_intact_and_the_target_clean") {
        return;
    }
    let (a, b) = pair();
    let c = unique("bi");
    prepare(&b, &a, "a", &c);
    b.real_lxc_ok(&["snapshot", &format!("a:{c}"), "s0"]);
    let one_line = |out: &std::process::Output, want: &str| {
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(err.contains(want), "expected {want:?} in {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    };

    // The name is taken on the target.
    let taken = unique("tk");
    b.real_lxc_ok(&["copy", &format!("a:{c}"), &format!("b:{taken}")]);
    let out = b.real_lxc(&["copy", &format!("a:{c}"), &format!("b:{taken}")]);
    one_line(&out, "already exists");

    // A profile the target does not have.
    a.lxc_ok(&["profile", "create", "extra"]);
    a.lxc_ok(&["profile", "add", &c, "extra"]);
    let np = unique("np");
    let out = b.real_lxc(&["copy", &format!("a:{c}"), &format!("b:{np}")]);
    one_line(&out, "profile");
    assert!(target_clean(&b, &np));
    a.lxc_ok(&["profile", "remove", &c, "extra"]);

    // A pool the target does not have.
    let nl = unique("nl");
    let out = b.real_lxc(&[
        "copy",
        &format!("a:{c}"),
        &format!("b:{nl}"),
        "-s",
        "nopool",
    ]);
    one_line(&out, "nopool");
    assert!(target_clean(&b, &nl));

    // An untrusted source: the target pins the certificate it was given, which is not the
    // source's, and refuses the connection; the target keeps nothing.
    let (code, v) = lxd_tests::raw_request(
        &a.dir,
        "POST",
        &format!("/1.0/instances/{c}"),
        Some(r#"{"migration":true}"#),
    );
    assert_eq!(code, 202, "{v}");
    let op_id = v["metadata"]["id"].as_str().unwrap().to_string();
    let secrets = v["metadata"]["metadata"].clone();
    let a_addr = a.query_json("/1.0")["environment"]["addresses"][0]
        .as_str()
        .unwrap()
        .to_string();
    let wrong_cert = b.query_json("/1.0")["environment"]["certificate"]
        .as_str()
        .unwrap()
        .to_string();
    let ut = unique("ut");
    let body = serde_json::json!({
        "name": ut,
        "source": {
            "type": "migration",
            "mode": "pull",
            "operation": format!("https://{a_addr}/1.0/operations/{op_id}"),
            "secrets": secrets,
            "certificate": wrong_cert,
        },
    });
    let (code, v) =
        lxd_tests::raw_request(&b.dir, "POST", "/1.0/instances", Some(&body.to_string()));
    assert_eq!(code, 202, "{v}");
    let tid = v["metadata"]["id"].as_str().unwrap().to_string();
    let w = b.query_json(&format!("/1.0/operations/{tid}/wait?timeout=60"));
    assert_eq!(w["status"], "Failure", "{w}");
    let err = w["err"].as_str().unwrap();
    assert!(err.contains("certificate"), "{err}");
    assert!(target_clean(&b, &ut));

    // The source is intact after all of it.
    assert_eq!(snapshots(&b, &format!("a:{c}")), vec!["s0"]);
    check_started(&b, &format!("a:{c}"), "hello");
}

fn btrfs_available(test: &str) -> bool {
    let ok = std::fs::read_to_string("/proc/filesystems").is_ok_and(|f| f.contains("btrfs"))
        && std::process::Command::new("btrfs")
            .arg("--version")
            .output()
            .is_ok();
    if !ok {
        eprintln!("\n*** SKIPPED {test}: no btrfs (kernel or btrfs-progs) ***\n");
    }
    ok
}

/// `btrfs subvolume show PATH`'s "Received UUID" (a `-` when the subvolume was not received).
fn received_uuid(path: &std::path::Path) -> String {
    let out = std::process::Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .output()
        .unwrap();
    text(&out.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Received UUID:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

#[test]
fn btrfs_to_btrfs_uses_send_and_receive() {
    let test = "btrfs_to_btrfs_uses_send_and_receive";
    if !root_or_skip(test) || !btrfs_available(test) {
        return;
    }
    let (a, b) = pair();
    a.lxc_ok(&["storage", "create", "ba", "btrfs", "size=1GiB"]);
    b.lxc_ok(&["storage", "create", "bb", "btrfs", "size=1GiB"]);
    a.import_busybox("bb");
    let c = unique("bt");
    b.real_lxc_ok(&["launch", "a:bb", &format!("a:{c}"), "-s", "ba"]);
    b.real_lxc_ok(&[
        "exec",
        &format!("a:{c}"),
        "--",
        "sh",
        "-c",
        "echo hello > /root/f && chown 1000:1000 /root/f",
    ]);
    b.real_lxc_ok(&["stop", "-f", &format!("a:{c}")]);
    b.real_lxc_ok(&["snapshot", &format!("a:{c}"), "s0"]);
    b.real_lxc_ok(&["snapshot", &format!("a:{c}"), "s1"]);

    let t = unique("bu");
    b.real_lxc_ok(&["copy", &format!("a:{c}"), &format!("b:{t}"), "-s", "bb"]);
    assert_eq!(snapshots(&b, &format!("b:{t}")), vec!["s0", "s1"]);
    // The snapshots arrived as btrfs receive made them (a received UUID), not by rsync.
    let snaps = b.dir.join("storage-pools/bb/containers-snapshots").join(&t);
    for s in ["s0", "s1"] {
        let r = received_uuid(&snaps.join(s));
        assert!(!r.is_empty() && r != "-", "{s}: received UUID {r:?}");
    }
    // No scratch directories are left in either pool.
    let no_scratch = || {
        for p in [
            a.dir.join("storage-pools/ba"),
            b.dir.join("storage-pools/bb"),
        ] {
            let left: Vec<_> = std::fs::read_dir(&p)
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("migration."))
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
    };
    no_scratch();
    check_started(&b, &format!("b:{t}"), "hello");
    b.real_lxc_ok(&["restore", &format!("b:{t}"), "s0"]);
    check_started(&b, &format!("b:{t}"), "hello");

    // A refresh between btrfs pools is incremental: a new snapshot and a changed file.
    b.real_lxc_ok(&["start", &format!("a:{c}")]);
    b.real_lxc_ok(&[
        "exec",
        &format!("a:{c}"),
        "--",
        "sh",
        "-c",
        "echo v2 > /root/f",
    ]);
    b.real_lxc_ok(&["stop", "-f", &format!("a:{c}")]);
    b.real_lxc_ok(&["snapshot", &format!("a:{c}"), "s2"]);
    b.real_lxc_ok(&[
        "copy",
        "--refresh",
        &format!("a:{c}"),
        &format!("b:{t}"),
        "-s",
        "bb",
    ]);
    assert_eq!(snapshots(&b, &format!("b:{t}")), vec!["s0", "s1", "s2"]);
    // Incremental: the new snapshot arrived as a send stream relative to s1.
    let r = received_uuid(&snaps.join("s2"));
    assert!(!r.is_empty() && r != "-", "s2: received UUID {r:?}");
    no_scratch();
    check_started(&b, &format!("b:{t}"), "v2");

    // A snapshot as the source, by send/receive.
    let fs = unique("bs");
    b.real_lxc_ok(&["copy", &format!("a:{c}/s0"), &format!("b:{fs}"), "-s", "bb"]);
    assert!(snapshots(&b, &format!("b:{fs}")).is_empty());
    check_started(&b, &format!("b:{fs}"), "hello");

    // btrfs to dir falls back to rsync.
    let d = unique("bd");
    b.real_lxc_ok(&[
        "copy",
        &format!("a:{c}"),
        &format!("b:{d}"),
        "-s",
        "default",
    ]);
    assert_eq!(snapshots(&b, &format!("b:{d}")), vec!["s0", "s1", "s2"]);
    check_started(&b, &format!("b:{d}"), "v2");
    for (dd, r, n) in [(&a, "a", &c), (&b, "b", &t), (&b, "b", &d)] {
        let _ = dd;
        b.real_lxc_ok(&["delete", "-f", &format!("{r}:{n}")]);
    }
}

#[test]
fn btrfs_both_ways_with_a_real_lxd() {
    let test = "btrfs_both_ways_with_a_real_lxd";
    if !root_or_skip(test) || !btrfs_available(test) {
        return;
    }
    if !lxd_tests::real::available() {
        eprintln!("\n*** SKIPPED {test}: Debian's lxd is not installed ***\n");
        return;
    }
    let real = RealLxd::start(&[]);
    let rport = free_port();
    real.lxc_ok(&[
        "config",
        "set",
        "core.https_address",
        &format!("127.0.0.1:{rport}"),
    ]);
    real.lxc_ok(&["config", "set", "core.trust_password", "sekret"]);
    real.lxc_ok(&["storage", "create", "rb", "btrfs", "size=1GiB"]);
    let ours = TestDaemon::start();
    let ours_url = listen(&ours);
    ours.lxc_ok(&["config", "set", "core.trust_password", "sekret"]);
    ours.lxc_ok(&["storage", "create", "ob", "btrfs", "size=1GiB"]);
    for (name, url) in [
        ("real", format!("https://127.0.0.1:{rport}")),
        ("ours", ours_url),
    ] {
        ours.real_lxc_ok(&[
            "remote",
            "add",
            name,
            &url,
            "--accept-certificate",
            "--password",
            "sekret",
        ]);
    }
    let img = lxd_tests::busybox_image();
    real.lxc_ok(&["image", "import", img.to_str().unwrap(), "--alias", "bb"]);
    let rc = unique("rb");
    ours.real_lxc_ok(&["launch", "real:bb", &format!("real:{rc}"), "-s", "rb"]);
    ours.real_lxc_ok(&[
        "exec",
        &format!("real:{rc}"),
        "--",
        "sh",
        "-c",
        "echo hello > /root/f && chown 1000:1000 /root/f",
    ]);
    // One snapshot taken while it runs (its volume is then owned by the container's root).
    ours.real_lxc_ok(&["snapshot", &format!("real:{rc}"), "s1"]);
    ours.real_lxc_ok(&["stop", "-f", &format!("real:{rc}")]);
    ours.real_lxc_ok(&["snapshot", &format!("real:{rc}"), "s0"]);

    // Real LXD (btrfs) -> ours (btrfs).
    let oc = unique("ob");
    ours.real_lxc_ok(&[
        "copy",
        &format!("real:{rc}"),
        &format!("ours:{oc}"),
        "-s",
        "ob",
    ]);
    assert_eq!(snapshots(&ours, &format!("ours:{oc}")), vec!["s0", "s1"]);
    ours.real_lxc_ok(&["restore", &format!("ours:{oc}"), "s1"]);
    check_started(&ours, &format!("ours:{oc}"), "hello");
    let r = received_uuid(
        &ours
            .dir
            .join("storage-pools/ob/containers-snapshots")
            .join(&oc)
            .join("s0"),
    );
    assert!(!r.is_empty() && r != "-", "not received by btrfs: {r:?}");
    check_started(&ours, &format!("ours:{oc}"), "hello");

    // Ours (btrfs) -> real LXD (btrfs).
    let back = unique("bk");
    ours.real_lxc_ok(&[
        "copy",
        &format!("ours:{oc}"),
        &format!("real:{back}"),
        "-s",
        "rb",
    ]);
    assert_eq!(snapshots(&ours, &format!("real:{back}")), vec!["s0", "s1"]);
    let r = received_uuid(
        &real
            .dir
            .join("storage-pools/rb/containers-snapshots")
            .join(&back)
            .join("s0"),
    );
    assert!(!r.is_empty() && r != "-", "not received by btrfs: {r:?}");
    check_started(&ours, &format!("real:{back}"), "hello");
    ours.real_lxc_ok(&["restore", &format!("real:{back}"), "s0"]);
    check_started(&ours, &format!("real:{back}"), "hello");

    // --refresh between the btrfs pools, both ways: a new snapshot and a changed file.
    ours.real_lxc_ok(&["start", &format!("ours:{oc}")]);
    ours.real_lxc_ok(&[
        "exec",
        &format!("ours:{oc}"),
        "--",
        "sh",
        "-c",
        "echo v2 > /root/f",
    ]);
    ours.real_lxc_ok(&["stop", "-f", &format!("ours:{oc}")]);
    ours.real_lxc_ok(&["snapshot", &format!("ours:{oc}"), "s2"]);
    ours.real_lxc_ok(&[
        "copy",
        "--refresh",
        &format!("ours:{oc}"),
        &format!("real:{back}"),
        "-s",
        "rb",
    ]);
    assert_eq!(
        snapshots(&ours, &format!("real:{back}")),
        vec!["s0", "s1", "s2"]
    );
    check_started(&ours, &format!("real:{back}"), "v2");
    ours.real_lxc_ok(&["snapshot", &format!("real:{back}"), "s3"]);
    ours.real_lxc_ok(&[
        "copy",
        "--refresh",
        &format!("real:{back}"),
        &format!("ours:{oc}"),
        "-s",
        "ob",
    ]);
    assert_eq!(
        snapshots(&ours, &format!("ours:{oc}")),
        vec!["s0", "s1", "s2", "s3"]
    );
    check_started(&ours, &format!("ours:{oc}"), "v2");
    for c in [&rc, &back] {
        real.lxc_ok(&["delete", "-f", c]);
    }
    ours.lxc_ok(&["delete", "-f", &oc]);
    real.lxc_ok(&["image", "delete", "bb"]);
    real.lxc_ok(&["storage", "delete", "rb"]);
}

#[test]
fn zfs_to_zfs_uses_send_and_receive() {
    let test = "zfs_to_zfs_uses_send_and_receive";
    if !root_or_skip(test) {
        return;
    }
    // Declared first so that zfs-fuse outlives the daemons (they destroy their pools).
    let Some(_zfs) = lxd_tests::ZfsFuse::start(test) else {
        return;
    };
    let (a, b) = pair();
    let (za, zb) = (unique("mza"), unique("mzb"));
    a.lxc_ok(&["storage", "create", &za, "zfs", "size=1GiB"]);
    b.lxc_ok(&["storage", "create", &zb, "zfs", "size=1GiB"]);
    a.import_busybox("bb");
    let c = unique("zc");
    b.real_lxc_ok(&["init", "a:bb", &format!("a:{c}"), "-s", &za]);
    // zfs-fuse: root of an unprivileged container cannot chown there, so the file is pushed.
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), "hello\n").unwrap();
    b.real_lxc_ok(&[
        "file",
        "push",
        "--uid",
        "1000",
        "--gid",
        "1000",
        src.path().to_str().unwrap(),
        &format!("a:{c}/root/f"),
    ]);
    b.real_lxc_ok(&["snapshot", &format!("a:{c}"), "s0"]);
    b.real_lxc_ok(&["snapshot", &format!("a:{c}"), "s1"]);
    let t = unique("zt");
    b.real_lxc_ok(&["copy", &format!("a:{c}"), &format!("b:{t}"), "-s", &zb]);
    assert_eq!(snapshots(&b, &format!("b:{t}")), vec!["s0", "s1"]);
    // The snapshots are zfs snapshots of the received dataset; no temporary one is left.
    let out = std::process::Command::new("zfs")
        .args(["list", "-H", "-o", "name", "-t", "snapshot", "-r"])
        .arg(format!("{zb}/containers/{t}"))
        .output()
        .unwrap();
    let list = text(&out.stdout);
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_once('@').map(|x| x.1))
        .collect();
    assert_eq!(names, vec!["snapshot-s0", "snapshot-s1"], "{list}");
    let out = std::process::Command::new("zfs")
        .args(["list", "-H", "-o", "name", "-t", "snapshot", "-r"])
        .arg(format!("{za}/containers/{c}"))
        .output()
        .unwrap();
    assert!(!text(&out.stdout).contains("migration-"));
    check_started(&b, &format!("b:{t}"), "hello");
    // A snapshot as the source: the received dataset keeps no snapshot.
    let zs = unique("zs");
    b.real_lxc_ok(&["copy", &format!("a:{c}/s0"), &format!("b:{zs}"), "-s", &zb]);
    assert!(snapshots(&b, &format!("b:{zs}")).is_empty());
    let out = std::process::Command::new("zfs")
        .args(["list", "-H", "-o", "name", "-t", "snapshot", "-r"])
        .arg(format!("{zb}/containers/{zs}"))
        .output()
        .unwrap();
    assert!(text(&out.stdout).trim().is_empty(), "{}", text(&out.stdout));
    check_started(&b, &format!("b:{zs}"), "hello");
    b.real_lxc_ok(&["delete", "-f", &format!("b:{zs}")]);
    for (r, n) in [("a", &c), ("b", &t)] {
        b.real_lxc_ok(&["delete", "-f", &format!("{r}:{n}")]);
    }
    a.lxc_ok(&["image", "delete", "bb"]);
    a.lxc_ok(&["storage", "delete", &za]);
    b.lxc_ok(&["storage", "delete", &zb]);
}

#[test]
fn a_cancelled_or_dropped_transfer_leaves_the_target_clean() {
    if !root_or_skip("a_cancelled_or_dropped_transfer_leaves_the_target_clean") {
        return;
    }
    let (mut a, b) = pair();
    let c = unique("dr");
    prepare(&b, &a, "a", &c);
    b.real_lxc_ok(&["start", &format!("a:{c}")]);
    b.real_lxc_ok(&[
        "exec",
        &format!("a:{c}"),
        "--",
        "dd",
        "if=/dev/urandom",
        "of=/root/big",
        "bs=1M",
        "count=400",
    ]);
    b.real_lxc_ok(&["stop", "-f", &format!("a:{c}")]);
    let conf = b.real_lxc_conf();

    // The target's operation is cancelled mid-transfer: nothing of it stays.
    let t = unique("dc");
    let copy = std::process::Command::new("/usr/bin/lxc")
        .args(["copy", &format!("a:{c}"), &format!("b:{t}")])
        .envs(conf.clone())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = lxd_tests::wait_until(std::time::Duration::from_secs(30), || {
        lxd_tests::raw_request(&b.dir, "GET", &format!("/1.0/instances/{t}"), None).0 == 200
    });
    assert!(started, "the target never started receiving");
    let ops = b.query_json("/1.0/operations?recursion=1");
    let id = ops["running"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["description"] == "Creating instance")
        .map(|o| o["id"].as_str().unwrap().to_string())
        .expect("the target's operation");
    // Progress shows in the operation's metadata as LXD reports it.
    let progress = lxd_tests::wait_until(std::time::Duration::from_secs(10), || {
        let op = b.query_json(&format!("/1.0/operations/{id}"));
        op["metadata"]["fs_progress"]
            .as_str()
            .is_some_and(|p| p.contains("B/s)"))
    });
    assert!(progress, "no fs_progress in the operation");
    let (code, v) =
        lxd_tests::raw_request(&b.dir, "DELETE", &format!("/1.0/operations/{id}"), None);
    assert_eq!(code, 200, "{v}");
    let out = copy.wait_with_output().unwrap();
    assert!(!out.status.success());
    let cleaned =
        lxd_tests::wait_until(std::time::Duration::from_secs(30), || target_clean(&b, &t));
    assert!(cleaned, "the target kept a half-made {t}");

    let t = unique("dt");
    // The copy runs in the background; the source daemon dies once the target has started.
    let copy = std::process::Command::new("/usr/bin/lxc")
        .args(["copy", &format!("a:{c}"), &format!("b:{t}")])
        .envs(conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = lxd_tests::wait_until(std::time::Duration::from_secs(30), || {
        lxd_tests::raw_request(&b.dir, "GET", &format!("/1.0/instances/{t}"), None).0 == 200
    });
    assert!(started, "the target never started receiving");
    a.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    let out = copy.wait_with_output().unwrap();
    assert!(!out.status.success());
    let cleaned =
        lxd_tests::wait_until(std::time::Duration::from_secs(30), || target_clean(&b, &t));
    assert!(cleaned, "the target kept a half-made {t}");
    a.start_again();
    // The source is intact.
    let back = lxd_tests::wait_until(std::time::Duration::from_secs(30), || {
        b.real_lxc(&["list", "a:"]).status.success()
    });
    assert!(back, "the source daemon did not come back");
    check_started(&b, &format!("a:{c}"), "hello");
}

/// Our zfs-fuse pool keeps files shifted on disk (no idmapped mounts there): the header's id map
/// tells the real LXD, which shifts them to its own map at the first start; and back to a dir
/// pool of ours, which must do the same with LXD's map.
#[test]
fn shifted_files_carry_their_idmap_to_a_real_lxd_and_back() {
    let test = "shifted_files_carry_their_idmap_to_a_real_lxd_and_back";
    if !root_or_skip(test) {
        return;
    }
    if !lxd_tests::real::available() {
        eprintln!("\n*** SKIPPED {test}: Debian's lxd is not installed ***\n");
        return;
    }
    let Some(_zfs) = lxd_tests::ZfsFuse::start(test) else {
        return;
    };
    let real = RealLxd::start(&[]);
    let rport = free_port();
    real.lxc_ok(&[
        "config",
        "set",
        "core.https_address",
        &format!("127.0.0.1:{rport}"),
    ]);
    real.lxc_ok(&["config", "set", "core.trust_password", "sekret"]);
    let ours = TestDaemon::start();
    let ours_url = listen(&ours);
    ours.lxc_ok(&["config", "set", "core.trust_password", "sekret"]);
    for (name, url) in [
        ("real", format!("https://127.0.0.1:{rport}")),
        ("ours", ours_url),
    ] {
        ours.real_lxc_ok(&[
            "remote",
            "add",
            name,
            &url,
            "--accept-certificate",
            "--password",
            "sekret",
        ]);
    }
    let zp = unique("mzi");
    ours.lxc_ok(&["storage", "create", &zp, "zfs", "size=1GiB"]);
    ours.import_busybox("bb");
    let c = unique("zi");
    ours.real_lxc_ok(&["init", "ours:bb", &format!("ours:{c}"), "-s", &zp]);
    let src = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(src.path(), "hello\n").unwrap();
    ours.real_lxc_ok(&[
        "file",
        "push",
        "--uid",
        "1000",
        "--gid",
        "1000",
        src.path().to_str().unwrap(),
        &format!("ours:{c}/root/f"),
    ]);
    // Started once: the files are now shifted on disk and the instance records the map.
    ours.real_lxc_ok(&["start", &format!("ours:{c}")]);
    ours.real_lxc_ok(&["stop", "-f", &format!("ours:{c}")]);
    let map = ours.real_lxc_ok(&[
        "config",
        "get",
        &format!("ours:{c}"),
        "volatile.last_state.idmap",
    ]);
    assert!(map.contains("Hostid"), "not shifted on disk: {map}");
    let r = unique("ri");
    ours.real_lxc_ok(&["copy", &format!("ours:{c}"), &format!("real:{r}")]);
    check_started(&ours, &format!("real:{r}"), "hello");
    // Back from the real LXD (its files shifted to its own map) to a dir pool of ours.
    let back = unique("rb");
    ours.real_lxc_ok(&["copy", &format!("real:{r}"), &format!("ours:{back}")]);
    check_started(&ours, &format!("ours:{back}"), "hello");
    real.lxc_ok(&["delete", "-f", &r]);
    ours.lxc_ok(&["delete", "-f", &c]);
    ours.lxc_ok(&["delete", "-f", &back]);
    ours.lxc_ok(&["image", "delete", "bb"]);
    ours.lxc_ok(&["storage", "delete", &zp]);
}
