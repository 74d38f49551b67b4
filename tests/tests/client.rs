//! Our `lxc` against our daemon: the commands of the first flows and their output formats.

use lxd_tests::{TestDaemon, busybox_image, root_or_skip, text, unique};

#[test]
fn our_client_drives_the_first_flow() {
    if !root_or_skip("our_client_drives_the_first_flow") {
        return;
    }
    let d = TestDaemon::start();
    let v = d.lxc_ok(&["version"]);
    assert!(
        v.contains("Client version:") && v.contains("Server version: 5.0.2"),
        "{v}"
    );
    d.lxc_ok(&[
        "image",
        "import",
        busybox_image().to_str().unwrap(),
        "--alias",
        "bb",
    ]);
    let images = d.lxc_ok(&["image", "list", "--format", "csv"]);
    assert!(images.contains("bb,"), "{images}");
    let c = unique("o");
    d.lxc_ok(&["launch", "bb", &c]);
    let csv = d.lxc_ok(&["list", "--format", "csv", "-c", "ns"]);
    assert_eq!(csv.trim(), format!("{c},RUNNING"));
    let json: serde_json::Value =
        serde_json::from_str(&d.lxc_ok(&["list", "--format", "json"])).unwrap();
    assert_eq!(json[0]["name"], c.as_str());
    assert_eq!(json[0]["status"], "Running");
    let yaml = d.lxc_ok(&["list", "--format", "yaml"]);
    assert!(yaml.contains(&format!("name: {c}")), "{yaml}");
    let table = d.lxc_ok(&["list"]);
    assert!(
        table.contains(" NAME ") && table.contains("| RUNNING |"),
        "{table}"
    );

    let out = d.lxc(&[
        "exec",
        &c,
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 9",
    ]);
    assert_eq!(out.status.code(), Some(9));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    assert_eq!(
        d.lxc(&["exec", &c, "--", "nope-not-here"]).status.code(),
        Some(127)
    );

    let info = d.lxc_ok(&["info", &c]);
    assert!(
        info.contains(&format!("Name: {c}")) && info.contains("Status: RUNNING"),
        "{info}"
    );
    assert!(info.contains("PID:"), "{info}");

    d.lxc_ok(&["config", "set", &c, "user.note", "hello"]);
    assert_eq!(
        d.lxc_ok(&["config", "get", &c, "user.note"]).trim(),
        "hello"
    );
    assert!(!d.lxc(&["config", "set", &c, "bogus", "1"]).status.success());
    d.lxc_ok(&["config", "unset", &c, "user.note"]);
    assert!(
        d.lxc_ok(&["config", "get", &c, "user.note"])
            .trim()
            .is_empty()
    );
    let show = d.lxc_ok(&["config", "show", &c]);
    assert!(show.contains("volatile.base_image"), "{show}");

    d.lxc_ok(&["config", "set", "images.auto_update_interval", "12"]);
    assert_eq!(
        d.lxc_ok(&["config", "get", "images.auto_update_interval"])
            .trim(),
        "12"
    );
    assert!(
        d.lxc_ok(&["config", "show"])
            .contains("images.auto_update_interval")
    );

    assert!(d.lxc_ok(&["profile", "list"]).contains("default"));
    assert!(
        d.lxc_ok(&["profile", "show", "default"])
            .contains("pool: default")
    );
    let remotes = d.lxc_ok(&["remote", "list"]);
    for r in ["local", "images", "ubuntu", "ubuntu-daily"] {
        assert!(remotes.contains(r), "{remotes}");
    }

    // Delete of a running instance is refused by the client, with LXD's message.
    let out = d.lxc(&["delete", &c]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("stop it first"),
        "{}",
        text(&out.stderr)
    );
    d.lxc_ok(&["stop", &c, "--force"]);
    let c2 = unique("n");
    d.lxc_ok(&["rename", &c, &c2]);
    d.lxc_ok(&["start", &c2]);
    d.lxc_ok(&["restart", &c2, "--force"]);
    d.lxc_ok(&["delete", "-f", &c2]);
    assert!(d.lxc_ok(&["list", "--format", "csv"]).trim().is_empty());

    // Errors are one line on stderr and a non-zero exit.
    let out = d.lxc(&["info", "does-not-exist"]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim().lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );

    let fp = d
        .lxc_ok(&["image", "list", "-c", "f", "--format", "csv"])
        .trim()
        .to_string();
    assert_eq!(fp.len(), 12, "{fp}");
    d.lxc_ok(&["image", "alias", "create", "bb2", &fp]);
    d.lxc_ok(&["image", "alias", "delete", "bb2"]);
    d.lxc_ok(&["image", "delete", "bb"]);
    assert!(
        d.lxc_ok(&["image", "list", "--format", "csv"])
            .trim()
            .is_empty()
    );
}

#[test]
fn monitor_shows_lifecycle_events() {
    if !root_or_skip("monitor_shows_lifecycle_events") {
        return;
    }
    let d = TestDaemon::start();
    let mut mon = std::process::Command::new(lxd_tests::bin("lxc"))
        .args(["monitor", "--type=lifecycle", "--format=json"])
        .env("LXD_DIR", &d.dir)
        .env("LXD_CONF", d.dir.join("monconf"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    d.lxc_ok(&["profile", "create", "evtest"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = mon.kill();
    let out = mon.wait_with_output().unwrap();
    let s = text(&out.stdout);
    assert!(s.contains("profile-created"), "{s}");
}

/// `lxc move C -s POOL` on one server: the instance, its snapshots and its name move to the
/// other pool; a running instance is refused and stays where it is.
#[test]
fn move_between_pools_of_one_server() {
    if !root_or_skip("move_between_pools_of_one_server") {
        return;
    }
    let d = TestDaemon::start();
    d.lxc_ok(&[
        "image",
        "import",
        busybox_image().to_str().unwrap(),
        "--alias",
        "bb",
    ]);
    let pool = unique("mp");
    d.lxc_ok(&["storage", "create", &pool, "dir"]);
    let c = unique("mv");
    d.lxc_ok(&["launch", "bb", &c]);
    d.lxc_ok(&["exec", &c, "--", "sh", "-c", "echo moved > /root/f"]);
    d.lxc_ok(&["snapshot", &c, "s1"]);
    let out = d.lxc(&["move", &c, "-s", &pool]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("must be stopped"),
        "{}",
        text(&out.stderr)
    );
    d.lxc_ok(&["stop", &c, "--force"]);
    d.lxc_ok(&["move", &c, "-s", &pool]);
    let root = d.lxc_ok(&["config", "device", "get", &c, "root", "pool"]);
    assert_eq!(root.trim(), pool);
    let info = d.lxc_ok(&["info", &c]);
    assert!(info.contains("s1"), "{info}");
    d.lxc_ok(&["start", &c]);
    assert_eq!(
        d.lxc_ok(&["exec", &c, "--", "cat", "/root/f"]).trim(),
        "moved"
    );
    let list = d.lxc_ok(&["list", "--format", "csv", "-c", "n"]);
    assert_eq!(list.trim(), c, "{list}");
    d.lxc_ok(&["delete", "-f", &c]);
    d.lxc_ok(&["storage", "delete", &pool]);
}
