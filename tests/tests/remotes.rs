//! LXD servers over HTTPS on loopback: the listener following `core.https_address` live, the
//! server certificate, the trust store with tokens and the trust password (our client and the
//! real LXD 5.0 client), pinned certificates, what untrusted clients may see (public images,
//! private ones by secret, 403 elsewhere), image copy and launch between two of our daemons,
//! publish, and both directions with a real LXD 5.0.

use lxd_tests::real::RealLxd;
use lxd_tests::streams::free_port;
use lxd_tests::{
    TestDaemon, busybox_image, busybox_image_named, raw_request, root_or_skip, text, unique,
};
use std::process::Command;

fn listen(d: &TestDaemon) -> (u16, String) {
    let port = free_port();
    d.lxc_ok(&[
        "config",
        "set",
        "core.https_address",
        &format!("127.0.0.1:{port}"),
    ]);
    (port, format!("https://127.0.0.1:{port}"))
}

fn can_connect(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A throwaway client certificate for raw HTTPS requests with curl.
fn curl_identity(dir: &std::path::Path) -> (String, String) {
    let (c, k) = (dir.join("c.pem"), dir.join("k.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=probe", "-keyout"])
        .arg(&k)
        .arg("-out")
        .arg(&c)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    (c.to_string_lossy().into(), k.to_string_lossy().into())
}

/// `curl -k` with a client certificate: (HTTP status, body).
fn curl(ident: &(String, String), method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sk", "-o", "-", "-w", "\n%{http_code}", "-X", method])
        .args(["--cert", &ident.0, "--key", &ident.1, url]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
    }
    let out = c.output().unwrap();
    let t = text(&out.stdout);
    let (body, code) = t.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn https_listener_trust_tokens_password_and_pinning() {
    if !root_or_skip("https_listener_trust_tokens_password_and_pinning") {
        return;
    }
    let mut a = TestDaemon::start();
    let b = TestDaemon::start();
    assert!(a.dir.join("server.crt").exists() && a.dir.join("server.key").exists());
    let (port, url) = listen(&a);
    let srv = a.query_json("/1.0");
    let env = &srv["environment"];
    assert!(
        env["certificate"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );
    assert_eq!(env["certificate_fingerprint"].as_str().unwrap().len(), 64);
    assert_eq!(env["addresses"][0], format!("127.0.0.1:{port}"));

    // Untrusted clients see the public subset and get 403 elsewhere.
    let tmp = tempfile::tempdir().unwrap();
    let ident = curl_identity(tmp.path());
    let (code, body) = curl(&ident, "GET", &format!("{url}/1.0"), None);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["metadata"]["auth"], "untrusted");
    assert!(v["metadata"].get("environment").is_none(), "{body}");
    for (m, p) in [
        ("GET", "/1.0/instances"),
        ("GET", "/1.0/certificates"),
        ("PUT", "/1.0"),
        ("GET", "/1.0/events"),
        ("POST", "/1.0/images/abc/secret"),
    ] {
        let (code, body) = curl(&ident, m, &format!("{url}{p}"), Some("{}"));
        assert_eq!(code, 403, "{m} {p}: {body}");
        assert!(body.contains("not authorized"), "{body}");
    }
    let (code, _) = curl(
        &ident,
        "POST",
        &format!("{url}/1.0/certificates"),
        Some(r#"{"type":"client","password":"nope"}"#),
    );
    assert_eq!(code, 403);

    // A trust token for our client.
    let out = a.lxc_ok(&["config", "trust", "add", "--name", "bee"]);
    assert!(
        out.starts_with("Client bee certificate add token:"),
        "{out}"
    );
    let token = out.lines().nth(1).unwrap().trim().to_string();
    let tokens = a.lxc_ok(&["config", "trust", "list-tokens", "--format", "csv"]);
    assert!(tokens.contains("bee,"), "{tokens}");
    let out = b.lxc_ok(&["remote", "add", "a", &token]);
    let _ = out;
    b.lxc_ok(&["list", "a:"]);
    let trust = a.lxc_ok(&["config", "trust", "list", "--format", "csv"]);
    assert!(trust.contains("client,bee,"), "{trust}");
    // Tokens are single use; a forged one is refused; nothing is kept of a failed add.
    let out = b.real_lxc(&["remote", "add", "again", &token]);
    assert!(!out.status.success());
    let forged = {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&token)
            .unwrap();
        let mut t: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        t["secret"] = "00".repeat(32).into();
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&t).unwrap())
    };
    // (b's own client is trusted already, so an untrusted client tries it: the real one.)
    let out = b.real_lxc(&["remote", "add", "forged", &forged]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("No matching certificate add operation found"),
        "{}",
        text(&out.stderr)
    );
    assert!(!b.real_lxc_ok(&["remote", "list"]).contains("forged"));
    let a2 = TestDaemon::start();
    let (_, url_a2) = listen(&a2);
    let tok2 = a2.lxc_ok(&["config", "trust", "add", "--name", "x"]);
    let tok2 = tok2.lines().nth(1).unwrap().trim().to_string();
    let forged2 = {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&tok2)
            .unwrap();
        let mut t: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        t["secret"] = "11".repeat(32).into();
        base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&t).unwrap())
    };
    // The real client's token flow: `config trust add --name` and `remote add NAME TOKEN`.
    let out = a.real_lxc_ok(&["config", "trust", "add", "--name", "realtok"]);
    let real_token = out.lines().nth(1).unwrap().trim().to_string();
    a2.real_lxc_ok(&["remote", "add", "viatoken", &real_token]);
    a2.real_lxc_ok(&["list", "viatoken:"]);
    let trust = a.real_lxc_ok(&["config", "trust", "list", "--format", "csv"]);
    assert!(trust.contains("client,realtok,"), "{trust}");
    let out = b.lxc(&["remote", "add", "forged", &forged2]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("No matching certificate add operation found"),
        "{err}"
    );
    assert!(!b.lxc_ok(&["remote", "list"]).contains("forged"));
    assert!(!b.lxc_ok(&["remote", "list"]).contains(&url_a2));

    // The trust password, with our client and the real one; a wrong one changes nothing.
    a.lxc_ok(&["config", "set", "core.trust_password", "sekret"]);
    assert_eq!(
        a.lxc_ok(&["config", "get", "core.trust_password"]).trim(),
        "true"
    );
    let db_value = Command::new("sqlite3")
        .arg(a.dir.join("database/local.db"))
        .arg("SELECT value FROM config WHERE key = 'core.trust_password'")
        .output()
        .unwrap();
    assert!(!text(&db_value.stdout).contains("sekret"), "stored hashed");
    let out = b.real_lxc(&[
        "remote",
        "add",
        "ra",
        &url,
        "--accept-certificate",
        "--password",
        "wrong",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not authorized"),
        "{}",
        text(&out.stderr)
    );
    let out = b.real_lxc_ok(&[
        "remote",
        "add",
        "ra",
        &url,
        "--accept-certificate",
        "--password",
        "sekret",
    ]);
    assert!(
        out.contains("Client certificate now trusted by server: ra"),
        "{out}"
    );
    b.real_lxc_ok(&["list", "ra:"]);
    // bee, realtok (the token added above) and b's client.
    let trust = b.real_lxc_ok(&["config", "trust", "list", "ra:", "--format", "csv"]);
    assert_eq!(trust.lines().count(), 3, "{trust}");
    // Setting another key keeps the password (the client echoes "true" back).
    a.lxc_ok(&["config", "set", "images.auto_update_interval", "0"]);
    // (a2's client has not been trusted by a yet.)
    let out = a2.lxc_ok(&[
        "remote",
        "add",
        "pw",
        &url,
        "--accept-certificate",
        "--password",
        "sekret",
    ]);
    assert!(
        out.contains("Client certificate now trusted by server: pw"),
        "{out}"
    );
    // Remove a client: it is untrusted again.
    let fp = trust.lines().find(|l| l.contains("bee")).unwrap();
    let fp = fp.split(',').nth(3).unwrap();
    a.lxc_ok(&["config", "trust", "remove", fp]);
    let out = b.lxc(&["list", "a:"]);
    assert!(!out.status.success());

    // The listener follows core.https_address live.
    let port2 = free_port();
    a.lxc_ok(&[
        "config",
        "set",
        "core.https_address",
        &format!("127.0.0.1:{port2}"),
    ]);
    assert!(!can_connect(port) && can_connect(port2));
    a.lxc_ok(&["config", "unset", "core.https_address"]);
    assert!(!can_connect(port2));
    let out = a.lxc(&["config", "set", "core.https_address", "256.1.1.1:1"]);
    assert!(!out.status.success());
    assert!(
        a.lxc_ok(&["config", "get", "core.https_address"])
            .trim()
            .is_empty()
    );

    // A server whose certificate changed is refused by the pinning client.
    a.lxc_ok(&[
        "config",
        "set",
        "core.https_address",
        &format!("127.0.0.1:{port2}"),
    ]);
    let url2 = format!("https://127.0.0.1:{port2}");
    b.lxc_ok(&[
        "remote",
        "add",
        "pinned",
        &url2,
        "--accept-certificate",
        "--password",
        "sekret",
    ]);
    b.lxc_ok(&["list", "pinned:"]);
    a.kill_daemon(nix::sys::signal::Signal::SIGTERM);
    std::fs::remove_file(a.dir.join("server.crt")).unwrap();
    std::fs::remove_file(a.dir.join("server.key")).unwrap();
    a.start_again();
    let out = b.lxc(&["list", "pinned:"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("certificate changed"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = b.real_lxc(&["list", "ra:"]);
    assert!(!out.status.success());
}

#[test]
fn image_copy_launch_and_publish_between_two_daemons() {
    if !root_or_skip("image_copy_launch_and_publish_between_two_daemons") {
        return;
    }
    let a = TestDaemon::start();
    let b = TestDaemon::start();
    let (_, url) = listen(&a);
    a.lxc_ok(&["config", "set", "core.trust_password", "sekret"]);
    a.import_busybox("bb");
    let pub_img = busybox_image_named("public-bb");
    a.lxc_ok(&[
        "image",
        "import",
        pub_img.to_str().unwrap(),
        "--alias",
        "pubbb",
        "--public",
    ]);
    let bb_fp = a.query_json("/1.0/images/aliases/bb")["target"]
        .as_str()
        .unwrap()
        .to_string();
    let pub_fp = a.query_json("/1.0/images/aliases/pubbb")["target"]
        .as_str()
        .unwrap()
        .to_string();

    // Untrusted: public images only; a private one by secret.
    let tmp = tempfile::tempdir().unwrap();
    let ident = curl_identity(tmp.path());
    let (_, body) = curl(&ident, "GET", &format!("{url}/1.0/images"), None);
    assert!(body.contains(&pub_fp) && !body.contains(&bb_fp), "{body}");
    let (code, _) = curl(&ident, "GET", &format!("{url}/1.0/images/{bb_fp}"), None);
    assert_eq!(code, 404);
    let (code, _) = curl(&ident, "GET", &format!("{url}/1.0/images/aliases/bb"), None);
    assert_eq!(code, 404);
    let (code, _) = curl(
        &ident,
        "GET",
        &format!("{url}/1.0/images/aliases/pubbb"),
        None,
    );
    assert_eq!(code, 200);
    let (code, _) = curl(
        &ident,
        "GET",
        &format!("{url}/1.0/images/{pub_fp}/export"),
        None,
    );
    assert_eq!(code, 200);
    let (code, v) = raw_request(&a.dir, "POST", &format!("/1.0/images/{bb_fp}/secret"), None);
    assert_eq!(code, 202, "{v}");
    let secret = v["metadata"]["metadata"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _) = curl(
        &ident,
        "GET",
        &format!("{url}/1.0/images/{bb_fp}?secret={secret}"),
        None,
    );
    assert_eq!(code, 200);
    let (code, _) = curl(
        &ident,
        "GET",
        &format!("{url}/1.0/images/{bb_fp}?secret=wrong"),
        None,
    );
    assert_eq!(code, 404);

    // A public remote lists public images only.
    b.lxc_ok(&[
        "remote",
        "add",
        "apub",
        &url,
        "--public",
        "--accept-certificate",
    ]);
    let list = b.lxc_ok(&["image", "list", "apub:", "--format", "csv", "-c", "F"]);
    assert!(list.contains(&pub_fp) && !list.contains(&bb_fp), "{list}");

    // A trusted remote: copy a private image (secret) and launch from a public one.
    b.lxc_ok(&[
        "remote",
        "add",
        "a",
        &url,
        "--accept-certificate",
        "--password",
        "sekret",
    ]);
    let list = b.lxc_ok(&["image", "list", "a:", "--format", "csv", "-c", "F"]);
    assert!(list.contains(&pub_fp) && list.contains(&bb_fp), "{list}");
    let out = b.lxc_ok(&[
        "image",
        "copy",
        "a:bb",
        "local:",
        "--alias",
        "bbcopy",
        "--copy-aliases",
    ]);
    assert!(out.contains("Image copied successfully!"), "{out}");
    let img = b.query_json("/1.0/images/aliases/bbcopy");
    assert_eq!(img["target"], bb_fp.as_str());
    assert_eq!(
        b.query_json("/1.0/images/aliases/bb")["target"],
        bb_fp.as_str()
    );
    let img = b.query_json(&format!("/1.0/images/{bb_fp}"));
    assert_eq!(img["update_source"]["protocol"], "lxd");
    assert_eq!(img["cached"], false);
    // Instances on the remote itself, over HTTPS: launch (events over wss), exec, list.
    let ca1 = unique("ra");
    b.lxc_ok(&["launch", "a:bb", &format!("a:{ca1}")]);
    assert_eq!(
        b.lxc_ok(&["exec", &format!("a:{ca1}"), "--", "hostname"])
            .trim(),
        ca1
    );
    assert!(b.lxc_ok(&["list", "a:", "--format", "csv"]).contains(&ca1));
    b.lxc_ok(&["delete", "-f", &format!("a:{ca1}")]);

    let c1 = unique("rc");
    b.lxc_ok(&["launch", "a:pubbb", &c1]);
    assert_eq!(b.lxc_ok(&["exec", &c1, "--", "hostname"]).trim(), c1);
    let img = b.query_json(&format!("/1.0/images/{pub_fp}"));
    assert_eq!(img["cached"], true);
    assert_eq!(img["update_source"]["alias"], "pubbb");
    // The real client launches from our remote too (private image: a secret).
    b.real_lxc_ok(&[
        "remote",
        "add",
        "a",
        &url,
        "--accept-certificate",
        "--password",
        "sekret",
    ]);
    b.lxc_ok(&["image", "delete", "bbcopy"]);
    let c2 = unique("rc");
    b.real_lxc_ok(&["launch", "a:bb", &c2]);
    assert!(b.query_json(&format!("/1.0/images/{bb_fp}"))["cached"] == true);

    // Publish on b, then pull the published image back into a.
    b.lxc_ok(&["exec", &c1, "--", "sh", "-c", "echo published > /root/mark"]);
    let out = b.lxc(&["publish", &c1, "--alias", "mine"]);
    assert!(!out.status.success(), "running instance needs --force");
    let out = b.lxc_ok(&["publish", &c1, "--alias", "mine", "--force", "note=yes"]);
    assert!(
        out.contains("Instance published with fingerprint: "),
        "{out}"
    );
    let mine = b.query_json("/1.0/images/aliases/mine")["target"]
        .as_str()
        .unwrap()
        .to_string();
    let img = b.query_json(&format!("/1.0/images/{mine}"));
    assert_eq!(img["properties"]["note"], "yes");
    assert_eq!(
        b.query_json(&format!("/1.0/instances/{c1}"))["status"],
        "Running"
    );
    b.lxc_ok(&["snapshot", &c1, "s1"]);
    b.lxc_ok(&["config", "set", "images.compression_algorithm", "xz"]);
    let out = b.real_lxc_ok(&["publish", &format!("{c1}/s1"), "--alias", "fromsnap"]);
    assert!(out.contains("fingerprint"), "{out}");
    let exp = tmp.path().join("exp");
    std::fs::create_dir_all(&exp).unwrap();
    b.lxc_ok(&["image", "export", "fromsnap", exp.to_str().unwrap()]);
    let names: Vec<String> = std::fs::read_dir(&exp)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.len() == 1 && names[0].ends_with(".tar.xz"),
        "published with images.compression_algorithm=xz: {names:?}"
    );
    let (_, url_b) = listen(&b);
    b.lxc_ok(&["config", "set", "core.trust_password", "sekret2"]);
    a.lxc_ok(&[
        "remote",
        "add",
        "b",
        &url_b,
        "--accept-certificate",
        "--password",
        "sekret2",
    ]);
    let c3 = unique("rc");
    a.lxc_ok(&["launch", "b:mine", &c3]);
    assert_eq!(
        a.lxc_ok(&["exec", &c3, "--", "cat", "/root/mark"]).trim(),
        "published"
    );
    // Ownership survived publish (files of an unprivileged container map back to root).
    let owner = a.lxc_ok(&["exec", &c3, "--", "stat", "-c", "%u:%g", "/root/mark"]);
    assert_eq!(owner.trim(), "0:0");

    for (d, c) in [(&b, &c1), (&b, &c2), (&a, &c3)] {
        d.lxc_ok(&["delete", "-f", c]);
    }
}

#[test]
fn interop_with_a_real_lxd_both_ways() {
    if !root_or_skip("interop_with_a_real_lxd_both_ways") {
        return;
    }
    if !lxd_tests::real::available() {
        eprintln!(
            "\n*** SKIPPED interop_with_a_real_lxd_both_ways: Debian's lxd is not installed ***\n"
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
    let img = busybox_image();
    real.lxc_ok(&["image", "import", img.to_str().unwrap(), "--alias", "rbb"]);
    let real_url = format!("https://127.0.0.1:{rport}");

    // Ours pulls from the real LXD (private image: our client asks the real one for a secret).
    let ours = TestDaemon::start();
    ours.lxc_ok(&[
        "remote",
        "add",
        "real",
        &real_url,
        "--accept-certificate",
        "--password",
        "sekret",
    ]);
    let list = ours.lxc_ok(&["image", "list", "real:", "--format", "csv"]);
    assert!(list.contains("rbb"), "{list}");
    ours.lxc_ok(&["image", "copy", "real:rbb", "local:", "--alias", "fromreal"]);
    let fp = ours.query_json("/1.0/images/aliases/fromreal")["target"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(fp.len(), 64);
    let c = unique("ri");
    ours.lxc_ok(&["launch", "real:rbb", &c]);
    assert_eq!(ours.lxc_ok(&["exec", &c, "--", "hostname"]).trim(), c);
    ours.lxc_ok(&["delete", "-f", &c]);

    // The real LXD pulls from ours, with its server certificate as an untrusted client and
    // the secret its client got from us.
    let (_, ours_url) = listen(&ours);
    ours.lxc_ok(&["config", "set", "core.trust_password", "sekret"]);
    let own = busybox_image_named("ours-bb");
    ours.lxc_ok(&["image", "import", own.to_str().unwrap(), "--alias", "obb"]);
    let own_fp = ours.query_json("/1.0/images/aliases/obb")["target"]
        .as_str()
        .unwrap()
        .to_string();
    let out = real.lxc_ok(&[
        "remote",
        "add",
        "ours",
        &ours_url,
        "--accept-certificate",
        "--password",
        "sekret",
    ]);
    assert!(out.contains("trusted"), "{out}");
    let list = real.lxc_ok(&["image", "list", "ours:", "--format", "csv"]);
    assert!(list.contains("obb"), "{list}");
    real.lxc_ok(&["image", "copy", "ours:obb", "local:", "--alias", "fromours"]);
    let info = real.lxc_ok(&["image", "info", "fromours"]);
    assert!(info.contains(&own_fp), "{info}");
    // The real LXD launches from our server (it pulls again: the real daemon's cache is per
    // source, and the image is private, so its client fetches a new secret).
    real.lxc_ok(&["image", "delete", "fromours"]);
    let rc = unique("rl");
    real.lxc_ok(&["launch", "ours:obb", &rc]);
    let host = real.lxc_ok(&["exec", &rc, "--", "hostname"]);
    assert_eq!(host.trim(), rc);
    real.lxc_ok(&["delete", "-f", &rc]);
}
