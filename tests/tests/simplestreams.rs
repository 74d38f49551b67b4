//! Simplestreams image servers on loopback (a tree in the public servers' format, served over
//! HTTPS with a test CA the daemon and clients trust through `SSL_CERT_FILE`): client-side
//! listing and alias resolution, launches that pull, verify and cache (and reuse the cache),
//! image copy with aliases, refresh and auto-update, cache expiry, and bad servers: a wrong
//! checksum, a truncated download, an index pointing elsewhere, an unknown alias, an
//! untrusted certificate. Nothing is cached or left behind when a pull fails.

use lxd_tests::streams::{Fault, FileServer, Layout, ProductSpec, StreamsTree, TestCa};
use lxd_tests::{TestDaemon, busybox_image_named, root_or_skip, text, unique, wait_until};
use std::time::Duration;

fn product(id: &str, aliases: &[&str], os: &str, release: &str) -> ProductSpec {
    ProductSpec {
        id: id.to_string(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        os: os.to_string(),
        release: release.to_string(),
        release_title: release.to_string(),
        arch: "amd64".into(),
    }
}

/// A stream with a split squashfs Debian stand-in, a unified Ubuntu 18.04 stand-in and a split
/// root.tar.xz Ubuntu 22.04 stand-in, all relabelled busybox images.
struct Fixture {
    ca: TestCa,
    _dir: tempfile::TempDir,
    tree: StreamsTree,
    server: FileServer,
    debian: String,
    bionic: String,
    jammy: String,
}

fn fixture() -> Fixture {
    let ca = TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let mut tree = StreamsTree::new(dir.path());
    let debian = tree
        .add(
            &product(
                "debian:bookworm:amd64:default",
                &["debian/bookworm", "debian/12"],
                "Debian",
                "bookworm",
            ),
            "20240101_0000",
            &busybox_image_named("debian-12"),
            Layout::SplitSquashfs,
        )
        .fingerprint;
    let bionic = tree
        .add(
            &product(
                "ubuntu:18.04:amd64:default",
                &["18.04", "bionic", "ubuntu/18.04"],
                "Ubuntu",
                "bionic",
            ),
            "20240101_0000",
            &busybox_image_named("ubuntu-18.04"),
            Layout::Unified,
        )
        .fingerprint;
    let jammy = tree
        .add(
            &product(
                "ubuntu:22.04:amd64:default",
                &["22.04", "jammy", "lts"],
                "Ubuntu",
                "jammy",
            ),
            "20240101_0000",
            &busybox_image_named("ubuntu-22.04"),
            Layout::SplitTarXz,
        )
        .fingerprint;
    let server = FileServer::start(dir.path(), &ca);
    Fixture {
        ca,
        _dir: dir,
        tree,
        server,
        debian,
        bionic,
        jammy,
    }
}

/// `lxc monitor --type=lifecycle` in the background; `stop` returns what it printed.
struct Monitor(std::process::Child);

impl Monitor {
    fn start(d: &TestDaemon) -> Monitor {
        let child = std::process::Command::new(lxd_tests::bin("lxc"))
            .args(["monitor", "--type=lifecycle", "--format=json"])
            .env("LXD_DIR", &d.dir)
            .env("LXD_CONF", d.dir.join("monitor-conf"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Let it subscribe before anything happens.
        std::thread::sleep(Duration::from_millis(500));
        Monitor(child)
    }

    fn stop(mut self) -> String {
        let _ = self.0.kill();
        text(&self.0.wait_with_output().unwrap().stdout)
    }
}

fn images_dir_clean(d: &TestDaemon) -> bool {
    std::fs::read_dir(d.dir.join("images"))
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with('.'))
}

fn image_json(d: &TestDaemon, fp: &str) -> serde_json::Value {
    d.query_json(&format!("/1.0/images/{fp}"))
}

#[test]
fn simplestreams_list_info_launch_and_cache() {
    if !root_or_skip("simplestreams_list_info_launch_and_cache") {
        return;
    }
    let f = fixture();
    let d = TestDaemon::start_with_env(&f.ca.env());
    d.lxc_ok(&[
        "remote",
        "add",
        "ss",
        &f.server.url,
        "--protocol=simplestreams",
    ]);

    // The client reads the stream itself.
    let list = d.lxc_ok(&["image", "list", "ss:", "--format", "csv", "-c", "lfd"]);
    assert!(list.contains("debian/12"), "{list}");
    assert!(list.contains(&f.debian[..12]), "{list}");
    assert!(
        list.contains("Debian bookworm amd64 (20240101_0000)"),
        "{list}"
    );
    let info = d.lxc_ok(&["image", "info", "ss:debian/12"]);
    assert!(
        info.contains(&format!("Fingerprint: {}", f.debian)),
        "{info}"
    );
    let info = d.lxc_ok(&["image", "info", "ss:bionic/amd64"]);
    assert!(info.contains(&f.bionic), "{info}");
    let aliases = d.lxc_ok(&["image", "alias", "list", "ss:", "--format", "csv"]);
    assert!(aliases.contains("lts,"), "{aliases}");
    // Index files are cached by the client.
    f.server.clear_requests();
    d.lxc_ok(&["image", "info", "ss:lts"]);
    assert!(f.server.requests().is_empty(), "{:?}", f.server.requests());

    // Launch pulls (split squashfs), verifies and caches.
    let c1 = unique("ss");
    let out = d.lxc_ok(&["launch", "ss:debian/12", &c1]);
    assert!(out.contains(&format!("Creating {c1}")), "{out}");
    let host = d.lxc_ok(&["exec", &c1, "--", "hostname"]);
    assert_eq!(host.trim(), c1);
    let img = image_json(&d, &f.debian);
    assert_eq!(img["cached"], true, "{img}");
    assert_eq!(img["auto_update"], true, "{img}");
    assert_eq!(img["update_source"]["alias"], "debian/12", "{img}");
    assert_eq!(img["update_source"]["protocol"], "simplestreams", "{img}");
    assert_ne!(img["last_used_at"], "0001-01-01T00:00:00Z", "{img}");
    assert_eq!(img["properties"]["os"], "Debian", "{img}");
    let inst = d.query_json(&format!("/1.0/instances/{c1}"));
    assert_eq!(inst["config"]["volatile.base_image"], f.debian.as_str());
    assert_eq!(inst["config"]["image.os"], "Debian");

    // The next launch reuses the cached image: no image file is fetched again.
    f.server.clear_requests();
    let c2 = unique("ss");
    d.lxc_ok(&["launch", "ss:debian/12", &c2]);
    let fetched: Vec<String> = f
        .server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("/images/"))
        .collect();
    assert!(fetched.is_empty(), "{fetched:?}");
    let list = d.lxc_ok(&["image", "list", "--format", "csv", "-c", "f"]);
    assert_eq!(list.lines().count(), 1, "{list}");

    // Unified and split root.tar.xz images, aliases with and without the architecture.
    let c3 = unique("ss");
    d.lxc_ok(&["launch", "ss:18.04", &c3]);
    assert_eq!(image_json(&d, &f.bionic)["cached"], true);
    let c4 = unique("ss");
    d.real_lxc_ok(&[
        "remote",
        "add",
        "ss",
        &f.server.url,
        "--protocol=simplestreams",
    ]);
    let out = d.real_lxc_ok(&["launch", "ss:lts/amd64", &c4]);
    assert!(out.contains(&c4), "{out}");
    assert_eq!(image_json(&d, &f.jammy)["cached"], true);
    // The real client parses our fixture the same way.
    let real = d.real_lxc_ok(&["image", "list", "ss:", "--format", "csv"]);
    assert!(real.contains("debian/12"), "{real}");
    assert!(images_dir_clean(&d));

    for c in [&c1, &c2, &c3, &c4] {
        d.lxc_ok(&["delete", "-f", c]);
    }
}

#[test]
fn simplestreams_copy_refresh_auto_update_and_expiry() {
    if !root_or_skip("simplestreams_copy_refresh_auto_update_and_expiry") {
        return;
    }
    let mut f = fixture();
    let mut d = TestDaemon::start_with_env(&f.ca.env());
    d.lxc_ok(&["config", "set", "images.auto_update_interval", "0"]);
    d.lxc_ok(&[
        "remote",
        "add",
        "ss",
        &f.server.url,
        "--protocol=simplestreams",
    ]);

    // A pull reports its progress in the operation (LXD's download_progress and progress{}).
    let body = format!(
        r#"{{"source":{{"type":"image","mode":"pull","server":"{}","protocol":"simplestreams","alias":"debian/12"}},"aliases":[{{"name":"raw"}}]}}"#,
        f.server.url
    );
    let (code, v) = lxd_tests::raw_request(&d.dir, "POST", "/1.0/images", Some(&body));
    assert_eq!(code, 202, "{v}");
    let op = v["operation"].as_str().unwrap().to_string();
    let (_, done) = lxd_tests::raw_request(&d.dir, "GET", &format!("{op}/wait?timeout=60"), None);
    let meta = &done["metadata"]["metadata"];
    assert_eq!(done["metadata"]["status"], "Success", "{done}");
    assert!(
        meta["download_progress"]
            .as_str()
            .is_some_and(|p| p.starts_with("rootfs: 100%")),
        "{done}"
    );
    assert_eq!(meta["progress"]["stage"], "download", "{done}");
    assert_eq!(meta["fingerprint"], f.debian.as_str(), "{done}");
    assert_eq!(
        d.query_json("/1.0/images/aliases/raw")["target"],
        f.debian.as_str()
    );
    d.lxc_ok(&["image", "delete", "raw"]);

    // The real 5.0 client's image copy (it resolves the alias itself and sends it on).
    d.real_lxc_ok(&[
        "remote",
        "add",
        "ss",
        &f.server.url,
        "--protocol=simplestreams",
    ]);
    d.real_lxc_ok(&[
        "image",
        "copy",
        "ss:18.04",
        "local:",
        "--alias",
        "b",
        "--auto-update",
    ]);
    let img = image_json(&d, &f.bionic);
    assert_eq!(img["auto_update"], true, "{img}");
    assert_eq!(img["cached"], false, "{img}");
    assert_eq!(
        d.query_json("/1.0/images/aliases/b")["target"],
        f.bionic.as_str()
    );
    d.lxc_ok(&["image", "delete", "b"]);

    // Copy with our own alias and auto-update, and with the stream's aliases.
    let out = d.lxc_ok(&[
        "image",
        "copy",
        "ss:22.04",
        "local:",
        "--alias",
        "j",
        "--auto-update",
    ]);
    assert!(out.contains("Image copied successfully!"), "{out}");
    let img = image_json(&d, &f.jammy);
    assert_eq!(img["cached"], false);
    assert_eq!(img["auto_update"], true);
    assert_eq!(img["update_source"]["alias"], "22.04");
    assert_eq!(
        d.query_json("/1.0/images/aliases/j")["target"],
        f.jammy.as_str()
    );
    d.lxc_ok(&["image", "copy", "ss:debian/12", "local:", "--copy-aliases"]);
    let aliases = d.lxc_ok(&["image", "alias", "list", "--format", "csv"]);
    for a in ["debian/12,", "debian/bookworm,", "debian/12/amd64,"] {
        assert!(aliases.contains(a), "{a}: {aliases}");
    }
    // Copying again with a taken alias is a conflict, and nothing is downloaded.
    let out = d.lxc(&["image", "copy", "ss:bionic", "local:", "--alias", "j"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    assert!(d.query_json("/1.0/images").as_array().unwrap().len() == 2);

    // A new version: refresh moves the alias and drops the old image.
    let jammy = product(
        "ubuntu:22.04:amd64:default",
        &["22.04", "jammy", "lts"],
        "Ubuntu",
        "jammy",
    );
    let v2 = f
        .tree
        .add(
            &jammy,
            "20240202_0000",
            &busybox_image_named("ubuntu-22.04-v2"),
            Layout::SplitTarXz,
        )
        .fingerprint;
    let mon = Monitor::start(&d);
    let out = d.lxc_ok(&["image", "refresh", "j"]);
    assert!(out.contains("Image refreshed successfully!"), "{out}");
    let events = mon.stop();
    assert!(events.contains("image-refreshed"), "{events}");
    assert!(events.contains("image-deleted"), "{events}");
    assert!(events.contains(&f.jammy), "{events}");
    assert_eq!(d.query_json("/1.0/images/aliases/j")["target"], v2.as_str());
    let (code, _) =
        lxd_tests::raw_request(&d.dir, "GET", &format!("/1.0/images/{}", f.jammy), None);
    assert_eq!(code, 404);
    let out = d.lxc_ok(&["image", "refresh", "j"]);
    assert!(out.contains("Image already up to date."), "{out}");
    // An image that came from no server cannot be refreshed.
    d.import_busybox("plain");
    let out = d.lxc(&["image", "refresh", "plain"]);
    assert!(!out.status.success());

    // The auto-update task: enabling it runs it at once.
    let v3 = f
        .tree
        .add(
            &jammy,
            "20240303_0000",
            &busybox_image_named("ubuntu-22.04-v3"),
            Layout::SplitTarXz,
        )
        .fingerprint;
    d.lxc_ok(&["config", "set", "images.auto_update_interval", "1"]);
    let show = d.lxc_ok(&["config", "show"]);
    assert!(
        show.contains("images.auto_update_interval: \"1\""),
        "{show}"
    );
    assert!(
        wait_until(Duration::from_secs(60), || {
            d.query_json("/1.0/images/aliases/j")["target"] == v3.as_str()
        }),
        "auto-update did not move the alias: {}",
        lxd_tests::tail(&d.log(), 30)
    );
    d.lxc_ok(&["config", "set", "images.auto_update_interval", "0"]);

    // Cache expiry: a cached image unused for longer than images.remote_cache_expiry days goes.
    let c = unique("ex");
    d.lxc_ok(&["launch", "ss:bionic", &c]);
    d.lxc_ok(&["delete", "-f", &c]);
    assert_eq!(image_json(&d, &f.bionic)["cached"], true);
    d.lxc_ok(&["config", "set", "images.remote_cache_expiry", "3"]);
    d.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    let db = d.dir.join("database/local.db");
    let st = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg(format!(
            "UPDATE images SET last_used_at = '2020-01-01T00:00:00Z' WHERE fingerprint = '{}'",
            f.bionic
        ))
        .status()
        .unwrap();
    assert!(st.success());
    d.start_again();
    assert!(
        wait_until(Duration::from_secs(30), || {
            lxd_tests::raw_request(&d.dir, "GET", &format!("/1.0/images/{}", f.bionic), None).0
                == 404
        }),
        "expired cached image was not removed"
    );
    // Explicitly copied images never expire.
    assert_eq!(image_json(&d, &v3)["cached"], false);
    assert!(!d.dir.join("images").join(&f.bionic).exists());
}

#[test]
fn simplestreams_bad_servers_leave_nothing_behind() {
    if !root_or_skip("simplestreams_bad_servers_leave_nothing_behind") {
        return;
    }
    let f = fixture();
    let d = TestDaemon::start_with_env(&f.ca.env());
    d.lxc_ok(&[
        "remote",
        "add",
        "ss",
        &f.server.url,
        "--protocol=simplestreams",
    ]);
    let nothing = |d: &TestDaemon| {
        assert!(d.query_json("/1.0/images").as_array().unwrap().is_empty());
        assert!(
            d.query_json("/1.0/instances")
                .as_array()
                .unwrap()
                .is_empty()
        );
        assert!(images_dir_clean(d));
    };
    let fail = |args: &[&str], want: &str| {
        let out = d.lxc(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = text(&out.stderr);
        eprintln!("ERR {args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    };

    // Unknown alias.
    fail(&["launch", "ss:nope/1", "x1"], "Failed instance creation");
    nothing(&d);

    // A truncated rootfs download.
    let sq = "/images/debian/bookworm/amd64/default/20240101_0000/root.squashfs";
    f.server.set_fault(sq, Some(Fault::Truncate(1000)));
    fail(&["launch", "ss:debian/12", "x2"], "Truncated download");
    nothing(&d);
    f.server.set_fault(sq, None);

    // A file that does not match its checksum (the daemon re-reads the index: fresh copy).
    let unified = f
        .tree
        .root
        .join("images/ubuntu/18.04/amd64/default/20240101_0000/lxd_combined.tar.gz");
    let good = std::fs::read(&unified).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    std::fs::write(&unified, &bad).unwrap();
    fail(&["image", "copy", "ss:bionic", "local:"], "Hash mismatch");
    nothing(&d);
    std::fs::write(&unified, &good).unwrap();

    // A server error.
    f.server.set_fault(sq, Some(Fault::Status(500)));
    fail(&["image", "copy", "ss:debian/12", "local:"], "500");
    nothing(&d);
    f.server.set_fault(sq, None);

    // An index that points outside the server (a second daemon: a fresh index cache).
    let dir2 = tempfile::tempdir().unwrap();
    let evil = StreamsTree::new(dir2.path());
    evil.write_raw(
        "streams/v1/index.json",
        r#"{"format":"index:1.0","index":{"images":{"datatype":"image-downloads","path":"../../etc/passwd","format":"products:1.0","products":["x"]}}}"#,
    );
    let evil_server = FileServer::start(dir2.path(), &f.ca);
    let out = d.lxc(&["image", "copy", &format!("{}:x", "evil"), "local:"]);
    assert!(!out.status.success());
    d.lxc_ok(&[
        "remote",
        "add",
        "evil",
        &evil_server.url,
        "--protocol=simplestreams",
    ]);
    fail(&["image", "copy", "evil:x", "local:"], "Invalid path");
    nothing(&d);
    assert!(evil_server.requests().iter().all(|r| !r.contains("passwd")));

    // A server whose certificate the daemon does not trust.
    let d2 = TestDaemon::start();
    d2.lxc_ok(&[
        "remote",
        "add",
        "ss",
        &f.server.url,
        "--protocol=simplestreams",
    ]);
    let body = format!(
        r#"{{"source":{{"type":"image","mode":"pull","server":"{}","protocol":"simplestreams","alias":"debian/12"}}}}"#,
        f.server.url
    );
    let (code, v) = lxd_tests::raw_request(&d2.dir, "POST", "/1.0/images", Some(&body));
    assert_eq!(code, 202, "{v}");
    let op = v["operation"].as_str().unwrap().to_string();
    let (_, done) = lxd_tests::raw_request(&d2.dir, "GET", &format!("{op}/wait?timeout=60"), None);
    assert_eq!(done["metadata"]["status"], "Failure", "{done}");
    let err = done["metadata"]["err"].as_str().unwrap();
    assert!(err.contains("certificate"), "{err}");
    nothing(&d2);
    // A plain http:// server is refused up front.
    let (code, v) = lxd_tests::raw_request(
        &d2.dir,
        "POST",
        "/1.0/images",
        Some(
            r#"{"source":{"type":"image","mode":"pull","server":"http://127.0.0.1:1","protocol":"simplestreams","alias":"x"}}"#,
        ),
    );
    assert_eq!(code, 400, "{v}");
}
