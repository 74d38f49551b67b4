//! Networking with real bridges, veths, dnsmasq and nftables, driven by the real LXD 5.0 client:
//! managed bridges (leases, DNS between containers, static leases across restarts, NAT rules),
//! the `lxc network` verbs, a NIC on an unmanaged host bridge served by a "physical" network in
//! its own namespace, proxy devices and network forwards reached from a client namespace, IPv6
//! (SLAAC, ra-names, ip6 NAT, stateful DHCPv6 config), and bad input. All traffic stays between
//! namespaces, veths and bridges these tests make; every name is unique to the test process and
//! everything is removed even when a test fails.

use lxd_tests::{TestDaemon, raw_request, root_or_skip, text, unique, wait_until};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static N: AtomicU32 = AtomicU32::new(0);

/// A host interface or namespace name unique to this process (at most 15 characters).
fn ifname(tag: &str) -> String {
    let n = N.fetch_add(1, Ordering::SeqCst);
    let name = format!("lxt{}{tag}{n}", std::process::id() % 1000);
    assert!(name.len() <= 15, "{name}");
    name
}

/// A /24 in 172.31.0.0/16 unique to this process and call (never routed beyond the machine:
/// it only exists on the test's own veths and namespaces).
fn subnet() -> u8 {
    let n = N.fetch_add(1, Ordering::SeqCst);
    ((std::process::id() % 50) * 5 + n % 5) as u8
}

fn sh(cmd: &str) -> std::process::Output {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("run sh")
}

fn sh_ok(cmd: &str) -> String {
    let out = sh(cmd);
    assert!(
        out.status.success(),
        "{cmd} failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Host-side things a test made outside the daemon: namespaces, links, processes. Removed on
/// drop, also when the test panics.
#[derive(Default)]
struct HostThings {
    netns: Vec<String>,
    links: Vec<String>,
    children: Vec<std::process::Child>,
}

impl Drop for HostThings {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for l in &self.links {
            let _ = sh(&format!("ip link del dev {l} 2>/dev/null"));
        }
        for n in &self.netns {
            let _ = sh(&format!("ip netns del {n} 2>/dev/null"));
        }
    }
}

impl HostThings {
    /// A client namespace joined to the host by a veth: host end `HOST.1/30`, client `HOST.2`.
    fn client_netns(&mut self, net: u8) -> (String, String) {
        let ns = ifname("n");
        let host_end = ifname("h");
        let peer = ifname("p");
        self.netns.push(ns.clone());
        self.links.push(host_end.clone());
        sh_ok(&format!(
            "ip netns add {ns} && ip link add {host_end} type veth peer name {peer} && \
             ip link set {peer} netns {ns} && ip addr add 172.31.{net}.1/30 dev {host_end} && \
             ip link set {host_end} up && ip -n {ns} addr add 172.31.{net}.2/30 dev {peer} && \
             ip -n {ns} link set {peer} up && ip -n {ns} link set lo up"
        ));
        (ns, format!("172.31.{net}.1"))
    }
}

/// A daemon initialised with its own bridge (`lxd init --auto --network-bridge NAME`).
fn daemon_with_bridge() -> (TestDaemon, String) {
    let d = TestDaemon::start_uninitialised();
    let br = ifname("b");
    let out = d.lxd(&["init", "--auto", "--network-bridge", &br]);
    assert!(out.status.success(), "lxd init: {}", text(&out.stderr));
    d.import_busybox_real("busybox");
    (d, br)
}

fn ipv4(d: &TestDaemon, c: &str) -> Option<String> {
    let st = d.query_json(&format!("/1.0/instances/{c}/state"));
    st["network"]["eth0"]["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["family"] == "inet" && a["scope"] == "global")
        .and_then(|a| a["address"].as_str().map(str::to_string))
}

fn wait_ipv4(d: &TestDaemon, c: &str) -> String {
    let mut ip = None;
    let ok = wait_until(Duration::from_secs(15), || {
        ip = ipv4(d, c);
        ip.is_some()
    });
    if !ok {
        let st = d.query_json(&format!("/1.0/instances/{c}/state"));
        let mut dns = String::new();
        for e in std::fs::read_dir(d.dir.join("networks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            dns += &std::fs::read_to_string(e.path().join("dnsmasq.log")).unwrap_or_default();
        }
        panic!(
            "{c} got no IPv4 lease\nstate: {}\ndnsmasq: {dns}\n{}",
            st["network"],
            lxd_tests::tail(&d.log(), 20)
        );
    }
    ip.unwrap()
}

fn exec(d: &TestDaemon, c: &str, cmd: &str) -> std::process::Output {
    d.real_lxc(&["exec", c, "--", "sh", "-c", cmd])
}

fn chains(table_json: &serde_json::Value) -> Vec<String> {
    table_json["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o["chain"]["name"].as_str().map(str::to_string))
        .collect()
}

fn our_table() -> serde_json::Value {
    let out = sh("nft -j list table inet lxdrs");
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[test]
fn managed_bridge_leases_dns_static_lease_and_nat_rules() {
    if !root_or_skip("managed_bridge_leases_dns_static_lease_and_nat_rules") {
        return;
    }
    let (mut d, br) = daemon_with_bridge();
    // Instance names are unique per process: cgroup names are host-wide.
    let (c1, c2) = (unique("c"), unique("c"));
    let net = d.query_json(&format!("/1.0/networks/{br}"));
    assert_eq!(net["managed"], true);
    assert_eq!(net["config"]["ipv4.nat"], "true");
    let gw = net["config"]["ipv4.address"].as_str().unwrap().to_string();
    assert!(gw.starts_with("10.") && gw.ends_with(".1/24"), "{gw}");
    let prefix = gw.trim_end_matches("1/24").to_string();
    let profile = d.query_json("/1.0/profiles/default");
    assert_eq!(profile["devices"]["eth0"]["network"], br.as_str());

    d.real_lxc_ok(&["launch", "busybox", c1.as_str()]);
    d.real_lxc_ok(&["launch", "busybox", c2.as_str()]);
    let ip1 = wait_ipv4(&d, c1.as_str());
    let ip2 = wait_ipv4(&d, c2.as_str());
    assert!(
        ip1.starts_with(&prefix) && ip2.starts_with(&prefix),
        "{ip1} {ip2}"
    );
    let list = d.real_lxc_ok(&["list", "-c", "n4", "--format", "csv"]);
    assert!(list.contains(&format!("{ip1} (eth0)")), "{list}");

    // Volatile keys: a stable MAC and the host end of the veth, attached to our bridge.
    let inst1 = d.query_json(&format!("/1.0/instances/{c1}"));
    let host = inst1["config"]["volatile.eth0.host_name"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(host.starts_with("veth"), "{host}");
    let master = std::fs::read_link(format!("/sys/class/net/{host}/master")).unwrap();
    assert!(master.ends_with(&br));
    let info = d.real_lxc_ok(&["info", c1.as_str()]);
    assert!(info.contains(&format!("Host interface: {host}")), "{info}");

    // Names resolve on the bridge's dnsmasq, and the containers reach each other by name.
    let out = exec(&d, c1.as_str(), &format!("nslookup {c2}.lxd"));
    assert!(text(&out.stdout).contains(&ip2), "{}", text(&out.stdout));
    let out = exec(&d, c1.as_str(), &format!("ping -c 1 -W 3 {c2}.lxd"));
    assert!(out.status.success(), "{}", text(&out.stdout));
    let out = exec(&d, c2.as_str(), &format!("ping -c 1 -W 3 {c1}"));
    assert!(out.status.success(), "{}", text(&out.stdout));
    let leases = d.real_lxc_ok(&["network", "list-leases", &br]);
    assert!(
        leases.contains(c1.as_str()) && leases.contains(&ip1),
        "{leases}"
    );
    assert!(leases.contains("GATEWAY"), "{leases}");

    // NAT rules are in our table, well formed, and never in LXD's.
    let t = our_table();
    let ch = chains(&t);
    for want in ["pstrt", "fwd", "in", "out"] {
        assert!(ch.contains(&format!("{want}.{br}")), "{ch:?}");
    }
    let rules = serde_json::to_string(&t).unwrap();
    assert!(rules.contains("masquerade"), "{rules}");
    assert!(rules.contains(&gw.replace("1/24", "0")), "{rules}");

    // A static lease holds across container and daemon restarts.
    let fixed = format!("{prefix}77");
    d.real_lxc_ok(&[
        "config",
        "device",
        "override",
        c2.as_str(),
        "eth0",
        &format!("ipv4.address={fixed}"),
    ]);
    d.real_lxc_ok(&["restart", c2.as_str(), "--force"]);
    assert!(wait_until(Duration::from_secs(15), || ipv4(
        &d,
        c2.as_str()
    )
    .as_deref()
        == Some(fixed.as_str())));
    let leases = d.real_lxc_ok(&["network", "list-leases", &br, "--format", "csv"]);
    assert!(leases.contains(&format!("{fixed},STATIC")), "{leases}");
    d.restart();
    // The bridge, dnsmasq and the rules are back.
    assert!(chains(&our_table()).contains(&format!("pstrt.{br}")));
    d.real_lxc_ok(&["restart", c2.as_str(), "--force"]);
    assert!(wait_until(Duration::from_secs(15), || ipv4(
        &d,
        c2.as_str()
    )
    .as_deref()
        == Some(fixed.as_str())));
    let out = exec(&d, c1.as_str(), &format!("ping -c 1 -W 3 {fixed}"));
    assert!(out.status.success(), "{}", text(&out.stdout));

    // Shutdown stops the network: no bridge, no dnsmasq, no chain of ours is left.
    d.real_lxc_ok(&["delete", "-f", c1.as_str(), c2.as_str()]);
    // SIGPWR is `lxd shutdown`; kill_daemon waits for the process to exit.
    d.kill_daemon(nix::sys::signal::Signal::SIGPWR);
    assert!(wait_until(Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/sys/class/net/{br}")).exists()
    }));
    assert!(
        !chains(&our_table())
            .iter()
            .any(|c| c.ends_with(&format!(".{br}")))
    );
    assert!(!sh_ok("ps -eo args").contains(&format!("--interface={br} ")));
    // Started again, the bridge is recreated (as after a host reboot).
    d.start_again();
    assert!(std::path::Path::new(&format!("/sys/class/net/{br}")).exists());
}

#[test]
fn network_verbs_bad_input_and_delete_leaves_nothing() {
    if !root_or_skip("network_verbs_bad_input_and_delete_leaves_nothing") {
        return;
    }
    let (d, br) = daemon_with_bridge();
    let mut host = HostThings::default();
    let c1 = unique("c");
    let n = ifname("m");
    d.real_lxc_ok(&[
        "network",
        "create",
        &n,
        "ipv4.address=auto",
        "dns.domain=test",
    ]);
    let list = d.real_lxc_ok(&["network", "list", "--format", "csv"]);
    assert!(list.contains(&format!("{n},bridge,YES")), "{list}");
    // Host interfaces are listed too, unmanaged.
    assert!(list.contains(",NO,"), "{list}");
    d.real_lxc_ok(&["network", "set", &n, "bridge.mtu", "1400"]);
    assert_eq!(
        d.real_lxc_ok(&["network", "get", &n, "bridge.mtu"]).trim(),
        "1400"
    );
    assert_eq!(
        std::fs::read_to_string(format!("/sys/class/net/{n}/mtu"))
            .unwrap()
            .trim(),
        "1400"
    );
    d.real_lxc_ok(&["network", "unset", &n, "bridge.mtu"]);
    let show = d.real_lxc_ok(&["network", "show", &n]);
    assert!(
        !show.contains("bridge.mtu") && show.contains("dns.domain: test"),
        "{show}"
    );
    let info = d.real_lxc_ok(&["network", "info", &n]);
    assert!(
        info.contains("State: up") && info.contains("inet"),
        "{info}"
    );

    // edit: YAML on stdin.
    let yaml = show.replace("dns.domain: test", "dns.domain: edited");
    let mut child = Command::new("/usr/bin/lxc")
        .args(["network", "edit", &n])
        .env("LXD_DIR", &d.dir)
        .env("HOME", "/tmp")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let conf = d.query_json(&format!("/1.0/networks/{n}"));
    assert_eq!(conf["config"]["dns.domain"], "edited");
    assert!(sh_ok("ps -eo args").contains("-s edited"));

    // rename.
    let n2 = ifname("r");
    d.real_lxc_ok(&["network", "rename", &n, &n2]);
    assert!(!std::path::Path::new(&format!("/sys/class/net/{n}")).exists());
    assert!(std::path::Path::new(&format!("/sys/class/net/{n2}")).exists());

    // attach / detach on a running instance: hot-plug of a NIC.
    d.real_lxc_ok(&["launch", "busybox", c1.as_str()]);
    d.real_lxc_ok(&["network", "attach", &n2, c1.as_str(), "eth1"]);
    let out = exec(
        &d,
        c1.as_str(),
        "ip link show eth1 && udhcpc -i eth1 -n -q -t 5 -T 1 -s /bin/true",
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // In use: cannot be deleted.
    let (code, v) = raw_request(&d.dir, "DELETE", &format!("/1.0/networks/{n2}"), None);
    assert_eq!(code, 400, "{v}");
    d.real_lxc_ok(&["network", "detach", &n2, c1.as_str()]);
    assert!(!exec(&d, c1.as_str(), "ip link show eth1").status.success());

    // Bad input: one line, the right status, nothing left behind.
    let post = |body: &str| raw_request(&d.dir, "POST", "/1.0/networks", Some(body));
    let bad = ifname("x");
    let (code, v) = post(&format!(
        r#"{{"name":"{bad}","config":{{"ipv4.address":"192.0.2.9/24"}}}}"#
    ));
    // 192.0.2.0/24 is only refused when the host routes it; then it must be a 400.
    if sh_ok("ip -4 route").contains("192.0.2.0/24") {
        assert_eq!(code, 400, "{v}");
        assert!(v["error"].as_str().unwrap().contains("overlaps"), "{v}");
    } else {
        raw_request(&d.dir, "DELETE", &format!("/1.0/networks/{bad}"), None);
    }
    let gw = d.query_json(&format!("/1.0/networks/{br}"))["config"]["ipv4.address"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, v) = post(&format!(
        r#"{{"name":"{bad}","config":{{"ipv4.address":"{}"}}}}"#,
        gw.replace(".1/24", ".9/24")
    ));
    assert_eq!(code, 400, "{v}");
    let foreign = ifname("f");
    host.links.push(foreign.clone());
    sh_ok(&format!("ip link add {foreign} type bridge"));
    let (code, v) = post(&format!(r#"{{"name":"{foreign}"}}"#));
    assert_eq!(code, 409, "{v}");
    let (code, v) = post(&format!(
        r#"{{"name":"{bad}","config":{{"ipv4.nat":"maybe"}}}}"#
    ));
    assert_eq!(code, 400, "{v}");
    let (code, v) = post(r#"{"name":"no/slash"}"#);
    assert_eq!(code, 400, "{v}");
    let out = d.real_lxc(&[
        "config",
        "device",
        "add",
        c1.as_str(),
        "eth9",
        "nic",
        "nictype=bridged",
        "parent=nonexist0",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("parent interface \"nonexist0\" not found"),
        "{}",
        text(&out.stderr)
    );
    let (code, v) = raw_request(
        &d.dir,
        "PUT",
        &format!("/1.0/instances/{c1}"),
        Some(
            r#"{"profiles":["default"],"devices":{"e":{"type":"nic","nictype":"macvlan","parent":"nonexist0"}}}"#,
        ),
    );
    assert_eq!(code, 404, "{v}");
    assert!(!std::path::Path::new(&format!("/sys/class/net/{bad}")).exists());

    // delete: no bridge, no dnsmasq, no chains, no directory.
    d.real_lxc_ok(&["network", "delete", &n2]);
    assert!(!std::path::Path::new(&format!("/sys/class/net/{n2}")).exists());
    assert!(
        !chains(&our_table())
            .iter()
            .any(|c| c.ends_with(&format!(".{n2}")))
    );
    assert!(!sh_ok("ps -eo args").contains(&format!("--interface={n2} ")));
    assert!(!d.dir.join("networks").join(&n2).exists());
    let (code, _) = raw_request(&d.dir, "GET", &format!("/1.0/networks/{n2}"), None);
    assert_eq!(code, 404);
}

#[test]
fn host_bridge_gets_addresses_from_the_physical_network() {
    if !root_or_skip("host_bridge_gets_addresses_from_the_physical_network") {
        return;
    }
    let (d, _br) = daemon_with_bridge();
    let mut host = HostThings::default();
    let c1 = unique("c");
    // The "physical" network: a namespace with its own dnsmasq, joined to an unmanaged host
    // bridge through a veth.
    let hb = ifname("u");
    let phys = ifname("n");
    let (a, b) = (ifname("h"), ifname("p"));
    let net = subnet();
    host.links.push(hb.clone());
    host.links.push(a.clone());
    host.netns.push(phys.clone());
    sh_ok(&format!(
        "ip link add {hb} type bridge && ip link set {hb} up && ip netns add {phys} && \
         ip link add {a} type veth peer name {b} && ip link set {a} master {hb} up && \
         ip link set {b} netns {phys} && ip -n {phys} addr add 172.31.{net}.1/24 dev {b} && \
         ip -n {phys} link set {b} up"
    ));
    let leases = d.dir.join("phys.leases");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &phys,
            "dnsmasq",
            "--keep-in-foreground",
            "--no-ping",
        ])
        .arg("--bind-interfaces")
        .arg(format!("--interface={b}"))
        .arg(format!("--listen-address=172.31.{net}.1"))
        .arg(format!("--dhcp-range=172.31.{net}.100,172.31.{net}.150,1h"))
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .args([
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--port=0",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    host.children.push(child);

    // The unmanaged bridge is listed as such.
    let list = d.real_lxc_ok(&["network", "list", "--format", "csv"]);
    assert!(list.contains(&format!("{hb},bridge,NO")), "{list}");
    d.real_lxc_ok(&["init", "busybox", c1.as_str()]);
    d.real_lxc_ok(&[
        "config",
        "device",
        "add",
        c1.as_str(),
        "eth0",
        "nic",
        "nictype=bridged",
        &format!("parent={hb}"),
        "name=eth0",
    ]);
    d.real_lxc_ok(&["start", c1.as_str()]);
    let ip = wait_ipv4(&d, c1.as_str());
    assert!(ip.starts_with(&format!("172.31.{net}.1")), "{ip}");
    let mac = d.query_json(&format!("/1.0/instances/{c1}"))["config"]["volatile.eth0.hwaddr"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(std::fs::read_to_string(&leases).unwrap().contains(&mac));
    let used = d.query_json(&format!("/1.0/networks/{hb}"));
    assert_eq!(used["used_by"][0], format!("/1.0/instances/{c1}").as_str());
    let out = exec(&d, c1.as_str(), &format!("ping -c 1 -W 3 172.31.{net}.1"));
    assert!(out.status.success(), "{}", text(&out.stdout));
    // A macvlan on the same host bridge, hot-plugged, also gets a lease from that network.
    d.real_lxc_ok(&[
        "config",
        "device",
        "add",
        c1.as_str(),
        "eth1",
        "nic",
        "nictype=macvlan",
        &format!("parent={hb}"),
        "name=eth1",
    ]);
    let out = exec(
        &d,
        c1.as_str(),
        "udhcpc -i eth1 -n -q -t 5 -T 1 -s /usr/share/udhcpc/default.script && ip -4 addr show eth1",
    );
    assert!(
        text(&out.stdout).contains(&format!("inet 172.31.{net}.1")),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    d.real_lxc_ok(&["config", "device", "remove", c1.as_str(), "eth1"]);
    assert!(!exec(&d, c1.as_str(), "ip link show eth1").status.success());
    // Stopping removes the host end of the veth.
    let veth = d.query_json(&format!("/1.0/instances/{c1}"))["config"]["volatile.eth0.host_name"]
        .as_str()
        .unwrap()
        .to_string();
    d.real_lxc_ok(&["stop", c1.as_str(), "--force"]);
    assert!(!std::path::Path::new(&format!("/sys/class/net/{veth}")).exists());
    d.real_lxc_ok(&["delete", c1.as_str()]);
}

#[test]
fn proxy_devices_and_forwards_reach_a_web_server() {
    if !root_or_skip("proxy_devices_and_forwards_reach_a_web_server") {
        return;
    }
    let (d, br) = daemon_with_bridge();
    let mut host = HostThings::default();
    let (client, host_ip) = host.client_netns(subnet());
    let gw = d.query_json(&format!("/1.0/networks/{br}"))["config"]["ipv4.address"]
        .as_str()
        .unwrap()
        .to_string();
    let fixed = gw.replace(".1/24", ".80");
    let web = unique("w");
    d.real_lxc_ok(&["init", "busybox", &web]);
    d.real_lxc_ok(&[
        "config",
        "device",
        "override",
        web.as_str(),
        "eth0",
        &format!("ipv4.address={fixed}"),
    ]);
    d.real_lxc_ok(&["start", web.as_str()]);
    assert_eq!(wait_ipv4(&d, web.as_str()), fixed);
    let out = exec(
        &d,
        web.as_str(),
        "mkdir -p /www && echo hello-from-web > /www/index.html && httpd -h /www -p 80",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fetch = |port: u16| {
        let out = sh(&format!(
            "ip netns exec {client} busybox wget -q -O - http://{host_ip}:{port}/index.html"
        ));
        text(&out.stdout)
    };
    let base = 20000 + (std::process::id() % 1000) as u16 * 10;

    // Userspace relay: listen on the host, connect inside the container.
    d.real_lxc_ok(&[
        "config",
        "device",
        "add",
        web.as_str(),
        "http",
        "proxy",
        &format!("listen=tcp:0.0.0.0:{base}"),
        "connect=tcp:127.0.0.1:80",
    ]);
    assert_eq!(fetch(base), "hello-from-web\n");
    // A unix socket on the host relayed to the same server.
    let sock = d.dir.join("web.sock");
    d.real_lxc_ok(&[
        "config",
        "device",
        "add",
        web.as_str(),
        "sock",
        "proxy",
        &format!("listen=unix:{}", sock.display()),
        "connect=tcp:127.0.0.1:80",
    ]);
    let out = sh(&format!(
        "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | python3 -c \"import socket,sys,time;s=socket.socket(socket.AF_UNIX);s.connect('{}');s.sendall(sys.stdin.buffer.read());time.sleep(0.5);print(s.recv(4096).decode())\"",
        sock.display()
    ));
    assert!(
        text(&out.stdout).contains("hello-from-web"),
        "{}",
        text(&out.stderr)
    );

    // A second device on the same port: 409-style error, nothing added.
    let out = d.real_lxc(&[
        "config",
        "device",
        "add",
        web.as_str(),
        "dup",
        "proxy",
        &format!("listen=tcp:0.0.0.0:{base}"),
        "connect=tcp:127.0.0.1:80",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already in use"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        d.query_json(&format!("/1.0/instances/{web}"))["devices"]
            .get("dup")
            .is_none()
    );

    // nat mode: DNAT in our table to the static address.
    d.real_lxc_ok(&[
        "config",
        "device",
        "add",
        web.as_str(),
        "nat",
        "proxy",
        &format!("listen=tcp:0.0.0.0:{}", base + 1),
        "connect=tcp:0.0.0.0:80",
        "nat=true",
    ]);
    assert_eq!(fetch(base + 1), "hello-from-web\n");
    let rules = serde_json::to_string(&our_table()).unwrap();
    assert!(rules.contains(&format!("proxy {web}/nat")), "{rules}");

    // Network forward on the managed bridge.
    d.real_lxc_ok(&["network", "forward", "create", &br, &host_ip]);
    d.real_lxc_ok(&[
        "network",
        "forward",
        "port",
        "add",
        &br,
        &host_ip,
        "tcp",
        &(base + 2).to_string(),
        &fixed,
        "80",
    ]);
    assert_eq!(fetch(base + 2), "hello-from-web\n");
    let fwd = d.real_lxc_ok(&["network", "forward", "list", &br, "--format", "csv"]);
    assert!(fwd.contains(&host_ip), "{fwd}");
    // A forward to an address no instance has: 400, nothing stored.
    let nobody = gw.replace(".1/24", ".201");
    let out = d.real_lxc(&[
        "network",
        "forward",
        "port",
        "add",
        &br,
        &host_ip,
        "tcp",
        &(base + 3).to_string(),
        &nobody,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("No instance"),
        "{}",
        text(&out.stderr)
    );

    // Removing devices and forwards removes their listeners and rules.
    d.real_lxc_ok(&["config", "device", "remove", web.as_str(), "http"]);
    d.real_lxc_ok(&["config", "device", "remove", web.as_str(), "nat"]);
    d.real_lxc_ok(&["network", "forward", "delete", &br, &host_ip]);
    assert!(std::net::TcpListener::bind(("0.0.0.0", base)).is_ok());
    let rules = serde_json::to_string(&our_table()).unwrap();
    assert!(!rules.contains(&format!("proxy {web}/nat")), "{rules}");
    assert!(!rules.contains(&format!("forward {host_ip}")), "{rules}");
    assert_eq!(fetch(base + 2), "");
}

fn ipv6_global(d: &TestDaemon, c: &str) -> Option<String> {
    let st = d.query_json(&format!("/1.0/instances/{c}/state"));
    st["network"]["eth0"]["addresses"]
        .as_array()?
        .iter()
        .find(|a| a["family"] == "inet6" && a["scope"] == "global")
        .and_then(|a| a["address"].as_str().map(str::to_string))
}

/// A bad `lxc network create`: one-line error, and no interface or row left.
fn create_fails(d: &TestDaemon, name: &str, args: &[&str], want: &str) {
    let mut a = vec!["network", "create", name];
    a.extend_from_slice(args);
    let out = d.real_lxc(&a);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{args:?} accepted");
    assert!(err.contains(want), "{args:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!std::path::Path::new(&format!("/sys/class/net/{name}")).exists());
    let list = d.real_lxc_ok(&["network", "list", "--format", "csv"]);
    assert!(!list.contains(&format!("{name},")), "{list}");
}

#[test]
fn ipv6_slaac_ping_list_dns_nat_stateful_and_bad_input() {
    if !root_or_skip("ipv6_slaac_ping_list_dns_nat_stateful_and_bad_input") {
        return;
    }
    let (d, _br) = daemon_with_bridge();
    let c1 = unique("c");
    let n6 = ifname("s");
    d.real_lxc_ok(&["network", "create", &n6, "ipv6.address=auto"]);
    let net = d.query_json(&format!("/1.0/networks/{n6}"));
    let gw6 = net["config"]["ipv6.address"].as_str().unwrap().to_string();
    assert!(gw6.starts_with("fd") && gw6.ends_with("::1/64"), "{gw6}");
    assert_eq!(net["config"]["ipv6.nat"], "true");
    let prefix = gw6.trim_end_matches("1/64").to_string();
    let gw4 = net["config"]["ipv4.address"]
        .as_str()
        .unwrap()
        .trim_end_matches("/24")
        .to_string();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{n6}/disable_ipv6"))
            .unwrap()
            .trim(),
        "0"
    );

    // SLAAC: the kernel in the container configures an address from the bridge's RAs.
    d.real_lxc_ok(&["init", "busybox", c1.as_str()]);
    d.real_lxc_ok(&[
        "config",
        "device",
        "override",
        c1.as_str(),
        "eth0",
        &format!("network={n6}"),
    ]);
    d.real_lxc_ok(&["start", c1.as_str()]);
    let mut addr = None;
    let got = wait_until(Duration::from_secs(10), || {
        addr = ipv6_global(&d, c1.as_str());
        addr.is_some()
    });
    if !got {
        let dns = std::fs::read_to_string(d.dir.join("networks").join(&n6).join("dnsmasq.log"))
            .unwrap_or_default();
        panic!(
            "no global IPv6 address\n{}\ndnsmasq: {dns}",
            d.query_json(&format!("/1.0/instances/{c1}/state"))["network"]
        );
    }
    let addr = addr.unwrap();
    let upper64 = |a: &str| {
        a.parse::<std::net::Ipv6Addr>()
            .map(|a| u128::from(a) >> 64)
            .ok()
    };
    assert_eq!(
        upper64(&addr),
        upper64(gw6.trim_end_matches("/64")),
        "{addr} not in {gw6}"
    );

    // The host reaches it over our bridge, `lxc list` shows it.
    // Retried briefly: the address may still be tentative (DAD) in the container.
    let pinged = wait_until(Duration::from_secs(6), || {
        sh(&format!("busybox ping -6 -c1 -W2 {addr}"))
            .status
            .success()
    });
    assert!(
        pinged,
        "host: {}\ncontainer: {}",
        text(&sh(&format!("ip -6 addr show dev {n6}; ip -6 route get {addr}")).stdout),
        text(&exec(&d, c1.as_str(), "ip -6 addr; ip -6 route").stdout)
    );
    let list = d.real_lxc_ok(&["list", c1.as_str(), "-c", "n6", "--format", "csv"]);
    assert!(list.contains(&format!("{addr} (eth0)")), "{list}");
    let info = d.real_lxc_ok(&["info", c1.as_str()]);
    assert!(
        info.contains(&format!("inet6: {addr}/64 (global)")),
        "{info}"
    );
    let leases = d.real_lxc_ok(&["network", "list-leases", &n6, "--format", "csv"]);
    assert!(
        leases.contains(&format!("{},GATEWAY", gw6.trim_end_matches("/64"))),
        "{leases}"
    );

    // ra-names: dnsmasq answers AAAA for NAME.lxd once the instance has a DHCPv4 lease.
    wait_ipv4(&d, c1.as_str());
    let mut answer = String::new();
    let resolved = wait_until(Duration::from_secs(15), || {
        answer = text(&sh(&format!("busybox nslookup -type=AAAA {c1}.lxd {gw4}")).stdout);
        answer.contains(&addr)
    });
    assert!(resolved, "{answer}");

    // ip6 masquerade for the prefix in our table.
    let rules = serde_json::to_string(&our_table()).unwrap();
    let net6 = prefix.trim_end_matches(':').to_string() + "::";
    assert!(rules.contains(&net6), "{net6} not in {rules}");
    assert!(rules.contains("nat6 "), "{rules}");

    // A static IPv6 address needs stateful DHCPv6.
    let out = d.real_lxc(&[
        "config",
        "device",
        "set",
        c1.as_str(),
        "eth0",
        &format!("ipv6.address={prefix}99"),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("ipv6.dhcp.stateful"),
        "{}",
        text(&out.stderr)
    );

    // Stateful DHCPv6: ranges in dnsmasq's arguments, the static address in the host file.
    d.real_lxc_ok(&["stop", "-f", c1.as_str()]);
    d.real_lxc_ok(&["network", "set", &n6, "ipv6.dhcp.stateful=true"]);
    d.real_lxc_ok(&[
        "network",
        "set",
        &n6,
        &format!("ipv6.dhcp.ranges={prefix}100-{prefix}1ff"),
    ]);
    d.real_lxc_ok(&[
        "config",
        "device",
        "set",
        c1.as_str(),
        "eth0",
        &format!("ipv6.address={prefix}99"),
    ]);
    d.real_lxc_ok(&["start", c1.as_str()]);
    let ps = sh_ok("ps -eo args");
    assert!(
        ps.contains(&format!("--dhcp-range {prefix}100,{prefix}1ff,64,1h")),
        "{ps}"
    );
    let hosts = std::fs::read_to_string(
        d.dir
            .join("networks")
            .join(&n6)
            .join("dnsmasq.hosts")
            .join(format!("{c1}.eth0")),
    )
    .unwrap();
    assert!(hosts.contains(&format!(",[{prefix}99],{c1}")), "{hosts}");
    let leases = d.real_lxc_ok(&["network", "list-leases", &n6, "--format", "csv"]);
    assert!(leases.contains(&format!("{prefix}99,STATIC")), "{leases}");
    // A real DHCPv6 client on the container's eth0 is given the static address. busybox-static
    // has no udhcpc6, so the host's dhclient runs in the container's network namespace only,
    // with a no-op script and its files in a temporary directory (nothing of the host changes).
    if sh("command -v dhclient nsenter").status.success() {
        let pid = d.query_json(&format!("/1.0/instances/{c1}/state"))["pid"]
            .as_i64()
            .unwrap();
        // dhclient binds the link-local address, usable once DAD is over.
        assert!(wait_until(Duration::from_secs(10), || {
            let a = text(&exec(&d, c1.as_str(), "ip -6 addr show dev eth0 scope link").stdout);
            a.contains("fe80") && !a.contains("tentative")
        }));
        let tmp = tempfile::tempdir().unwrap();
        let lf = tmp.path().join("l6");
        let child = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "dhclient",
                "-6",
                "-d",
                "-D",
                "LL",
            ])
            .args(["-sf", "/bin/true", "-lf"])
            .arg(&lf)
            .arg("-pf")
            .arg(tmp.path().join("p6"))
            .arg("eth0")
            .arg("-v")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(tmp.path().join("err")).unwrap())
            .spawn()
            .unwrap();
        let mut host = HostThings::default();
        host.children.push(child);
        let mut lease = String::new();
        let leased = wait_until(Duration::from_secs(15), || {
            lease = std::fs::read_to_string(&lf).unwrap_or_default();
            lease.contains(&format!("iaaddr {prefix}99 "))
        });
        assert!(
            leased,
            "lease: {lease}\ndhclient: {}\ndnsmasq: {}\ncontainer: {}",
            std::fs::read_to_string(tmp.path().join("err")).unwrap_or_default(),
            std::fs::read_to_string(d.dir.join("networks").join(&n6).join("dnsmasq.log"))
                .unwrap_or_default(),
            text(&exec(&d, c1.as_str(), "ip -6 addr").stdout)
        );
        drop(host);
    } else {
        eprintln!("dhclient or nsenter missing: DHCPv6 client check skipped");
    }
    // Ranges outside the subnet are refused and the network keeps its config.
    let out = d.real_lxc(&[
        "network",
        "set",
        &n6,
        "ipv6.dhcp.ranges=fd00:dead::10-fd00:dead::20",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("outside"),
        "{}",
        text(&out.stderr)
    );

    // Delete: the ip6 rule goes with the network.
    d.real_lxc_ok(&["delete", "-f", c1.as_str()]);
    d.real_lxc_ok(&["network", "delete", &n6]);
    let rules = serde_json::to_string(&our_table()).unwrap();
    assert!(!rules.contains(&net6), "{rules}");
    assert!(!rules.contains(&format!("nat6 {n6}")), "{rules}");
    assert!(!std::path::Path::new(&format!("/sys/class/net/{n6}")).exists());

    // Bad input: one line, nothing made.
    let bad = ifname("x");
    create_fails(&d, &bad, &["ipv6.address=fd42:zz::1/64"], "ipv6.address");
    create_fails(&d, &bad, &["ipv6.address=fd42:1::1"], "ipv6.address");
    create_fails(&d, &bad, &["ipv6.address=fd42:1::/64"], "network address");
    let tag = std::process::id() % 0xffff;
    let mine = format!("fd42:7e57:{tag:x}:1::1/64");
    let other = ifname("o");
    d.real_lxc_ok(&["network", "create", &other, &format!("ipv6.address={mine}")]);
    create_fails(
        &d,
        &bad,
        &[&format!("ipv6.address=fd42:7e57:{tag:x}:1::7/64")],
        "overlaps",
    );
    create_fails(
        &d,
        &bad,
        &[
            &format!("ipv6.address=fd42:7e57:{tag:x}:2::1/64"),
            "ipv6.dhcp.stateful=true",
            &format!("ipv6.dhcp.ranges=fd42:7e57:{tag:x}:3::10-fd42:7e57:{tag:x}:3::20"),
        ],
        "outside",
    );
    d.real_lxc_ok(&["network", "delete", &other]);
    // A prefix the host already routes (if it routes any global IPv6 prefix).
    let routed = sh_ok(
        "ip -6 route show | awk '$1 ~ /^[0-9a-f:]+\\/[0-9]+$/ && $1 !~ /^fe80/ {print $1; exit}'",
    );
    if let Some((net, len)) = routed
        .split_whitespace()
        .next()
        .and_then(|r| r.split_once('/'))
        .filter(|(n, l)| n.ends_with("::") && l.parse::<u8>().is_ok_and(|l| l <= 64))
    {
        let host = format!("{net}5/{len}");
        create_fails(
            &d,
            &bad,
            &[&format!("ipv6.address={host}")],
            "overlaps the host route",
        );
    }
}
