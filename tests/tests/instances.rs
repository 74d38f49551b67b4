//! Instance flows with a real busybox container on the dir pool, driven by the real LXD 5.0 client
//! (Debian's lxd-client) against our daemon: launch, list, exec (exit codes, stdin, pty), stop,
//! restart, rename, delete, privileged and unprivileged, and a daemon killed under running
//! containers.

use lxd_tests::{TestDaemon, raw_request, root_or_skip, text, unique, wait_until};
use std::time::Duration;

fn exec(d: &TestDaemon, name: &str, cmd: &[&str]) -> std::process::Output {
    let mut args = vec!["exec", name, "--"];
    args.extend_from_slice(cmd);
    d.real_lxc(&args)
}

fn status(d: &TestDaemon, name: &str) -> String {
    d.real_lxc_ok(&["list", name, "-c", "s", "--format", "csv"])
        .trim()
        .to_string()
}

#[test]
fn launch_exec_stop_delete_with_the_real_client() {
    if !root_or_skip("launch_exec_stop_delete_with_the_real_client") {
        return;
    }
    let d = TestDaemon::start();
    d.real_lxc_ok(&[
        "image",
        "import",
        lxd_tests::busybox_image().to_str().unwrap(),
        "--alias",
        "busybox",
    ]);
    let c = unique("c");
    d.real_lxc_ok(&["launch", "busybox", &c]);
    assert_eq!(status(&d, &c), "RUNNING");

    // Hostname is the instance name; root inside.
    let out = exec(&d, &c, &["hostname"]);
    assert_eq!(text(&out.stdout).trim(), c);
    let out = exec(&d, &c, &["id", "-u"]);
    assert_eq!(text(&out.stdout).trim(), "0");

    // Separate stdout and stderr; the exit status propagates.
    let out = exec(&d, &c, &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");
    let out = exec(&d, &c, &["/no/such/command"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let out = exec(&d, &c, &["/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    let out = exec(&d, &c, &["sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(137));

    // stdin is relayed (not a terminal here, so non-interactive).
    let mut child = std::process::Command::new("/usr/bin/lxc")
        .args(["exec", &c, "--", "cat"])
        .env("LXD_DIR", &d.dir)
        .env("HOME", "/tmp")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello through stdin\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout), "hello through stdin\n");

    // --env, --cwd, --user.
    let out = d.real_lxc(&[
        "exec",
        &c,
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--user",
        "1000",
        "--",
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u)",
    ]);
    assert_eq!(
        text(&out.stdout).trim(),
        "bar /tmp 1000",
        "{}",
        text(&out.stderr)
    );

    // Unprivileged by default: init runs as root's first subordinate uid on the host.
    let state = d.query_json(&format!("/1.0/instances/{c}/state"));
    let pid = state["pid"].as_i64().unwrap();
    assert!(pid > 1);
    let status_file = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let host_uid: u32 = status_file
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_ne!(
        host_uid, 0,
        "unprivileged container init must not be host root"
    );
    assert!(state["processes"].as_i64().unwrap() >= 1);
    assert!(state["memory"]["usage"].as_i64().unwrap() > 0);

    // Delete of a running instance is refused; stop, then delete.
    assert!(!d.real_lxc(&["delete", &c]).status.success());
    d.real_lxc_ok(&["stop", &c]);
    assert_eq!(status(&d, &c), "STOPPED");
    d.real_lxc_ok(&["start", &c]);
    assert_eq!(status(&d, &c), "RUNNING");
    d.real_lxc_ok(&["restart", &c]);
    assert_eq!(status(&d, &c), "RUNNING");
    d.real_lxc_ok(&["stop", "--force", &c]);
    let c2 = unique("r");
    d.real_lxc_ok(&["rename", &c, &c2]);
    d.real_lxc_ok(&["start", &c2]);
    assert_eq!(text(&exec(&d, &c2, &["hostname"]).stdout).trim(), c2);
    d.real_lxc_ok(&["delete", "--force", &c2]);
    assert!(
        d.real_lxc_ok(&["list", "--format", "csv"])
            .trim()
            .is_empty()
    );
    assert!(!d.dir.join("containers").join(&c2).exists());
}

#[test]
fn interactive_exec_gets_a_pty_inside_the_container() {
    if !root_or_skip("interactive_exec_gets_a_pty_inside_the_container") {
        return;
    }
    let d = TestDaemon::start();
    d.import_busybox_real("busybox");
    let c = unique("p");
    d.real_lxc_ok(&["launch", "busybox", &c]);
    // script(1) gives the client a terminal, so the exec is interactive.
    let cmd = format!("/usr/bin/lxc exec {c} -- sh -c 'tty; stty size; exit 4'");
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("LXD_DIR", &d.dir)
        .env("HOME", "/tmp")
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert!(s.contains("/dev/pts/"), "no pty inside: {s}");
    assert_eq!(out.status.code(), Some(4), "{s}");
    // Leaving the shell leaves the container running.
    assert_eq!(status(&d, &c), "RUNNING");
    d.real_lxc_ok(&["delete", "-f", &c]);
}

#[test]
fn privileged_container_runs_as_host_root() {
    if !root_or_skip("privileged_container_runs_as_host_root") {
        return;
    }
    let d = TestDaemon::start();
    d.import_busybox_real("busybox");
    let c = unique("v");
    d.real_lxc_ok(&["launch", "busybox", &c, "-c", "security.privileged=true"]);
    let out = exec(&d, &c, &["cat", "/proc/self/uid_map"]);
    assert!(
        text(&out.stdout).split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"],
        "{}",
        text(&out.stdout)
    );
    d.real_lxc_ok(&["delete", "-f", &c]);
}

#[test]
fn containers_survive_a_killed_daemon() {
    if !root_or_skip("containers_survive_a_killed_daemon") {
        return;
    }
    let mut d = TestDaemon::start();
    d.import_busybox_real("busybox");
    let c = unique("k");
    d.real_lxc_ok(&["launch", "busybox", &c]);
    let pid = d.query_json(&format!("/1.0/instances/{c}/state"))["pid"]
        .as_i64()
        .unwrap();
    d.kill_daemon(nix::sys::signal::Signal::SIGKILL);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "init died with the daemon"
    );
    d.start_again();
    assert_eq!(status(&d, &c), "RUNNING");
    assert_eq!(text(&exec(&d, &c, &["hostname"]).stdout).trim(), c);
    d.real_lxc_ok(&["stop", &c]);
    assert!(wait_until(Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }));
    d.real_lxc_ok(&["delete", &c]);
}

#[test]
fn bad_instance_requests() {
    if !root_or_skip("bad_instance_requests") {
        return;
    }
    let d = TestDaemon::start();
    d.import_busybox_real("busybox");
    let c = unique("b");
    d.real_lxc_ok(&["init", "busybox", &c]);
    // Duplicate name.
    let (code, _) = raw_request(
        &d.dir,
        "POST",
        "/1.0/instances",
        Some(&format!(
            r#"{{"name":"{c}","source":{{"type":"image","alias":"busybox"}}}}"#
        )),
    );
    assert_eq!(code, 409);
    // Invalid names (LXD's hostname rules).
    for bad in ["1abc", "-x", "a_b", "with space", "x-"] {
        let body = format!(r#"{{"name":"{bad}","source":{{"type":"image","alias":"busybox"}}}}"#);
        let (code, v) = raw_request(&d.dir, "POST", "/1.0/instances", Some(&body));
        assert_eq!(code, 400, "{bad}: {v}");
    }
    // Unknown image and alias.
    let (code, _) = raw_request(
        &d.dir,
        "POST",
        "/1.0/instances",
        Some(r#"{"name":"zz","source":{"type":"image","alias":"nope"}}"#),
    );
    assert_eq!(code, 404);
    let (code, _) = raw_request(
        &d.dir,
        "POST",
        "/1.0/instances",
        Some(r#"{"name":"zz","source":{"type":"image","fingerprint":"abcdef"}}"#),
    );
    assert_eq!(code, 404);
    // Unknown config key and bad value.
    let (code, _) = raw_request(
        &d.dir,
        "POST",
        "/1.0/instances",
        Some(r#"{"name":"zz","config":{"bogus.key":"1"},"source":{"type":"none"}}"#),
    );
    assert_eq!(code, 400);
    assert!(
        !d.real_lxc(&["config", "set", &c, "limits.memory", "lots"])
            .status
            .success()
    );
    assert!(
        !d.real_lxc(&["config", "set", &c, "no.such.key", "1"])
            .status
            .success()
    );
    // Exec into a stopped instance.
    assert!(!exec(&d, &c, &["true"]).status.success());
    // Stopping a stopped instance.
    assert!(!d.real_lxc(&["stop", &c]).status.success());
    d.real_lxc_ok(&["delete", &c]);
}

#[test]
fn exec_forwards_signals_and_window_resizes() {
    if !root_or_skip("exec_forwards_signals_and_window_resizes") {
        return;
    }
    let d = TestDaemon::start();
    d.import_busybox_real("busybox");
    let c = unique("s");
    d.real_lxc_ok(&["launch", "busybox", &c]);

    // SIGTERM to the client is forwarded to the command over the control socket.
    let mut child = std::process::Command::new("/usr/bin/lxc")
        .args([
            "exec",
            &c,
            "--",
            "sh",
            "-c",
            "trap 'exit 7' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .env("LXD_DIR", &d.dir)
        .env("HOME", "/tmp")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(7));

    // The initial terminal size is used, and a resize reaches the pty inside.
    let cmd = format!(
        "stty cols 100 rows 30; (sleep 1; stty cols 120 rows 40 </dev/tty) & /usr/bin/lxc exec {c} -- sh -c 'stty size; sleep 2; stty size'"
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("LXD_DIR", &d.dir)
        .env("HOME", "/tmp")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let s = text(&out.stdout);
    assert!(
        s.contains("30 100") && s.contains("40 120"),
        "sizes seen inside: {s:?}"
    );
    d.real_lxc_ok(&["delete", "-f", &c]);
}
