//! Image-server fixtures on loopback: a throwaway CA whose certificate file the daemons and
//! clients are told to trust through `SSL_CERT_FILE` (the variable Go's crypto/x509 reads, so
//! the real LXD and `lxc` trust it too; ours read it through rustls-native-certs), a small
//! HTTPS file server on 127.0.0.1 (random port) that records requests and can misbehave on
//! purpose, and a builder for simplestreams trees in the format of the public servers.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A CA that signs a certificate for 127.0.0.1; `ca_file` is its PEM for `SSL_CERT_FILE`.
#[derive(Debug)]
pub struct TestCa {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    cert_pem: String,
    key_pem: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca = CertificateParams::default();
        ca.distinguished_name
            .push(DnType::CommonName, "lxd-rs test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("ca key");
        let issuer = CertifiedIssuer::self_signed(ca, ca_key).expect("ca cert");
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .expect("leaf params");
        leaf.distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("leaf key");
        let cert = leaf.signed_by(&leaf_key, &issuer).expect("leaf cert");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, issuer.pem()).expect("write ca");
        TestCa {
            ca_file,
            cert_pem: cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            dir,
        }
    }

    /// The environment a daemon or client needs to trust this CA.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![(
            "SSL_CERT_FILE".to_string(),
            self.ca_file.to_string_lossy().into_owned(),
        )]
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A deliberate fault for one path of a [`FileServer`].
#[derive(Debug, Clone)]
pub enum Fault {
    /// Announce the full length but send only this many bytes, then close.
    Truncate(usize),
    /// Answer with this status and no body.
    Status(u16),
}

/// An HTTPS server for a directory tree on 127.0.0.1, one thread per connection.
#[derive(Debug)]
pub struct FileServer {
    pub url: String,
    pub port: u16,
    pub root: PathBuf,
    requests: Arc<Mutex<Vec<String>>>,
    faults: Arc<Mutex<HashMap<String, Fault>>>,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    pub fn start(root: &Path, ca: &TestCa) -> FileServer {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cert = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).expect("cert");
        let key = PrivateKeyDer::from_pem_slice(ca.key_pem.as_bytes()).expect("key");
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        let cfg = Arc::new(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let faults: Arc<Mutex<HashMap<String, Fault>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (root2, req2, faults2, stop2) = (
            root.to_path_buf(),
            requests.clone(),
            faults.clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (cfg, root, req, faults) =
                            (cfg.clone(), root2.clone(), req2.clone(), faults2.clone());
                        std::thread::spawn(move || {
                            let _ = tcp.set_nonblocking(false);
                            let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
                            let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            let mut tls = rustls::StreamOwned::new(conn, tcp);
                            serve_one(&mut tls, &root, &req, &faults);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FileServer {
            url: format!("https://127.0.0.1:{port}"),
            port,
            root: root.to_path_buf(),
            requests,
            faults,
            stop,
        }
    }

    /// The paths requested so far (GET requests, in order).
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests").clone()
    }

    pub fn clear_requests(&self) {
        self.requests.lock().expect("requests").clear();
    }

    pub fn set_fault(&self, path: &str, fault: Option<Fault>) {
        let mut f = self.faults.lock().expect("faults");
        match fault {
            Some(x) => f.insert(path.to_string(), x),
            None => f.remove(path),
        };
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve_one<S: Read + Write>(
    s: &mut S,
    root: &Path,
    requests: &Mutex<Vec<String>>,
    faults: &Mutex<HashMap<String, Fault>>,
) {
    let mut reader = BufReader::new(&mut *s);
    let mut first = String::new();
    if reader.read_line(&mut first).unwrap_or(0) == 0 {
        return;
    }
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    drop(reader);
    let mut parts = first.split_whitespace();
    let (method, raw) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let path = raw.split('?').next().unwrap_or("/").to_string();
    requests.lock().expect("requests").push(path.clone());
    let reply = |s: &mut S, status: &str, body: &[u8], announce: usize| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {announce}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
        );
        let _ = s.write_all(head.as_bytes());
        let _ = s.write_all(body);
        let _ = s.flush();
    };
    if method != "GET" {
        reply(s, "405 Method Not Allowed", b"", 0);
        return;
    }
    let fault = faults.lock().expect("faults").get(&path).cloned();
    if let Some(Fault::Status(code)) = fault {
        reply(s, &format!("{code} Fault"), b"", 0);
        return;
    }
    let rel = path.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") {
        reply(s, "403 Forbidden", b"", 0);
        return;
    }
    match std::fs::read(root.join(rel)) {
        Ok(body) => match fault {
            Some(Fault::Truncate(n)) => reply(s, "200 OK", &body[..n.min(body.len())], body.len()),
            _ => reply(s, "200 OK", &body, body.len()),
        },
        Err(_) => reply(s, "404 Not Found", b"", 0),
    }
}

pub fn sha256_file(p: &Path) -> String {
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(p).expect("open for hashing");
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).expect("read for hashing");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

fn sha256_concat(a: &Path, b: &Path) -> String {
    let mut h = Sha256::new();
    for p in [a, b] {
        h.update(std::fs::read(p).expect("read"));
    }
    hex::encode(h.finalize())
}

fn sh(cmd: &str) {
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .expect("sh");
    assert!(st.success(), "{cmd}");
}

/// How a version's files are laid out in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One `lxd_combined.tar.gz`.
    Unified,
    /// `lxd.tar.xz` + `root.squashfs` (and `root.tar.xz`).
    SplitSquashfs,
    /// `lxd.tar.xz` + `root.tar.xz` only.
    SplitTarXz,
}

/// One product of a stream: its identity and its versions.
#[derive(Debug, Clone)]
pub struct ProductSpec {
    pub id: String,
    pub aliases: Vec<String>,
    pub os: String,
    pub release: String,
    pub release_title: String,
    pub arch: String,
}

/// A simplestreams tree under `root`: `streams/v1/index.json`, `streams/v1/images.json` and
/// the files under `images/`, rewritten whenever a version is added.
#[derive(Debug)]
pub struct StreamsTree {
    pub root: PathBuf,
    products: BTreeMap<String, serde_json::Value>,
}

/// What a version's files hash to.
#[derive(Debug, Clone)]
pub struct AddedVersion {
    pub fingerprint: String,
    pub files: Vec<PathBuf>,
}

impl StreamsTree {
    pub fn new(root: &Path) -> StreamsTree {
        std::fs::create_dir_all(root.join("streams/v1")).expect("mkdir");
        let t = StreamsTree {
            root: root.to_path_buf(),
            products: BTreeMap::new(),
        };
        t.write();
        t
    }

    /// Add `version` (e.g. `20240101_0000`) of `p` built from the unified image `tarball`.
    pub fn add(
        &mut self,
        p: &ProductSpec,
        version: &str,
        tarball: &Path,
        layout: Layout,
    ) -> AddedVersion {
        let rel_dir = format!("images/{}/{version}", p.id.replace(':', "/"));
        let dir = self.root.join(&rel_dir);
        std::fs::create_dir_all(&dir).expect("mkdir version");
        let mut items = serde_json::Map::new();
        let item = |ftype: &str, name: &str, path: &Path| {
            serde_json::json!({
                "ftype": ftype,
                "path": format!("{rel_dir}/{name}"),
                "sha256": sha256_file(path),
                "size": std::fs::metadata(path).expect("stat").len(),
            })
        };
        let added = match layout {
            Layout::Unified => {
                let f = dir.join("lxd_combined.tar.gz");
                sh(&format!(
                    "xz -dc {} | gzip -n -c > {}",
                    tarball.display(),
                    f.display()
                ));
                items.insert(
                    "lxd_combined.tar.gz".into(),
                    item("lxd_combined.tar.gz", "lxd_combined.tar.gz", &f),
                );
                AddedVersion {
                    fingerprint: sha256_file(&f),
                    files: vec![f],
                }
            }
            Layout::SplitSquashfs | Layout::SplitTarXz => {
                let x = dir.join("x");
                let meta = dir.join("lxd.tar.xz");
                let rootxz = dir.join("root.tar.xz");
                sh(&format!(
                    "rm -rf {x} && mkdir {x} && xz -dc {t} | tar -C {x} -xf - && tar -C {x} --sort=name --mtime=@1700000000 --numeric-owner -cf - metadata.yaml templates | xz -T1 -c > {m} && tar -C {x}/rootfs --sort=name --mtime=@1700000000 --numeric-owner -cf - . | xz -T1 -c > {r}",
                    x = x.display(),
                    t = tarball.display(),
                    m = meta.display(),
                    r = rootxz.display()
                ));
                let mut m = item("lxd.tar.xz", "lxd.tar.xz", &meta);
                m["combined_rootxz_sha256"] = sha256_concat(&meta, &rootxz).into();
                m["combined_sha256"] = m["combined_rootxz_sha256"].clone();
                items.insert(
                    "root.tar.xz".into(),
                    item("root.tar.xz", "root.tar.xz", &rootxz),
                );
                let mut files = vec![meta.clone(), rootxz.clone()];
                let fingerprint = if layout == Layout::SplitSquashfs {
                    let sq = dir.join("root.squashfs");
                    sh(&format!(
                        "mksquashfs {}/rootfs {} -quiet -noappend -all-root >/dev/null",
                        x.display(),
                        sq.display()
                    ));
                    m["combined_squashfs_sha256"] = sha256_concat(&meta, &sq).into();
                    items.insert(
                        "root.squashfs".into(),
                        item("squashfs", "root.squashfs", &sq),
                    );
                    files.push(sq);
                    m["combined_squashfs_sha256"].as_str().unwrap().to_string()
                } else {
                    m["combined_rootxz_sha256"].as_str().unwrap().to_string()
                };
                items.insert("lxd.tar.xz".into(), m);
                sh(&format!("rm -rf {}", x.display()));
                AddedVersion { fingerprint, files }
            }
        };
        let entry = self.products.entry(p.id.clone()).or_insert_with(|| {
            serde_json::json!({
                "aliases": p.aliases.join(","),
                "arch": p.arch,
                "os": p.os,
                "release": p.release,
                "release_title": p.release_title,
                "variant": "default",
                "versions": {},
            })
        });
        entry["versions"][version] = serde_json::json!({"items": items});
        self.write();
        added
    }

    /// Replace the index with arbitrary JSON (bad-input tests).
    pub fn write_raw(&self, rel: &str, text: &str) {
        std::fs::write(self.root.join(rel), text).expect("write raw");
    }

    fn write(&self) {
        let products = serde_json::json!({
            "content_id": "images",
            "datatype": "image-downloads",
            "format": "products:1.0",
            "products": self.products,
        });
        std::fs::write(
            self.root.join("streams/v1/images.json"),
            serde_json::to_vec_pretty(&products).expect("json"),
        )
        .expect("write images.json");
        let index = serde_json::json!({
            "format": "index:1.0",
            "index": {
                "images": {
                    "datatype": "image-downloads",
                    "path": "streams/v1/images.json",
                    "format": "products:1.0",
                    "products": self.products.keys().collect::<Vec<_>>(),
                }
            }
        });
        std::fs::write(
            self.root.join("streams/v1/index.json"),
            serde_json::to_vec_pretty(&index).expect("json"),
        )
        .expect("write index.json");
    }
}

/// A port on 127.0.0.1 nobody listens on right now (for `core.https_address`).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}
