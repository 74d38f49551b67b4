//! The REST core against a real daemon: server info and config, envelopes and status codes,
//! operations and events, profiles, projects, bad input. Driven over the raw socket, by our `lxc`
//! and by the real LXD 5.0 client.

use lxd_tests::{TestDaemon, raw_request, root_or_skip};

#[test]
fn server_info_and_config_through_the_real_client() {
    if !root_or_skip("server_info_and_config_through_the_real_client") {
        return;
    }
    let d = TestDaemon::start();
    let info = d.real_lxc_ok(&["info"]);
    assert!(info.contains("api_version: \"1.0\""), "{info}");
    assert!(info.contains("auth: trusted"), "{info}");
    assert!(info.contains("storage: dir"), "{info}");

    d.real_lxc_ok(&["config", "set", "images.auto_update_interval", "24"]);
    assert_eq!(
        d.real_lxc_ok(&["config", "get", "images.auto_update_interval"])
            .trim(),
        "24"
    );
    // Unknown key and malformed value: refused, nothing changed.
    let out = d.real_lxc(&["config", "set", "no.such.key", "1"]);
    assert!(!out.status.success());
    let out = d.real_lxc(&["config", "set", "images.auto_update_interval", "often"]);
    assert!(!out.status.success());
    assert_eq!(
        d.real_lxc_ok(&["config", "get", "images.auto_update_interval"])
            .trim(),
        "24"
    );
    d.real_lxc_ok(&["config", "unset", "images.auto_update_interval"]);
    assert_eq!(
        d.real_lxc_ok(&["config", "get", "images.auto_update_interval"])
            .trim(),
        ""
    );
}

#[test]
fn envelopes_and_status_codes() {
    if !root_or_skip("envelopes_and_status_codes") {
        return;
    }
    let d = TestDaemon::start();
    let (code, v) = raw_request(&d.dir, "GET", "/1.0", None);
    assert_eq!(code, 200);
    assert_eq!(v["type"], "sync");
    assert_eq!(v["status_code"], 200);
    assert!(
        v["metadata"]["api_extensions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "instances")
    );

    let (code, v) = raw_request(&d.dir, "GET", "/1.0/instances/nope", None);
    assert_eq!(code, 404);
    assert_eq!(v["type"], "error");
    assert_eq!(v["error_code"], 404);

    let (code, v) = raw_request(&d.dir, "POST", "/1.0/instances", Some("{not json"));
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["type"], "error");

    let (code, _) = raw_request(
        &d.dir,
        "POST",
        "/1.0/instances",
        Some(r#"{"name":"1bad","source":{"type":"none"}}"#),
    );
    assert_eq!(code, 400);

    let (code, _) = raw_request(&d.dir, "PUT", "/1.0", Some(r#"{"config":{"bogus":"1"}}"#));
    assert_eq!(code, 400);

    let (code, _) = raw_request(&d.dir, "GET", "/1.0/nothing/here", None);
    assert_eq!(code, 404);

    let (code, v) = raw_request(&d.dir, "GET", "/1.0/instances?recursion=2", None);
    assert_eq!(code, 200);
    assert!(v["metadata"].as_array().unwrap().is_empty());

    let (code, _) = raw_request(&d.dir, "GET", "/1.0/instances?project=other", None);
    assert_eq!(code, 404);

    let (code, v) = raw_request(&d.dir, "GET", "/1.0/projects", None);
    assert_eq!(code, 200);
    assert_eq!(v["metadata"][0], "/1.0/projects/default");
}

#[test]
fn operations_wait_and_retention() {
    if !root_or_skip("operations_wait_and_retention") {
        return;
    }
    let d = TestDaemon::start();
    // A failing async operation (no such image): the op is created, fails, and stays queryable.
    let (code, v) = raw_request(
        &d.dir,
        "POST",
        "/1.0/instances",
        Some(r#"{"name":"opwait","source":{"type":"none"}}"#),
    );
    assert_eq!(code, 202, "{v}");
    assert_eq!(v["type"], "async");
    let op = v["operation"].as_str().unwrap().to_string();
    let (code, w) = raw_request(&d.dir, "GET", &format!("{op}/wait?timeout=30"), None);
    assert_eq!(code, 200);
    assert_eq!(w["metadata"]["status"], "Success", "{w}");
    let (code, g) = raw_request(&d.dir, "GET", &op, None);
    assert_eq!(code, 200, "finished operations stay queryable for a while");
    assert_eq!(g["metadata"]["class"], "task");
    let (code, _) = raw_request(&d.dir, "DELETE", &op, None);
    assert_eq!(code, 400, "a finished operation cannot be cancelled");
    let (code, _) = raw_request(&d.dir, "GET", "/1.0/operations/nope", None);
    assert_eq!(code, 404);
    // Empty instance exists now; delete it.
    let (code, v) = raw_request(&d.dir, "DELETE", "/1.0/instances/opwait", None);
    assert_eq!(code, 202, "{v}");
}

#[test]
fn profiles_through_the_real_client() {
    if !root_or_skip("profiles_through_the_real_client") {
        return;
    }
    let d = TestDaemon::start();
    let show = d.real_lxc_ok(&["profile", "show", "default"]);
    assert!(show.contains("pool: default"), "{show}");
    d.real_lxc_ok(&["profile", "create", "small"]);
    d.real_lxc_ok(&["profile", "set", "small", "limits.memory", "64MiB"]);
    assert!(
        !d.real_lxc(&["profile", "set", "small", "limits.memory", "lots"])
            .status
            .success()
    );
    assert!(
        !d.real_lxc(&["profile", "set", "small", "bogus.key", "1"])
            .status
            .success()
    );
    let show = d.real_lxc_ok(&["profile", "show", "small"]);
    assert!(show.contains("limits.memory: 64MiB"), "{show}");
    assert!(
        !d.real_lxc(&["profile", "delete", "default"])
            .status
            .success()
    );
    d.real_lxc_ok(&["profile", "rename", "small", "tiny"]);
    let list = d.real_lxc_ok(&["profile", "list"]);
    assert!(list.contains("tiny") && !list.contains("small"), "{list}");
    d.real_lxc_ok(&["profile", "delete", "tiny"]);
}

#[test]
fn socket_is_group_owned_and_not_world_accessible() {
    if !root_or_skip("socket_is_group_owned_and_not_world_accessible") {
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = TestDaemon::start();
    let m = std::fs::metadata(d.dir.join("unix.socket")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!(m.gid(), 0);
    // A non-root user outside the group is refused by the socket permissions.
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg("/usr/bin/lxc")
        .arg("list")
        .env("LXD_DIR", &d.dir)
        .env("HOME", "/tmp")
        .output()
        .unwrap();
    assert!(!out.status.success());
}
