//! TLS for HTTPS remotes, as LXD's client does it: our client certificate
//! (`$LXD_CONF/client.{crt,key}`, generated on first need: ECDSA P-384, CN=USER@HOST), the
//! server certificate pinned at `lxc remote add` (`servercerts/NAME.crt`, compared byte for
//! byte), or else the system CAs (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set). One crypto
//! provider (aws-lc-rs); nothing skips verification except fetching a certificate to show it.

use rustls::DigitallySignedStruct;
use rustls::SignatureScheme;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use super::Error;

pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

/// sha256 of a certificate's DER, as LXD prints fingerprints.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

pub fn cert_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

pub fn parse_cert_pem(pem: &str) -> Result<CertificateDer<'static>, Error> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| Error::Other(format!("Invalid certificate: {e}")))
}

/// The client certificate and key of a configuration directory.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClientIdentity {
    pub fn exists(dir: &Path) -> bool {
        dir.join("client.crt").exists() && dir.join("client.key").exists()
    }

    pub fn load(dir: &Path) -> Result<Option<ClientIdentity>, Error> {
        if !Self::exists(dir) {
            return Ok(None);
        }
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map_err(|e| Error::Other(format!("Failed to read {}: {e}", dir.join(f).display())))
        };
        Ok(Some(ClientIdentity {
            cert_pem: read("client.crt")?,
            key_pem: read("client.key")?,
        }))
    }

    /// Generate `client.crt`/`client.key` in `dir` (LXD's `GenerateClientCertificate`).
    pub fn generate(dir: &Path) -> Result<ClientIdentity, Error> {
        use rcgen::{
            CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
            KeyUsagePurpose, PKCS_ECDSA_P384_SHA384,
        };
        let err = |e: rcgen::Error| Error::Other(format!("Failed to generate a certificate: {e}"));
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(err)?;
        let mut params = CertificateParams::default();
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "root".into());
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "linuxcontainers.org");
        dn.push(DnType::CommonName, format!("{user}@{host}"));
        params.distinguished_name = dn;
        let now = jiff::Timestamp::now().as_second();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + std::time::Duration::from_secs((now - 60).max(0) as u64);
        params.not_after = epoch + std::time::Duration::from_secs((now + 10 * 365 * 86400) as u64);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.self_signed(&key).map_err(err)?;
        let id = ClientIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Other(format!("Failed to create {}: {e}", dir.display())))?;
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let p = dir.join("client.key");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&p)
                .and_then(|mut f| f.write_all(id.key_pem.as_bytes()).map(|_| f))
                .map_err(|e| Error::Other(format!("Failed to write {}: {e}", p.display())))?;
            let _ = f.flush();
        }
        let p = dir.join("client.crt");
        std::fs::write(&p, &id.cert_pem)
            .map_err(|e| Error::Other(format!("Failed to write {}: {e}", p.display())))?;
        Ok(id)
    }

    pub fn cert_der(&self) -> Result<CertificateDer<'static>, Error> {
        parse_cert_pem(&self.cert_pem)
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, Error> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| Error::Other(format!("Invalid client key: {e}")))
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone)]
pub enum ServerTrust {
    /// Exactly this certificate (`servercerts/NAME.crt`).
    Pinned(CertificateDer<'static>),
    /// The system CAs.
    System,
    /// Anything, recording what was presented: only to show a certificate's fingerprint
    /// before the user accepts it.
    Capture(Arc<Mutex<Option<CertificateDer<'static>>>>),
}

#[derive(Debug)]
struct Verifier(ServerTrust);

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match &self.0 {
            ServerTrust::Pinned(want) if end_entity.as_ref() == want.as_ref() => {
                Ok(ServerCertVerified::assertion())
            }
            ServerTrust::Pinned(want) => Err(rustls::Error::General(format!(
                "the server's certificate changed: its fingerprint is {}, expected {}",
                fingerprint(end_entity),
                fingerprint(want)
            ))),
            ServerTrust::Capture(slot) => {
                *slot.lock().expect("cert slot") = Some(end_entity.clone().into_owned());
                Ok(ServerCertVerified::assertion())
            }
            ServerTrust::System => Err(rustls::Error::General("unreachable".into())),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            Arc::new(store)
        })
        .clone()
}

/// A rustls client configuration for one remote.
pub fn client_config(
    trust: ServerTrust,
    identity: Option<&ClientIdentity>,
) -> Result<rustls::ClientConfig, Error> {
    let tls_err = |e: rustls::Error| Error::Other(format!("TLS setup failed: {e}"));
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let builder = match trust {
        ServerTrust::System => {
            let roots = system_roots();
            if roots.is_empty() {
                return Err(Error::Other(
                    "No trusted CA certificates found (SSL_CERT_FILE / SSL_CERT_DIR)".into(),
                ));
            }
            builder.with_root_certificates(roots)
        }
        other => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier(other))),
    };
    let mut cfg = match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert_der()?], id.key()?)
            .map_err(tls_err)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Connect to `url`'s host and return the certificate it presents, whoever signed it (LXD's
/// `GetRemoteCertificate`, shown to the user before it is pinned).
pub async fn fetch_server_certificate(url: &str) -> Result<CertificateDer<'static>, Error> {
    let slot = Arc::new(Mutex::new(None));
    let cfg = client_config(ServerTrust::Capture(slot.clone()), None)?;
    let (host, port) = host_port(url)?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Error::Connect(format!("Unable to connect to {url}: {e}")))?;
    let name = server_name(&host)?;
    let conn = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    conn.connect(name, tcp)
        .await
        .map_err(|e| Error::Connect(format!("Unable to connect to {url}: {e}")))?;
    let cert = slot.lock().expect("cert slot").take();
    cert.ok_or_else(|| Error::Connect(format!("{url} presented no certificate")))
}

/// Host and port of an https:// URL (443 by default).
pub fn host_port(url: &str) -> Result<(String, u16), Error> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| Error::Other(format!("Not an https URL: {url}")))?;
    let hostport = rest.split('/').next().unwrap_or(rest);
    if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6
            .split_once(']')
            .ok_or_else(|| Error::Other(format!("Invalid URL {url}")))?;
        let port = p.strip_prefix(':').map(str::parse).transpose();
        return Ok((h.to_string(), port.ok().flatten().unwrap_or(443)));
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse()
                .map_err(|_| Error::Other(format!("Invalid port in {url}")))?,
        )),
        None => Ok((hostport.to_string(), 443)),
    }
}

pub fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    ServerName::try_from(host.to_string())
        .map_err(|e| Error::Other(format!("Invalid host name {host}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(
            host_port("https://127.0.0.1:8443").unwrap(),
            ("127.0.0.1".into(), 8443)
        );
        assert_eq!(
            host_port("https://[::1]:9443/x").unwrap(),
            ("::1".into(), 9443)
        );
        assert_eq!(
            host_port("https://images.example/streams").unwrap(),
            ("images.example".into(), 443)
        );
    }

    #[test]
    fn generated_identity_loads_and_configures() {
        let d = tempfile::tempdir().unwrap();
        let id = ClientIdentity::generate(d.path()).unwrap();
        let back = ClientIdentity::load(d.path()).unwrap().unwrap();
        assert_eq!(id.cert_pem, back.cert_pem);
        let der = back.cert_der().unwrap();
        let s = lxd_api::certificate::summarize_der(&der).unwrap();
        assert!(s.common_name.contains('@'), "{}", s.common_name);
        client_config(ServerTrust::Pinned(der), Some(&back)).unwrap();
    }
}
