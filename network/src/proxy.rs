//! The userspace relay behind a `proxy` device (LXD's forkproxy, default mode): listen on the
//! host, and for each client open a connection inside the container. The listener is bound by
//! the caller (so "address in use" is reported at once); the relay then runs on its own thread
//! that has joined the container's network namespace, so every socket it opens is the
//! container's. Unix sockets inside the container are resolved with openat2(RESOLVE_IN_ROOT)
//! from the container's root and connected through /proc/self/fd: a symlink inside can never
//! lead to a host path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid proxy address \"{0}\": {1}")]
    Parse(String, &'static str),
    #[error("address {0} is already in use")]
    InUse(String),
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("failed to start the proxy relay thread")]
    Thread,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyAddr {
    Tcp(SocketAddr),
    Udp(SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ProxyAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyAddr::Tcp(a) => write!(f, "tcp:{a}"),
            ProxyAddr::Udp(a) => write!(f, "udp:{a}"),
            ProxyAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Parse LXD's `tcp:ADDR:PORT`, `udp:ADDR:PORT` (IPv6 in brackets) and `unix:/path`. One port
/// only; port ranges are not supported.
pub fn parse_addr(s: &str) -> Result<ProxyAddr, Error> {
    let bad = |why| Error::Parse(s.to_string(), why);
    let (proto, rest) = s
        .split_once(':')
        .ok_or_else(|| bad("expected tcp:, udp: or unix:"))?;
    match proto {
        "tcp" | "udp" => {
            if rest.contains(',') || rest.rsplit(':').next().is_some_and(|p| p.contains('-')) {
                return Err(bad("port ranges and lists are not supported"));
            }
            let addr: SocketAddr = rest
                .parse()
                .map_err(|_| bad("expected ADDRESS:PORT, e.g. 0.0.0.0:8080 or [::]:8080"))?;
            if addr.port() == 0 {
                return Err(bad("the port must not be 0"));
            }
            Ok(if proto == "tcp" {
                ProxyAddr::Tcp(addr)
            } else {
                ProxyAddr::Udp(addr)
            })
        }
        "unix" => {
            if rest.starts_with('@') {
                return Err(bad("abstract unix sockets are not supported"));
            }
            if !rest.starts_with('/') {
                return Err(bad("the socket path must be absolute"));
            }
            Ok(ProxyAddr::Unix(PathBuf::from(rest)))
        }
        _ => Err(bad("expected tcp:, udp: or unix:")),
    }
}

/// Whether a listen/connect pair can be relayed (same transport for datagrams).
pub fn check_pair(listen: &ProxyAddr, connect: &ProxyAddr) -> Result<(), Error> {
    match (listen, connect) {
        (ProxyAddr::Udp(_), ProxyAddr::Udp(_)) => Ok(()),
        (ProxyAddr::Udp(_), _) | (_, ProxyAddr::Udp(_)) => Err(Error::Parse(
            format!("{listen} -> {connect}"),
            "udp can only be relayed to udp",
        )),
        _ => Ok(()),
    }
}

/// A bound listener, ready to hand to `start`.
#[derive(Debug)]
pub enum Listener {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

/// Bind the host side now (in the caller's network namespace). A unix socket gets `mode`.
pub fn bind(listen: &ProxyAddr, mode: Option<u32>) -> Result<Listener, Error> {
    let in_use = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            Error::InUse(listen.to_string())
        } else {
            Error::Bind {
                addr: listen.to_string(),
                source: e,
            }
        }
    };
    let l = match listen {
        ProxyAddr::Tcp(a) => {
            let l = std::net::TcpListener::bind(a).map_err(in_use)?;
            l.set_nonblocking(true).map_err(in_use)?;
            Listener::Tcp(l)
        }
        ProxyAddr::Udp(a) => {
            let s = std::net::UdpSocket::bind(a).map_err(in_use)?;
            s.set_nonblocking(true).map_err(in_use)?;
            Listener::Udp(s)
        }
        ProxyAddr::Unix(p) => {
            if let Some(parent) = p.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let l = std::os::unix::net::UnixListener::bind(p).map_err(in_use)?;
            l.set_nonblocking(true).map_err(in_use)?;
            if let Some(m) = mode {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
            }
            Listener::Unix(l, p.clone())
        }
    };
    Ok(l)
}

/// A running relay; `stop` (or drop) ends it, closes the listener and removes a unix socket.
#[derive(Debug)]
pub struct Relay {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Start relaying `listener` to `connect` inside the container whose init is `pid`.
pub fn start(
    listener: Listener,
    connect: ProxyAddr,
    pid: i32,
    label: &str,
) -> Result<Relay, Error> {
    let (tx, rx) = oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let label = label.to_string();
    let thread = std::thread::Builder::new()
        .name(format!("proxy-{pid}"))
        .spawn(move || {
            // The container's root, for unix sockets inside it (opened before joining its
            // network namespace; /proc is the host's either way).
            let root = nix::fcntl::open(
                format!("/proc/{pid}/root").as_str(),
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            );
            let root = match root {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot open the root of {pid}: {e}")));
                    return;
                }
            };
            if let Err(e) = crate::netns::enter(pid) {
                let _ = ready_tx.send(Err(e.to_string()));
                return;
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            let target = Arc::new(Target { connect, root });
            rt.block_on(serve(listener, target, rx, label));
        })
        .map_err(|_| Error::Thread)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Relay {
            stop: Some(tx),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            tracing::warn!("proxy relay: {e}");
            let _ = thread.join();
            Err(Error::Thread)
        }
        Err(_) => Err(Error::Thread),
    }
}

#[derive(Debug)]
struct Target {
    connect: ProxyAddr,
    root: OwnedFd,
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Target {
    async fn connect(&self) -> std::io::Result<Box<dyn Stream>> {
        match &self.connect {
            ProxyAddr::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a).await?;
                let _ = s.set_nodelay(true);
                Ok(Box::new(s))
            }
            ProxyAddr::Unix(p) => {
                let fd = resolve_in_root(&self.root, p)?;
                let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
                let s = tokio::net::UnixStream::connect(&via).await?;
                Ok(Box::new(s))
            }
            ProxyAddr::Udp(_) => Err(std::io::Error::other("udp is not a stream")),
        }
    }
}

/// Open `path` as seen from the container's root without following anything out of it.
fn resolve_in_root(root: &OwnedFd, path: &Path) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
    let rel = path.strip_prefix("/").unwrap_or(path);
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    nix::fcntl::openat2(root, rel, how).map_err(std::io::Error::from)
}

async fn relay_stream(client: Box<dyn Stream>, target: Arc<Target>, label: Arc<str>) {
    let mut client = client;
    match target.connect().await {
        Ok(mut upstream) => {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Err(e) => tracing::debug!("proxy {label}: connect to {} failed: {e}", target.connect),
    }
}

async fn serve(
    listener: Listener,
    target: Arc<Target>,
    mut stop: oneshot::Receiver<()>,
    label: String,
) {
    let label: Arc<str> = label.into();
    match listener {
        Listener::Tcp(l) => {
            let Ok(l) = tokio::net::TcpListener::from_std(l) else {
                return;
            };
            loop {
                tokio::select! {
                    r = l.accept() => if let Ok((s, _)) = r {
                        let _ = s.set_nodelay(true);
                        tokio::spawn(relay_stream(Box::new(s), target.clone(), label.clone()));
                    },
                    _ = &mut stop => break,
                }
            }
        }
        Listener::Unix(l, path) => {
            if let Ok(l) = tokio::net::UnixListener::from_std(l) {
                loop {
                    tokio::select! {
                        r = l.accept() => if let Ok((s, _)) = r {
                            tokio::spawn(relay_stream(Box::new(s), target.clone(), label.clone()));
                        },
                        _ = &mut stop => break,
                    }
                }
            }
            let _ = std::fs::remove_file(path);
        }
        Listener::Udp(s) => {
            let Ok(s) = tokio::net::UdpSocket::from_std(s) else {
                return;
            };
            serve_udp(Arc::new(s), target, stop, label).await;
        }
    }
}

/// Datagrams: one connected socket inside the container per client address, dropped after two
/// idle minutes; replies go back from the listening socket.
async fn serve_udp(
    sock: Arc<tokio::net::UdpSocket>,
    target: Arc<Target>,
    mut stop: oneshot::Receiver<()>,
    label: Arc<str>,
) {
    const IDLE: Duration = Duration::from_secs(120);
    let ProxyAddr::Udp(dest) = target.connect.clone() else {
        return;
    };
    let sessions: Arc<std::sync::Mutex<HashMap<SocketAddr, Arc<tokio::net::UdpSocket>>>> =
        Default::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, client) = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = &mut stop => break,
        };
        let existing = sessions.lock().expect("udp sessions").get(&client).cloned();
        let up = match existing {
            Some(u) => u,
            None => {
                let bind: SocketAddr = if dest.is_ipv4() {
                    "0.0.0.0:0".parse().expect("valid")
                } else {
                    "[::]:0".parse().expect("valid")
                };
                let Ok(u) = tokio::net::UdpSocket::bind(bind).await else {
                    continue;
                };
                if u.connect(dest).await.is_err() {
                    tracing::debug!("proxy {label}: cannot reach {dest}");
                    continue;
                }
                let u = Arc::new(u);
                sessions
                    .lock()
                    .expect("udp sessions")
                    .insert(client, u.clone());
                let (u2, s2, sessions2) = (u.clone(), sock.clone(), sessions.clone());
                tokio::spawn(async move {
                    let mut b = vec![0u8; 65536];
                    while let Ok(Ok(n)) = tokio::time::timeout(IDLE, u2.recv(&mut b)).await {
                        let _ = s2.send_to(&b[..n], client).await;
                    }
                    sessions2.lock().expect("udp sessions").remove(&client);
                });
                u
            }
        };
        let _ = up.send(&buf[..n]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lxd_addresses() {
        assert_eq!(
            parse_addr("tcp:0.0.0.0:8080").unwrap(),
            ProxyAddr::Tcp("0.0.0.0:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("udp:[::1]:53").unwrap(),
            ProxyAddr::Udp("[::1]:53".parse().unwrap())
        );
        assert_eq!(
            parse_addr("unix:/run/app.sock").unwrap(),
            ProxyAddr::Unix("/run/app.sock".into())
        );
        for bad in [
            "tcp:0.0.0.0",
            "tcp:0.0.0.0:0",
            "tcp:0.0.0.0:80-90",
            "tcp:1.2.3.4:80,81",
            "sctp:1.2.3.4:80",
            "unix:relative",
            "unix:@abstract",
            "8080",
        ] {
            assert!(parse_addr(bad).is_err(), "{bad} accepted");
        }
        let tcp = parse_addr("tcp:127.0.0.1:80").unwrap();
        let udp = parse_addr("udp:127.0.0.1:80").unwrap();
        assert!(check_pair(&tcp, &udp).is_err());
        assert!(check_pair(&udp, &udp).is_ok());
        assert_eq!(tcp.to_string(), "tcp:127.0.0.1:80");
    }

    #[test]
    fn reports_a_port_in_use() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = ProxyAddr::Tcp(l.local_addr().unwrap());
        assert!(matches!(bind(&a, None), Err(Error::InUse(_))));
    }

    #[test]
    fn relays_tcp_and_unix_in_our_own_namespace() {
        use std::io::{Read, Write};
        // An echo-once server standing in for the service inside the container.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap();
        std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = server.accept().unwrap();
                let mut b = [0u8; 5];
                s.read_exact(&mut b).unwrap();
                s.write_all(&b).unwrap();
            }
        });
        let pid = std::process::id() as i32;
        let listen = ProxyAddr::Tcp("127.0.0.1:0".parse().unwrap());
        let l = bind(&listen, None).unwrap();
        let Listener::Tcp(ref tl) = l else { panic!() };
        let addr = tl.local_addr().unwrap();
        let relay = start(l, ProxyAddr::Tcp(target), pid, "test").unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"hello").unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"hello");

        // Unix listen -> TCP connect.
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("p.sock");
        let ul = bind(&ProxyAddr::Unix(sock.clone()), Some(0o600)).unwrap();
        let relay2 = start(ul, ProxyAddr::Tcp(target), pid, "test2").unwrap();
        let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
        c.write_all(b"world").unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"world");
        // TCP listen -> unix connect (resolved from the "container" root, here ours).
        let usock = dir.path().join("svc.sock");
        let userver = std::os::unix::net::UnixListener::bind(&usock).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = userver.accept().unwrap();
            let mut b = [0u8; 5];
            s.read_exact(&mut b).unwrap();
            s.write_all(&b).unwrap();
        });
        let l3 = bind(&ProxyAddr::Tcp("127.0.0.1:0".parse().unwrap()), None).unwrap();
        let Listener::Tcp(ref tl3) = l3 else { panic!() };
        let addr3 = tl3.local_addr().unwrap();
        let relay3 = start(l3, ProxyAddr::Unix(usock), pid, "test3").unwrap();
        let mut c = std::net::TcpStream::connect(addr3).unwrap();
        c.write_all(b"unix!").unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"unix!");
        relay.stop();
        relay2.stop();
        relay3.stop();
        assert!(!sock.exists(), "the unix socket is removed on stop");
        // The port is free again.
        assert!(std::net::TcpListener::bind(addr).is_ok());
    }
}
