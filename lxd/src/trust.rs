//! Who is calling and what they may do. Unix-socket clients are trusted (the socket's
//! permissions are the access control); HTTPS clients are trusted when their certificate's
//! fingerprint is in the trust store. Untrusted clients reach only what LXD lets them: the
//! server description, adding their certificate (trust password or token), public images and
//! image secrets, operation websockets by secret. Everything else is a 403 "not authorized".

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;
use lxd_api::certificate::{CertificateAddToken, CertificatesPost};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

use crate::daemon::Daemon;

/// The caller of a request, as the HTTPS gate classified it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Over the unix socket.
    Local,
    /// Over HTTPS.
    Remote(RemoteCaller),
}

/// An HTTPS client: trusted when its certificate is in the trust store.
#[derive(Debug, Clone)]
pub struct RemoteCaller {
    pub trusted: bool,
    pub fingerprint: Option<String>,
    /// The client certificate's DER, when one was presented.
    pub cert: Option<std::sync::Arc<Vec<u8>>>,
    pub addr: SocketAddr,
}

impl Caller {
    pub fn is_trusted(&self) -> bool {
        match self {
            Caller::Local => true,
            Caller::Remote(r) => r.trusted,
        }
    }

    pub fn is_https(&self) -> bool {
        matches!(self, Caller::Remote(_))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Local))
    }
}

/// The requests an untrusted client may make (LXD's `AllowUntrusted` endpoints); `path` is the
/// raw (still percent-encoded) path.
pub fn allowed_untrusted(method: &Method, path: &str) -> bool {
    let segs: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match (method.as_str(), segs.as_slice()) {
        ("GET", []) | ("GET", ["1.0"]) => true,
        ("POST", ["1.0", "certificates"]) => true,
        ("GET", ["1.0", "images"]) => true,
        ("GET", ["1.0", "images", "aliases", _]) => true,
        ("GET", ["1.0", "images", fp]) => *fp != "aliases",
        ("GET", ["1.0", "images", _, "export"]) => true,
        ("GET", ["1.0", "operations", _, "websocket"]) => true,
        _ => false,
    }
}

const HASH_ROUNDS: u32 = 20_000;

fn stretch(salt: &[u8], password: &str) -> [u8; 32] {
    let mut h: [u8; 32] = Sha256::new()
        .chain_update(salt)
        .chain_update(password.as_bytes())
        .finalize()
        .into();
    for _ in 0..HASH_ROUNDS {
        h = Sha256::new()
            .chain_update(salt)
            .chain_update(h)
            .finalize()
            .into();
    }
    h
}

/// How `core.trust_password` is stored: never the password itself.
pub fn hash_password(password: &str) -> String {
    let salt = uuid::Uuid::new_v4();
    let h = stretch(salt.as_bytes(), password);
    format!(
        "sha256x{HASH_ROUNDS}${}${}",
        hex::encode(salt.as_bytes()),
        hex::encode(h)
    )
}

/// Check a password against the stored hash, in constant time over the hash bytes.
pub fn check_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.splitn(3, '$');
    let (Some(_), Some(salt), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (hex::decode(salt), hex::decode(hash)) else {
        return false;
    };
    if password.is_empty() || hash.len() != 32 {
        return false;
    }
    let got = stretch(&salt, password);
    got.iter().zip(&hash).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// A trust token as users copy it: base64 of its JSON.
pub fn encode_token(t: &CertificateAddToken) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(t).unwrap_or_default())
}

pub fn decode_token(s: &str) -> Option<CertificateAddToken> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .ok()?;
    let t: CertificateAddToken = serde_json::from_slice(&bytes).ok()?;
    (!t.secret.is_empty()).then_some(t)
}

/// Find the running trust-token operation with this secret and consume it (tokens are single
/// use); returns the request it was issued for.
pub fn redeem_token(d: &Daemon, secret: &str) -> Option<CertificatesPost> {
    for op in d.ops.list() {
        if op.class != "token" || op.status() != lxd_api::StatusCode::Running {
            continue;
        }
        let api = op.to_api();
        if api.metadata.get("secret").and_then(|s| s.as_str()) != Some(secret)
            || api.metadata.get("request").is_none()
        {
            continue;
        }
        op.cancel.cancel();
        return serde_json::from_value(api.metadata["request"].clone()).ok();
    }
    None
}

/// Whether `secret` is a live image secret for `fingerprint` (LXD `imageValidSecret`): the
/// operation is cancelled on first use, and the secret stays valid while the finished
/// operation is still listed, so a pull can fetch the image's record and then its files.
pub fn image_secret_valid(d: &Daemon, fingerprint: &str, secret: &str) -> bool {
    if secret.is_empty() {
        return false;
    }
    let url = format!("/1.0/images/{fingerprint}");
    for op in d.ops.list() {
        if op.class != "token" {
            continue;
        }
        let api = op.to_api();
        let for_image = api
            .resources
            .get("images")
            .is_some_and(|v| v.contains(&url));
        if for_image && api.metadata.get("secret").and_then(|s| s.as_str()) == Some(secret) {
            op.cancel.cancel();
            return true;
        }
    }
    false
}

/// The addresses a listen address is reachable at (LXD `ListenAddresses`): itself, or every
/// global address of the host with the port for a wildcard.
pub async fn listen_addresses(https_address: &str) -> Vec<String> {
    let Some((host, port)) = split_listen(https_address) else {
        return vec![];
    };
    let wildcard = host.is_empty() || host == "0.0.0.0" || host == "::";
    if !wildcard {
        return vec![join_host_port(&host, port)];
    }
    let mut out = Vec::new();
    let addrs = match lxd_network::link::Netlink::new() {
        Ok(nl) => nl.addresses(None).await.unwrap_or_default(),
        Err(_) => vec![],
    };
    for a in addrs {
        // Loopback and link-local addresses are no use to another machine.
        if a.scope != "global" || a.addr.is_loopback() || (host == "0.0.0.0" && a.addr.is_ipv6()) {
            continue;
        }
        let s = join_host_port(&a.addr.to_string(), port);
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Split `core.https_address` (`host`, `host:port`, `:port`, `[v6]:port`) into a host (empty
/// for "all addresses") and a port (8443 when left out).
pub fn split_listen(addr: &str) -> Option<(String, u16)> {
    let addr = addr.trim();
    if addr.is_empty() {
        return None;
    }
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Some((sa.ip().to_string(), sa.port()));
    }
    if let Ok(ip) = addr.parse::<std::net::IpAddr>() {
        return Some((ip.to_string(), 8443));
    }
    if let Some(v6) = addr.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        return Some((v6.to_string(), 8443));
    }
    match addr.rsplit_once(':') {
        Some((h, p)) => Some((h.trim_matches(['[', ']']).to_string(), p.parse().ok()?)),
        None => Some((addr.to_string(), 8443)),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_clients_reach_only_public_endpoints() {
        let get = Method::GET;
        assert!(allowed_untrusted(&get, "/1.0"));
        assert!(allowed_untrusted(&get, "/"));
        assert!(allowed_untrusted(&Method::POST, "/1.0/certificates"));
        assert!(allowed_untrusted(&get, "/1.0/images"));
        assert!(allowed_untrusted(&get, "/1.0/images/abcd"));
        assert!(allowed_untrusted(&get, "/1.0/images/abcd/export"));
        assert!(allowed_untrusted(&get, "/1.0/images/aliases/a%2Fb"));
        assert!(!allowed_untrusted(&get, "/1.0/images/aliases"));
        assert!(!allowed_untrusted(&Method::POST, "/1.0/images/abcd/secret"));
        assert!(!allowed_untrusted(&Method::DELETE, "/1.0/images/abcd"));
        assert!(!allowed_untrusted(&get, "/1.0/instances"));
        assert!(!allowed_untrusted(&get, "/1.0/certificates"));
        assert!(!allowed_untrusted(&get, "/1.0/events"));
        assert!(!allowed_untrusted(&Method::PUT, "/1.0"));
    }

    #[test]
    fn passwords_are_salted_and_checked() {
        let h = hash_password("sekret");
        assert!(!h.contains("sekret"));
        assert_ne!(h, hash_password("sekret"));
        assert!(check_password(&h, "sekret"));
        assert!(!check_password(&h, "sekret2"));
        assert!(!check_password(&h, ""));
        assert!(!check_password("garbage", "sekret"));
    }

    #[test]
    fn tokens_round_trip_like_lxd() {
        // A token printed by LXD 5.0.2's `lxc config trust add --name tok1`.
        let real = "eyJjbGllbnRfbmFtZSI6InRvazEiLCJmaW5nZXJwcmludCI6IjUxN2I3MGU5NDg4ZTcwOGRjYjk5Y2MwZGU4YjYyNDljZTM4OWU3NjM3ZDFhNDZmMDM2MjQ2YjQ5YjNhYzMxM2IiLCJhZGRyZXNzZXMiOlsiMTI3LjAuMC4xOjE4NDQzIl0sInNlY3JldCI6IjE5OTM2Y2FhNGVhMWE2ZjNmYzBhMzVjYWZiMmVjN2ZkYzM1Yzc4NjBiZGRiZTFmODQ3ZmFhYzA4ZjdjODVmZTMiLCJleHBpcmVzX2F0IjoiMDAwMS0wMS0wMVQwMDowMDowMFoifQ==";
        let t = decode_token(real).unwrap();
        assert_eq!(t.client_name, "tok1");
        assert_eq!(t.addresses, ["127.0.0.1:18443"]);
        assert_eq!(encode_token(&t), real);
        assert!(decode_token("sekret").is_none());
    }

    #[test]
    fn listen_addresses_split_like_lxd() {
        assert_eq!(
            split_listen("127.0.0.1:8443"),
            Some(("127.0.0.1".into(), 8443))
        );
        assert_eq!(split_listen(":9443"), Some(("".into(), 9443)));
        assert_eq!(split_listen("[::1]:9443"), Some(("::1".into(), 9443)));
        assert_eq!(split_listen("10.0.0.1"), Some(("10.0.0.1".into(), 8443)));
        assert_eq!(split_listen("[::]"), Some(("::".into(), 8443)));
        assert_eq!(split_listen(""), None);
    }

    #[tokio::test]
    async fn specific_listen_addresses_are_themselves() {
        assert_eq!(listen_addresses("127.0.0.1:8443").await, ["127.0.0.1:8443"]);
        assert_eq!(listen_addresses("[::1]:8443").await, ["[::1]:8443"]);
    }
}
