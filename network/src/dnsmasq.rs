//! One dnsmasq per managed bridge for DHCP and DNS (`NAME.DOMAIN`), as LXD runs it: the argument
//! list (`render_args`), the static host files in `dnsmasq.hosts/` (one `mac[,ip],name` line per
//! NIC), the lease file, and a supervisor that starts it, reloads it with SIGHUP and restarts it
//! when it dies. dnsmasq runs in its own process group so it outlives a daemon reload (SIGTERM),
//! and is replaced when the daemon starts again.

use ipnet::{Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start dnsmasq for {bridge}: {source}")]
    Spawn {
        bridge: String,
        source: std::io::Error,
    },
    #[error("dnsmasq for {bridge} exited at once: {reason}")]
    EarlyExit { bridge: String, reason: String },
    #[error(transparent)]
    Addr(#[from] crate::addr::Error),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Where a bridge's dnsmasq keeps its files: `$LXD_DIR/networks/BR/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub dir: PathBuf,
}

impl Paths {
    pub fn new(dir: impl Into<PathBuf>) -> Paths {
        Paths { dir: dir.into() }
    }
    pub fn hosts_dir(&self) -> PathBuf {
        self.dir.join("dnsmasq.hosts")
    }
    pub fn leases(&self) -> PathBuf {
        self.dir.join("dnsmasq.leases")
    }
    pub fn pid(&self) -> PathBuf {
        self.dir.join("dnsmasq.pid")
    }
    pub fn raw(&self) -> PathBuf {
        self.dir.join("dnsmasq.raw")
    }
    pub fn log(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }
}

/// What one dnsmasq serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsmasqConfig {
    pub bridge: String,
    /// IPv4 gateway address and prefix of the bridge; None without IPv4.
    pub gateway: Option<Ipv4Net>,
    pub dhcp: bool,
    pub dhcp_ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub dhcp_expiry: String,
    /// Router option other than the gateway (`ipv4.dhcp.gateway`).
    pub dhcp_router: Option<Ipv4Addr>,
    /// `dns.domain`; None with `dns.mode=none` (no names registered).
    pub domain: Option<String>,
    pub dns_search: Option<String>,
    pub mtu: Option<u32>,
    /// `raw.dnsmasq` is written to `dnsmasq.raw` and passed as the conf file.
    pub raw: Option<String>,
    pub paths: Paths,
    /// Router advertisements and DHCPv6; None without IPv6.
    pub ipv6: Option<Dhcp6Config>,
}

/// What dnsmasq does for IPv6 on the bridge (LXD's `ipv6.dhcp*` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dhcp6Config {
    /// Gateway address and prefix (`ipv6.address`).
    pub gateway: Ipv6Net,
    /// `ipv6.dhcp`: false = router advertisements only.
    pub dhcp: bool,
    /// `ipv6.dhcp.stateful`: addresses from `ranges` instead of SLAAC + stateless DHCPv6.
    pub stateful: bool,
    pub ranges: Vec<(Ipv6Addr, Ipv6Addr)>,
    pub expiry: String,
}

/// The dnsmasq command line (without the program name), in LXD's order.
pub fn render_args(c: &DnsmasqConfig) -> Vec<String> {
    let p = &c.paths;
    let mut a: Vec<String> = vec![
        "--keep-in-foreground".into(),
        "--strict-order".into(),
        "--bind-interfaces".into(),
        "--except-interface=lo".into(),
        // Without it dnsmasq pings every candidate address first: 3 s per lease (machine.md 6).
        "--no-ping".into(),
        format!("--interface={}", c.bridge),
        "--quiet-dhcp".into(),
        "--quiet-dhcp6".into(),
        "--quiet-ra".into(),
        "--no-resolv".into(),
        "--no-hosts".into(),
        "--log-facility=-".into(),
        format!("--pid-file={}", p.pid().display()),
    ];
    let mut dhcp_common = false;
    let mut common = |a: &mut Vec<String>| {
        if !dhcp_common {
            dhcp_common = true;
            a.push("--dhcp-no-override".into());
            a.push("--dhcp-authoritative".into());
            a.push(format!("--dhcp-leasefile={}", p.leases().display()));
            a.push(format!("--dhcp-hostsdir={}", p.hosts_dir().display()));
        }
    };
    if let Some(gw) = c.gateway {
        a.push(format!("--listen-address={}", gw.addr()));
        if c.dhcp {
            common(&mut a);
            for (start, end) in &c.dhcp_ranges {
                a.push("--dhcp-range".into());
                a.push(format!("{start},{end},{}", c.dhcp_expiry));
            }
            if let Some(r) = c.dhcp_router {
                a.push(format!("--dhcp-option-force=3,{r}"));
            }
            if let Some(mtu) = c.mtu {
                a.push(format!("--dhcp-option-force=26,{mtu}"));
            }
            if let Some(search) = &c.dns_search {
                a.push(format!("--dhcp-option-force=119,{search}"));
            }
        }
    }
    if let Some(v6) = &c.ipv6 {
        // LXD's IPv6 block of driver_bridge.go: listen on the gateway, send router
        // advertisements, and either SLAAC + stateless DHCPv6 (names from ra-names) or ranges.
        a.push(format!("--listen-address={}", v6.gateway.addr()));
        a.push("--enable-ra".into());
        if v6.dhcp {
            common(&mut a);
            if v6.stateful {
                let prefix = v6.gateway.prefix_len();
                for (start, end) in &v6.ranges {
                    a.push("--dhcp-range".into());
                    a.push(format!("{start},{end},{prefix},{}", v6.expiry));
                }
            } else {
                a.push("--dhcp-range".into());
                a.push(format!("::,constructor:{},ra-stateless,ra-names", c.bridge));
            }
        } else {
            a.push("--dhcp-range".into());
            a.push(format!("::,constructor:{},ra-only", c.bridge));
        }
    }
    if let Some(domain) = &c.domain {
        a.push("-s".into());
        a.push(domain.clone());
        a.push("-S".into());
        a.push(format!("/{domain}/"));
    }
    a.push(format!(
        "--conf-file={}",
        if c.raw.is_some() {
            p.raw().display().to_string()
        } else {
            "/dev/null".into()
        }
    ));
    a
}

/// One static host line: `mac[,ipv4][,[ipv6]],name` (dnsmasq's `dhcp-host` syntax, as LXD
/// writes it); without addresses the name still registers the instance in DNS whatever
/// hostname its DHCP client sends.
pub fn host_entry(mac: &str, ipv4: Option<Ipv4Addr>, ipv6: Option<Ipv6Addr>, name: &str) -> String {
    let mut line = mac.to_string();
    if let Some(ip) = ipv4 {
        line.push_str(&format!(",{ip}"));
    }
    if let Some(ip) = ipv6 {
        line.push_str(&format!(",[{ip}]"));
    }
    format!("{line},{name}\n")
}

/// Replace the files of `hosts_dir` with `entries` (file name -> content). Returns true when
/// anything changed, so the caller knows whether dnsmasq needs a SIGHUP.
pub fn write_hosts(hosts_dir: &Path, entries: &[(String, String)]) -> Result<bool, Error> {
    std::fs::create_dir_all(hosts_dir).map_err(io("create", hosts_dir))?;
    let mut changed = false;
    let wanted: std::collections::BTreeMap<&str, &str> = entries
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for e in std::fs::read_dir(hosts_dir)
        .map_err(io("read", hosts_dir))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if !wanted.contains_key(name.as_str()) {
            let path = e.path();
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
            changed = true;
        }
    }
    for (file, content) in wanted {
        let path = hosts_dir.join(file);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(content) {
            continue;
        }
        // Write then rename: dnsmasq watches the directory with inotify and must never read a
        // half-written line.
        let tmp = hosts_dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, content).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("write", &path))?;
        changed = true;
    }
    Ok(changed)
}

/// One line of `dnsmasq.leases`: `EXPIRY MAC IP HOSTNAME CLIENTID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub expiry: u64,
    pub mac: String,
    pub ip: String,
    pub hostname: String,
}

pub fn parse_leases(text: &str) -> Vec<Lease> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 || f[0] == "duid" {
                return None;
            }
            // DHCPv6 lines are `EXPIRY IAID IPV6 HOSTNAME DUID`: the MAC is inside the DUID.
            let mac = if f[2].contains(':') {
                f.get(4).and_then(|d| mac_of_duid(d)).unwrap_or_default()
            } else {
                f[1].to_ascii_lowercase()
            };
            Some(Lease {
                expiry: f[0].parse().unwrap_or(0),
                mac,
                ip: f[2].to_string(),
                hostname: if f[3] == "*" {
                    String::new()
                } else {
                    f[3].to_string()
                },
            })
        })
        .collect()
}

/// The Ethernet address in a DUID-LLT (type 1) or DUID-LL (type 3) of hardware type 1.
fn mac_of_duid(duid: &str) -> Option<String> {
    let b: Vec<&str> = duid.split(':').collect();
    let mac = match b.as_slice() {
        ["00", "01", "00", "01", rest @ ..] if rest.len() == 10 => &rest[4..],
        ["00", "03", "00", "01", rest @ ..] if rest.len() == 6 => rest,
        _ => return None,
    };
    Some(mac.join(":").to_ascii_lowercase())
}

pub fn read_leases(paths: &Paths) -> Vec<Lease> {
    std::fs::read_to_string(paths.leases())
        .map(|t| parse_leases(&t))
        .unwrap_or_default()
}

/// Kill a dnsmasq left by an earlier daemon for this bridge (found by its pid file and checked by
/// its command line, so a recycled pid is never hit), and wait for it to go.
pub fn kill_stale(paths: &Paths, bridge: &str) {
    let Some(pid) = std::fs::read_to_string(paths.pid())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    else {
        return;
    };
    if pid <= 1 {
        return;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    let ours = cmdline.contains("dnsmasq") && cmdline.contains(&format!("--interface={bridge}\0"));
    if !ours {
        return;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    for _ in 0..200 {
        if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = std::fs::remove_file(paths.pid());
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[derive(Debug)]
enum Ctl {
    Reload,
    Stop(oneshot::Sender<()>),
}

/// A running, supervised dnsmasq. Dropping the handle leaves the process running (a daemon
/// reload); `stop` ends it.
#[derive(Debug)]
pub struct Supervisor {
    bridge: String,
    tx: mpsc::UnboundedSender<Ctl>,
}

impl Supervisor {
    /// Write the raw config, replace a stale dnsmasq, start a new one and follow it. Fails when
    /// dnsmasq cannot be spawned or exits within its first 100 ms (bad arguments, busy port).
    pub async fn start(config: DnsmasqConfig) -> Result<Supervisor, Error> {
        let p = config.paths.clone();
        std::fs::create_dir_all(&p.dir).map_err(io("create", &p.dir))?;
        std::fs::create_dir_all(p.hosts_dir()).map_err(io("create", &p.hosts_dir()))?;
        // dnsmasq drops to an unprivileged user and re-reads the hosts directory as that user.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(p.hosts_dir(), std::fs::Permissions::from_mode(0o755));
        match &config.raw {
            Some(raw) => {
                std::fs::write(p.raw(), format!("{raw}\n")).map_err(io("write", &p.raw()))?;
            }
            None => {
                let _ = std::fs::remove_file(p.raw());
            }
        }
        let bridge = config.bridge.clone();
        {
            let (p2, b2) = (p.clone(), bridge.clone());
            let _ = tokio::task::spawn_blocking(move || kill_stale(&p2, &b2)).await;
        }
        let mut child = spawn(&config)?;
        // Catch immediate failures (a bad option, the address not yet on the bridge).
        match tokio::time::timeout(Duration::from_millis(100), child.wait()).await {
            Ok(Ok(status)) => {
                let log = std::fs::read_to_string(p.log()).unwrap_or_default();
                let reason = log
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| status.to_string());
                return Err(Error::EarlyExit { bridge, reason });
            }
            Ok(Err(e)) => {
                return Err(Error::Spawn { bridge, source: e });
            }
            Err(_) => {}
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(supervise(config, child, rx));
        Ok(Supervisor { bridge, tx })
    }

    /// SIGHUP: re-read the hosts directory (deleted entries are only dropped on a reload).
    pub fn reload(&self) {
        let _ = self.tx.send(Ctl::Reload);
    }

    /// Stop dnsmasq and wait until it is gone.
    pub async fn stop(self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.tx.send(Ctl::Stop(done_tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
        }
    }

    pub fn bridge(&self) -> &str {
        &self.bridge
    }
}

fn spawn(config: &DnsmasqConfig) -> Result<tokio::process::Child, Error> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(config.paths.log())
        .map_err(io("open", &config.paths.log()))?;
    let mut cmd = tokio::process::Command::new("dnsmasq");
    cmd.args(render_args(config))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        // Its own process group: a ^C or SIGTERM to the daemon's group does not reach it.
        .process_group(0)
        .kill_on_drop(false);
    cmd.spawn().map_err(|source| Error::Spawn {
        bridge: config.bridge.clone(),
        source,
    })
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
}

/// Report the exit of `child` on `tx` (the child is owned by this task so nothing else needs to
/// borrow it while we wait).
fn watch_exit(mut child: tokio::process::Child, tx: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => e.to_string(),
        };
        let _ = tx.send(status);
    });
}

async fn sleep_until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn supervise(
    config: DnsmasqConfig,
    child: tokio::process::Child,
    mut rx: mpsc::UnboundedReceiver<Ctl>,
) {
    use nix::sys::signal::Signal;
    use tokio::time::Instant;
    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let mut pid = child.id();
    let mut started = Instant::now();
    watch_exit(child, exit_tx.clone());
    let mut backoff = Duration::from_millis(100);
    let mut respawn_at: Option<Instant> = None;
    let mut kill_at: Option<Instant> = None;
    let mut stopping: Option<oneshot::Sender<()>> = None;
    loop {
        tokio::select! {
            Some(status) = exit_rx.recv() => {
                pid = None;
                if let Some(done) = stopping.take() {
                    let _ = std::fs::remove_file(config.paths.pid());
                    let _ = done.send(());
                    return;
                }
                if started.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(100);
                }
                tracing::warn!(bridge = %config.bridge, "dnsmasq exited ({status}); restarting it in {}ms", backoff.as_millis());
                respawn_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            _ = sleep_until(respawn_at) => {
                respawn_at = None;
                match spawn(&config) {
                    Ok(c) => {
                        pid = c.id();
                        started = Instant::now();
                        watch_exit(c, exit_tx.clone());
                    }
                    Err(e) => {
                        tracing::error!(bridge = %config.bridge, "{e}");
                        respawn_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            _ = sleep_until(kill_at) => {
                kill_at = None;
                if let Some(p) = pid {
                    signal(p, Signal::SIGKILL);
                }
            }
            msg = rx.recv(), if stopping.is_none() => match msg {
                Some(Ctl::Reload) => {
                    if let Some(p) = pid {
                        signal(p, Signal::SIGHUP);
                    }
                }
                Some(Ctl::Stop(done)) => match pid {
                    Some(p) => {
                        signal(p, Signal::SIGTERM);
                        stopping = Some(done);
                        respawn_at = None;
                        kill_at = Some(Instant::now() + Duration::from_secs(3));
                    }
                    None => {
                        let _ = std::fs::remove_file(config.paths.pid());
                        let _ = done.send(());
                        return;
                    }
                },
                // The handle was dropped (daemon reload): leave dnsmasq running, stop following.
                None => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DnsmasqConfig {
        let gw: Ipv4Net = "10.4.5.1/24".parse().unwrap();
        DnsmasqConfig {
            bridge: "lxt1".into(),
            gateway: Some(gw),
            dhcp: true,
            dhcp_ranges: crate::addr::dhcp_ranges(&gw, None).unwrap(),
            dhcp_expiry: "1h".into(),
            dhcp_router: None,
            domain: Some("lxd".into()),
            dns_search: None,
            mtu: None,
            raw: None,
            paths: Paths::new("/var/lib/lxd/networks/lxt1"),
            ipv6: None,
        }
    }

    fn v6(stateful: bool) -> Dhcp6Config {
        let gw: Ipv6Net = "fd42:1:2:3::1/64".parse().unwrap();
        Dhcp6Config {
            gateway: gw,
            dhcp: true,
            stateful,
            ranges: crate::addr::dhcp_ranges_v6(&gw, Some("fd42:1:2:3::10-fd42:1:2:3::20"))
                .unwrap(),
            expiry: "1h".into(),
        }
    }

    #[test]
    fn renders_ipv6_as_lxd() {
        let mut c = config();
        c.ipv6 = Some(v6(false));
        let s = render_args(&c).join(" ");
        assert!(
            s.contains(
                "--dhcp-range 10.4.5.2,10.4.5.254,1h --listen-address=fd42:1:2:3::1 --enable-ra \
             --dhcp-range ::,constructor:lxt1,ra-stateless,ra-names -s lxd"
            ),
            "{s}"
        );
        assert_eq!(s.matches("--dhcp-no-override").count(), 1);
        c.ipv6 = Some(v6(true));
        let s = render_args(&c).join(" ");
        assert!(
            s.contains("--dhcp-range fd42:1:2:3::10,fd42:1:2:3::20,64,1h"),
            "{s}"
        );
        assert!(!s.contains("ra-stateless"));
        // IPv6 only, DHCPv6 off: router advertisements only, no lease file.
        let mut c = config();
        c.gateway = None;
        let mut v = v6(false);
        v.dhcp = false;
        c.ipv6 = Some(v);
        let s = render_args(&c).join(" ");
        assert!(
            s.contains("--dhcp-range ::,constructor:lxt1,ra-only"),
            "{s}"
        );
        assert!(!s.contains("--dhcp-leasefile"));
        assert!(!s.contains("--listen-address=10."));
        assert_eq!(
            host_entry(
                "00:16:3e:00:00:03",
                None,
                Some("fd42::9".parse().unwrap()),
                "c3"
            ),
            "00:16:3e:00:00:03,[fd42::9],c3\n"
        );
    }

    #[test]
    fn renders_lxd_style_arguments() {
        let a = render_args(&config());
        let s = a.join(" ");
        for want in [
            "--keep-in-foreground",
            "--no-ping",
            "--bind-interfaces",
            "--except-interface=lo",
            "--interface=lxt1",
            "--listen-address=10.4.5.1",
            "--dhcp-range 10.4.5.2,10.4.5.254,1h",
            "--dhcp-hostsdir=/var/lib/lxd/networks/lxt1/dnsmasq.hosts",
            "--dhcp-leasefile=/var/lib/lxd/networks/lxt1/dnsmasq.leases",
            "-s lxd -S /lxd/",
            "--conf-file=/dev/null",
            "--no-resolv",
        ] {
            assert!(s.contains(want), "missing {want} in {s}");
        }
        assert_eq!(a.last().unwrap(), "--conf-file=/dev/null");
    }

    #[test]
    fn renders_options_and_no_dhcp() {
        let mut c = config();
        c.mtu = Some(1400);
        c.dhcp_router = Some("10.4.5.254".parse().unwrap());
        c.raw = Some("log-queries".into());
        c.domain = None;
        let s = render_args(&c).join(" ");
        assert!(s.contains("--dhcp-option-force=26,1400"));
        assert!(s.contains("--dhcp-option-force=3,10.4.5.254"));
        assert!(s.contains("--conf-file=/var/lib/lxd/networks/lxt1/dnsmasq.raw"));
        assert!(!s.contains(" -s "));
        let mut c = config();
        c.dhcp = false;
        let s = render_args(&c).join(" ");
        assert!(!s.contains("--dhcp-range"));
        assert!(!s.contains("--dhcp-hostsdir"));
    }

    #[test]
    fn host_entries_and_files() {
        assert_eq!(
            host_entry(
                "00:16:3e:00:00:01",
                Some("10.4.5.9".parse().unwrap()),
                None,
                "c1"
            ),
            "00:16:3e:00:00:01,10.4.5.9,c1\n"
        );
        assert_eq!(
            host_entry("00:16:3e:00:00:02", None, None, "c2"),
            "00:16:3e:00:00:02,c2\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("dnsmasq.hosts");
        let e = vec![
            ("c1.eth0".to_string(), "a\n".to_string()),
            ("c2.eth0".to_string(), "b\n".to_string()),
        ];
        assert!(write_hosts(&hosts, &e).unwrap());
        assert!(!write_hosts(&hosts, &e).unwrap(), "unchanged: no reload");
        assert!(write_hosts(&hosts, &e[..1]).unwrap());
        assert!(!hosts.join("c2.eth0").exists());
        assert_eq!(
            std::fs::read_to_string(hosts.join("c1.eth0")).unwrap(),
            "a\n"
        );
    }

    #[test]
    fn parses_leases() {
        let l = parse_leases(
            "1700003600 00:16:3e:AA:bb:cc 10.4.5.17 c1 01:00:16:3e:aa:bb:cc\n\
             1700003600 00:16:3e:00:00:02 10.4.5.18 * *\n\
             duid 00:01:00:01\n\
             1700003600 1234 fd42::17 c3 00:03:00:01:00:16:3E:00:00:03\n",
        );
        assert_eq!(l.len(), 3);
        assert_eq!(l[2].ip, "fd42::17");
        assert_eq!(l[2].mac, "00:16:3e:00:00:03");
        assert_eq!(l[0].mac, "00:16:3e:aa:bb:cc");
        assert_eq!(l[0].ip, "10.4.5.17");
        assert_eq!(l[0].hostname, "c1");
        assert_eq!(l[1].hostname, "");
    }
}
