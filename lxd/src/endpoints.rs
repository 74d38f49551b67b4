//! Where requests come in: the unix socket `$LXD_DIR/unix.socket` (mode 0660, group from
//! `--group`; every local client is trusted, the socket permissions are the access control),
//! and the HTTPS listener on `core.https_address` (client certificates, checked against the
//! trust store per request by `trust`; started, moved and stopped live with the config key).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::net::UnixListener;

use crate::error::{ApiError, Result, io_err};

/// Bind the unix socket, refusing to steal it from a daemon that is still answering.
pub async fn bind_unix(path: &Path, group: Option<&str>) -> Result<UnixListener> {
    if path.exists() {
        if tokio::net::UnixStream::connect(path).await.is_ok() {
            return Err(ApiError::conflict(format!(
                "LXD is already running (socket {} is in use)",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(|e| io_err("remove stale socket", path, e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io_err("bind", path, e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(|e| io_err("set permissions on", path, e))?;
    let gid = match group {
        None | Some("") => None,
        Some(g) => Some(resolve_group(g)?),
    };
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
            ApiError::internal(format!(
                "Failed to change the group of {}: {e}",
                path.display()
            ))
        })?;
    }
    Ok(listener)
}

fn resolve_group(name: &str) -> Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        Ok(None) => Err(ApiError::bad_request(format!(
            "Group \"{name}\" does not exist"
        ))),
        Err(e) => Err(ApiError::internal(format!(
            "Failed to look up group \"{name}\": {e}"
        ))),
    }
}

/// The HTTPS side: the server certificate (loaded or generated once) and the listener on
/// `core.https_address`, replaced live when that key changes.
#[derive(Debug, Default)]
pub struct Https {
    identity: std::sync::OnceLock<std::sync::Arc<crate::tls::Identity>>,
    listener: tokio::sync::Mutex<Option<HttpsListener>>,
}

#[derive(Debug)]
struct HttpsListener {
    address: String,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// The daemon's server certificate, generated into `$LXD_DIR/server.{crt,key}` on first use.
pub fn identity(d: &crate::daemon::Daemon) -> Result<std::sync::Arc<crate::tls::Identity>> {
    if let Some(id) = d.https.identity.get() {
        return Ok(id.clone());
    }
    let id = std::sync::Arc::new(crate::tls::Identity::load_or_create(&d.dir, "server")?);
    Ok(d.https.identity.get_or_init(|| id).clone())
}

/// The address the HTTPS listener currently serves, if any.
pub async fn https_address(d: &crate::daemon::Daemon) -> Option<String> {
    d.https
        .listener
        .lock()
        .await
        .as_ref()
        .map(|l| l.address.clone())
}

/// At daemon start: make sure the server certificate exists and listen on
/// `core.https_address` when it is set. A listener that cannot bind is logged, not fatal.
pub async fn start_network(d: &std::sync::Arc<crate::daemon::Daemon>) -> Result<()> {
    identity(d)?;
    let addr =
        d.db.server_config_get("core.https_address")?
            .unwrap_or_default();
    if let Err(e) = set_https_address(d, &addr).await {
        tracing::error!(address = %addr, "HTTPS listener not started: {e}");
    }
    Ok(())
}

/// Serve HTTPS on `address` (empty: stop serving). The new socket is bound before the old one
/// is closed, so a bad address leaves the current listener (and config) untouched.
pub async fn set_https_address(
    d: &std::sync::Arc<crate::daemon::Daemon>,
    address: &str,
) -> Result<()> {
    let mut cur = d.https.listener.lock().await;
    if cur.as_ref().map(|l| l.address.as_str()).unwrap_or("") == address {
        return Ok(());
    }
    let bound = if address.is_empty() {
        None
    } else {
        let (host, port) = crate::trust::split_listen(address)
            .ok_or_else(|| ApiError::bad_request(format!("Invalid HTTPS address \"{address}\"")))?;
        let host = if host.is_empty() {
            "::".to_string()
        } else {
            host
        };
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let l = bind_tcp(&target).await.map_err(|e| {
            ApiError::bad_request(format!("Cannot listen on https socket \"{address}\": {e}"))
        })?;
        Some(l)
    };
    if let Some(old) = cur.take() {
        old.stop.cancel();
        let _ = old.task.await;
    }
    if let Some(listener) = bound {
        let id = identity(d)?;
        let cfg = crate::tls::server_config(&id)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
        let stop = d.stop.child_token();
        let task = tokio::spawn(serve_https(d.clone(), listener, acceptor, stop.clone()));
        tracing::info!(%address, "HTTPS listener started");
        *cur = Some(HttpsListener {
            address: address.to_string(),
            stop,
            task,
        });
    }
    Ok(())
}

async fn bind_tcp(target: &str) -> std::io::Result<tokio::net::TcpListener> {
    // A wildcard IPv6 socket also takes IPv4 (dual stack), as Go's ":8443" does.
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(target).await?.collect();
    let mut last = std::io::Error::other("no address");
    for a in addrs {
        let sock = if a.is_ipv6() {
            tokio::net::TcpSocket::new_v6()?
        } else {
            tokio::net::TcpSocket::new_v4()?
        };
        sock.set_reuseaddr(true)?;
        match sock.bind(a).and_then(|_| sock.listen(128)) {
            Ok(l) => return Ok(l),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn serve_https(
    d: std::sync::Arc<crate::daemon::Daemon>,
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    stop: tokio_util::sync::CancellationToken,
) {
    let app = crate::api::router(d.clone());
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("HTTPS accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // As Go's net package (and so LXD) does: small writes of an interactive stream (the
        // rsync generator's requests during a migration, exec input) go out at once instead of
        // waiting for the peer's delayed ACK.
        let _ = tcp.set_nodelay(true);
        // Connections end with the daemon, not with the listener: the request that moved
        // `core.https_address` still gets its answer.
        let (d, app, acceptor) = (d.clone(), app.clone(), acceptor.clone());
        let stop = d.stop.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => return,
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| std::sync::Arc::new(c.as_ref().to_vec()));
            let svc = hyper::service::service_fn(move |req| {
                gate(d.clone(), app.clone(), cert.clone(), peer, req)
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .with_upgrades();
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, "HTTPS connection: {e}");
                },
                _ = stop.cancelled() => {}
            }
        });
    }
}

/// Classify the caller of one HTTPS request (trust is looked up per request, so a client that
/// just added its certificate is trusted on the same connection) and refuse what an untrusted
/// client may not do.
async fn gate(
    d: std::sync::Arc<crate::daemon::Daemon>,
    app: axum::Router,
    cert: Option<std::sync::Arc<Vec<u8>>>,
    addr: std::net::SocketAddr,
    mut req: axum::http::Request<hyper::body::Incoming>,
) -> std::result::Result<axum::response::Response, std::convert::Infallible> {
    use axum::response::IntoResponse;
    use tower::ServiceExt;
    let fingerprint = cert.as_ref().map(|c| crate::tls::fingerprint(c));
    let trusted = match &fingerprint {
        Some(f) => d.db.certificate_trusted(f).unwrap_or(false),
        None => false,
    };
    let caller = crate::trust::Caller::Remote(crate::trust::RemoteCaller {
        trusted,
        fingerprint,
        cert,
        addr,
    });
    if !caller.is_trusted() && !crate::trust::allowed_untrusted(req.method(), req.uri().path()) {
        return Ok(ApiError::forbidden("not authorized").into_response());
    }
    req.extensions_mut().insert(caller);
    let req = req.map(axum::body::Body::new);
    match app.oneshot(req).await {
        Ok(r) => Ok(r),
        Err(e) => match e {},
    }
}
