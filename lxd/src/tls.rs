//! TLS material of the daemon: the server certificate (`$LXD_DIR/server.crt`/`server.key`,
//! generated on first start as LXD does: ECDSA P-384, O=linuxcontainers.org, CN=root@HOST),
//! fingerprints, the rustls server configuration of the HTTPS listener, and client
//! configurations for talking to other servers (a pinned certificate, or the system CAs).
//!
//! One crypto provider, aws-lc-rs. The system CAs are what `SSL_CERT_FILE`/`SSL_CERT_DIR` point
//! at when set (as Go's crypto/x509 reads them, so a real LXD sees the same store), else the
//! platform's bundle. Tests point `SSL_CERT_FILE` at their own CA; nothing skips verification.

use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use crate::error::{ApiError, Result, io_err};

/// A certificate and its private key, PEM, with the certificate's DER and fingerprint.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub fingerprint: String,
}

/// The sha256 of a certificate's DER, as LXD prints fingerprints.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// The first certificate of a PEM text.
pub fn parse_cert_pem(pem: &str) -> Result<CertificateDer<'static>> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("Invalid certificate: {e}")))
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

pub fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    provider().signature_verification_algorithms
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Generate a certificate the way LXD does for its server (`server: true`) or for a client.
pub fn generate(server: bool) -> Result<Identity> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose, PKCS_ECDSA_P384_SHA384, SanType,
    };
    let gen_err =
        |e: rcgen::Error| ApiError::internal(format!("Failed to generate a certificate: {e}"));
    let host = hostname();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).map_err(gen_err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "linuxcontainers.org");
    dn.push(DnType::CommonName, format!("root@{host}"));
    params.distinguished_name = dn;
    let now = jiff::Timestamp::now();
    let secs = now.as_second();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + std::time::Duration::from_secs((secs - 60).max(0) as u64);
    params.not_after = epoch + std::time::Duration::from_secs((secs + 10 * 365 * 86400) as u64);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    if server {
        if let Ok(name) = host.clone().try_into() {
            params.subject_alt_names.push(SanType::DnsName(name));
        }
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().expect("ip")));
        params
            .subject_alt_names
            .push(SanType::IpAddress("::1".parse().expect("ip")));
    }
    let cert = params.self_signed(&key).map_err(gen_err)?;
    let der = cert.der().clone();
    Ok(Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        fingerprint: fingerprint(&der),
        cert_der: der,
    })
}

impl Identity {
    /// Load `<stem>.crt`/`<stem>.key` from `dir`, generating them on first use.
    pub fn load_or_create(dir: &Path, stem: &str) -> Result<Identity> {
        let crt = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        if crt.exists() && key.exists() {
            let cert_pem = std::fs::read_to_string(&crt).map_err(|e| io_err("read", &crt, e))?;
            let key_pem = std::fs::read_to_string(&key).map_err(|e| io_err("read", &key, e))?;
            let der = parse_cert_pem(&cert_pem)?;
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
                ApiError::internal(format!("Invalid private key {}: {e}", key.display()))
            })?;
            return Ok(Identity {
                fingerprint: fingerprint(&der),
                cert_pem,
                key_pem,
                cert_der: der,
            });
        }
        let id = generate(true)?;
        write_private(&key, &id.key_pem)?;
        std::fs::write(&crt, &id.cert_pem).map_err(|e| io_err("write", &crt, e))?;
        Ok(id)
    }

    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| ApiError::internal(format!("Invalid private key: {e}")))
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_err("create", path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| io_err("write", path, e))
}

/// Client certificates are optional (untrusted clients must reach `GET /1.0` and
/// `POST /1.0/certificates`) and accepted whatever their issuer: trust is decided per request
/// from the trust store by fingerprint. The handshake still proves the client holds the key.
#[derive(Debug)]
struct AnyClientCert;

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// The HTTPS listener's configuration: our certificate, optional client certificates, HTTP/1.1
/// (websockets need the HTTP/1.1 upgrade).
pub fn server_config(id: &Identity) -> Result<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiError::internal(format!("TLS setup failed: {e}")))?
        .with_client_cert_verifier(Arc::new(AnyClientCert))
        .with_single_cert(vec![id.cert_der.clone()], id.private_key()?)
        .map_err(|e| ApiError::internal(format!("TLS setup failed: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Accepts exactly one server certificate, byte for byte (LXD pins the certificate it was
/// given for a remote: `source.certificate`, `servercerts/NAME.crt`).
#[derive(Debug)]
pub struct PinnedServerCert(pub CertificateDer<'static>);

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.0.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server certificate changed (fingerprint {}, expected {})",
                fingerprint(end_entity),
                fingerprint(&self.0)
            )))
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

/// The system CAs (`SSL_CERT_FILE`/`SSL_CERT_DIR` when set), loaded once.
pub fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = rustls::RootCertStore::empty();
            let res = rustls_native_certs::load_native_certs();
            for e in &res.errors {
                tracing::warn!("loading system CA certificates: {e}");
            }
            let (added, ignored) = store.add_parsable_certificates(res.certs);
            tracing::debug!(added, ignored, "system CA certificates");
            Arc::new(store)
        })
        .clone()
}

/// A client configuration for another server: pin `pinned` when given, else verify against
/// the system CAs; present `identity` as the client certificate when given.
pub fn client_config(
    pinned: Option<CertificateDer<'static>>,
    identity: Option<&Identity>,
) -> Result<rustls::ClientConfig> {
    let tls_err = |e: rustls::Error| ApiError::internal(format!("TLS setup failed: {e}"));
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?;
    let builder = match pinned {
        Some(cert) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServerCert(cert))),
        None => {
            let roots = system_roots();
            if roots.is_empty() {
                return Err(ApiError::internal(
                    "No trusted CA certificates found (SSL_CERT_FILE / SSL_CERT_DIR)",
                ));
            }
            builder.with_root_certificates(roots)
        }
    };
    let mut cfg = match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert_der.clone()], id.private_key()?)
            .map_err(tls_err)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_load_back_with_the_same_fingerprint() {
        let d = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(d.path(), "server").unwrap();
        let b = Identity::load_or_create(d.path(), "server").unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        assert_eq!(
            parse_cert_pem(&cert_to_pem(&a.cert_der)).unwrap(),
            a.cert_der
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        server_config(&a).unwrap();
        client_config(Some(a.cert_der.clone()), Some(&a)).unwrap();
    }
}
