//! The client configuration (`$LXD_CONF/config.yml`, else `~/.config/lxc/config.yml`): remotes, the
//! default remote and command aliases, read and written the way LXD's `lxc/config` package does.
//! This module never talks to a server; connecting to a remote lives in `client/`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors of the configuration file and of `remote:name` parsing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Unable to read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Unable to decode the configuration {path}: {source}")]
    Decode {
        path: PathBuf,
        source: yaml_serde::Error,
    },
    #[error("Unable to write the configuration file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("Unable to encode the configuration: {0}")]
    Encode(#[from] yaml_serde::Error),
    #[error("The remote \"{0}\" doesn't exist")]
    NoSuchRemote(String),
}

/// A remote as stored in config.yml (LXD `lxc/config/remote.go`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    pub addr: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub auth_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub project: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    #[serde(default)]
    pub public: bool,
    /// Built in and not removable (`local`, `ubuntu`, `ubuntu-daily`); never written to the file.
    #[serde(skip)]
    pub is_static: bool,
    /// Defined system-wide; we have no global config file, so always false.
    #[serde(skip)]
    pub global: bool,
}

impl Remote {
    fn builtin(addr: &str, protocol: &str, public: bool, is_static: bool) -> Remote {
        Remote {
            addr: addr.to_string(),
            auth_type: String::new(),
            domain: String::new(),
            project: String::new(),
            protocol: protocol.to_string(),
            public,
            is_static,
            global: false,
        }
    }

    /// The protocol with LXD's default filled in.
    pub fn protocol(&self) -> &str {
        if self.protocol.is_empty() {
            "lxd"
        } else {
            &self.protocol
        }
    }

    pub fn is_simplestreams(&self) -> bool {
        self.protocol == "simplestreams"
    }

    pub fn is_unix(&self) -> bool {
        self.addr.starts_with("unix:")
    }

    /// The AUTH TYPE column of `lxc remote list`.
    pub fn auth_type_display(&self) -> String {
        if self.is_unix() {
            "file access".to_string()
        } else if self.is_simplestreams() || self.public {
            "none".to_string()
        } else if self.auth_type.is_empty() {
            "tls".to_string()
        } else {
            self.auth_type.clone()
        }
    }
}

pub const DEFAULT_REMOTE: &str = "local";

/// The remotes every configuration starts with (LXD `lxc/config/default.go`). `images` may be
/// removed or changed by the user; the others are static.
pub fn default_remotes() -> BTreeMap<String, Remote> {
    let mut m = BTreeMap::new();
    m.insert("local".into(), Remote::builtin("unix://", "", false, true));
    m.insert(
        "images".into(),
        Remote::builtin(
            "https://images.lxd.canonical.com",
            "simplestreams",
            true,
            false,
        ),
    );
    m.insert(
        "ubuntu".into(),
        Remote::builtin(
            "https://cloud-images.ubuntu.com/releases",
            "simplestreams",
            true,
            true,
        ),
    );
    m.insert(
        "ubuntu-daily".into(),
        Remote::builtin(
            "https://cloud-images.ubuntu.com/daily",
            "simplestreams",
            true,
            true,
        ),
    );
    m
}

fn static_remotes() -> BTreeMap<String, Remote> {
    default_remotes()
        .into_iter()
        .filter(|(_, r)| r.is_static)
        .collect()
}

/// The whole of config.yml.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    #[serde(rename = "default-remote", default)]
    pub default_remote: String,
    #[serde(default, deserialize_with = "null_default")]
    pub remotes: BTreeMap<String, Remote>,
    #[serde(default, deserialize_with = "null_default")]
    pub aliases: BTreeMap<String, String>,
    /// Where config.yml lives (not serialized).
    #[serde(skip)]
    pub dir: PathBuf,
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl Config {
    /// The configuration a first run starts with.
    pub fn default_in(dir: &Path) -> Config {
        Config {
            default_remote: DEFAULT_REMOTE.to_string(),
            remotes: default_remotes(),
            aliases: BTreeMap::new(),
            dir: dir.to_path_buf(),
        }
    }

    /// The configuration directory: `$LXD_CONF`, else `$HOME/.config/lxc`.
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("LXD_CONF").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(dirs::home_dir)
            .unwrap_or_else(|| PathBuf::from("/"));
        home.join(".config").join("lxc")
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("config.yml")
    }

    /// Parse config.yml text, then apply what LXD applies on load: static remotes always win
    /// and private remotes default to TLS authentication.
    pub fn parse(text: &str, dir: &Path) -> Result<Config, yaml_serde::Error> {
        let mut c: Config = if text.trim().is_empty() {
            Config::default_in(dir)
        } else {
            yaml_serde::from_str(text)?
        };
        c.dir = dir.to_path_buf();
        for r in c.remotes.values_mut() {
            if !r.public && r.auth_type.is_empty() && !r.is_unix() {
                r.auth_type = "tls".to_string();
            }
        }
        for (name, mut r) in static_remotes() {
            if let Some(existing) = c.remotes.get(&name) {
                r.project = existing.project.clone();
            }
            c.remotes.insert(name, r);
        }
        if c.default_remote.is_empty() {
            c.default_remote = DEFAULT_REMOTE.to_string();
        }
        Ok(c)
    }

    /// `$LXC_REMOTE` overrides the default remote for this run (never saved).
    pub fn apply_env(&mut self) {
        if let Some(env) = std::env::var("LXC_REMOTE").ok().filter(|s| !s.is_empty()) {
            self.default_remote = env;
        }
    }

    /// Load config.yml from `dir`; `Ok(None)` when it does not exist yet (first run).
    pub fn load(dir: &Path) -> Result<Option<Config>, Error> {
        let path = dir.join("config.yml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Read { path, source }),
        };
        Config::parse(&text, dir)
            .map(Some)
            .map_err(|source| Error::Decode { path, source })
    }

    /// The YAML written to config.yml: static remotes are left out, except `local`.
    pub fn to_yaml(&self) -> Result<String, Error> {
        let mut copy = self.clone();
        for (name, _) in static_remotes() {
            if name != DEFAULT_REMOTE {
                copy.remotes.remove(&name);
            }
        }
        Ok(yaml_serde::to_string(&copy)?)
    }

    pub fn save(&self) -> Result<(), Error> {
        let text = self.to_yaml()?;
        std::fs::create_dir_all(&self.dir).map_err(|source| Error::Write {
            path: self.dir.clone(),
            source,
        })?;
        let path = self.path();
        std::fs::write(&path, text).map_err(|source| Error::Write { path, source })
    }

    /// Split `[remote:]name` as LXD's `ParseRemote` does.
    pub fn parse_remote(&self, raw: &str) -> Result<(String, String), Error> {
        match raw.split_once(':') {
            None => Ok((self.default_remote.clone(), raw.to_string())),
            Some((remote, rest)) => {
                if self.remotes.contains_key(remote) {
                    return Ok((remote.to_string(), rest.to_string()));
                }
                // A snapshot name may contain ':' ("c1/snap:1").
                if raw.contains('/') && remote.contains('/') {
                    return Ok((self.default_remote.clone(), raw.to_string()));
                }
                Err(Error::NoSuchRemote(remote.to_string()))
            }
        }
    }

    pub fn remote(&self, name: &str) -> Result<&Remote, Error> {
        self.remotes
            .get(name)
            .ok_or_else(|| Error::NoSuchRemote(name.to_string()))
    }
}

/// The local unix socket, found as LXD finds it: `$LXD_SOCKET`, else `$LXD_DIR/unix.socket`,
/// else `/var/lib/lxd/unix.socket`.
pub fn local_socket_path() -> PathBuf {
    if let Some(s) = std::env::var_os("LXD_SOCKET").filter(|s| !s.is_empty()) {
        return PathBuf::from(s);
    }
    if let Some(d) = std::env::var_os("LXD_DIR").filter(|s| !s.is_empty()) {
        return PathBuf::from(d).join("unix.socket");
    }
    PathBuf::from("/var/lib/lxd/unix.socket")
}

/// The socket path of a `unix://` address: `unix://` alone means the local daemon.
pub fn unix_socket_of(addr: &str) -> PathBuf {
    let rest = addr.trim_start_matches("unix:").trim_start_matches("//");
    if rest.is_empty() {
        local_socket_path()
    } else {
        PathBuf::from(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_run_has_the_four_default_remotes() {
        let c = Config::default_in(Path::new("/tmp/x"));
        assert_eq!(c.default_remote, "local");
        let names: Vec<_> = c.remotes.keys().cloned().collect();
        assert_eq!(names, ["images", "local", "ubuntu", "ubuntu-daily"]);
        assert_eq!(c.remotes["images"].addr, "https://images.lxd.canonical.com");
        assert!(c.remotes["images"].is_simplestreams());
        assert!(c.remotes["local"].is_static);
        assert!(!c.remotes["images"].is_static);
    }

    #[test]
    fn parses_the_file_lxd_5_0_writes() {
        // Written by the real lxc 5.0.2 on its first run.
        let text = "default-remote: local\nremotes:\n  images:\n    addr: https://images.linuxcontainers.org\n    protocol: simplestreams\n    public: true\n  local:\n    addr: unix://\n    public: false\naliases: {}\n";
        let c = Config::parse(text, Path::new("/tmp/x")).unwrap();
        assert_eq!(c.default_remote, "local");
        assert_eq!(
            c.remotes["images"].addr,
            "https://images.linuxcontainers.org"
        );
        // Static remotes are always present even when the file omits them.
        assert!(c.remotes.contains_key("ubuntu"));
        assert!(c.remotes.contains_key("ubuntu-daily"));
        assert_eq!(c.remotes["local"].auth_type_display(), "file access");
        assert_eq!(c.remotes["images"].auth_type_display(), "none");
    }

    #[test]
    fn writes_without_static_remotes_except_local() {
        let c = Config::default_in(Path::new("/tmp/x"));
        let y = c.to_yaml().unwrap();
        assert_eq!(
            y,
            "default-remote: local\nremotes:\n  images:\n    addr: https://images.lxd.canonical.com\n    protocol: simplestreams\n    public: true\n  local:\n    addr: unix://\n    public: false\naliases: {}\n"
        );
        let back = Config::parse(&y, Path::new("/tmp/x")).unwrap();
        assert_eq!(back.remotes, c.remotes);
    }

    #[test]
    fn empty_and_null_sections_are_accepted() {
        let c = Config::parse(
            "default-remote: ''\nremotes: null\naliases:\n",
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(c.default_remote, "local");
        assert!(c.remotes.contains_key("local"));
        assert!(!c.remotes.contains_key("images"));
    }

    #[test]
    fn private_remotes_default_to_tls() {
        let c = Config::parse(
            "remotes:\n  srv:\n    addr: https://10.0.0.1:8443\n    public: false\n",
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(c.remotes["srv"].auth_type, "tls");
        assert_eq!(c.remotes["srv"].protocol(), "lxd");
    }

    #[test]
    fn parse_remote_splits_like_lxd() {
        let c = Config::default_in(Path::new("/x"));
        assert_eq!(c.parse_remote("c1").unwrap(), ("local".into(), "c1".into()));
        assert_eq!(
            c.parse_remote("images:alpine/3.19").unwrap(),
            ("images".into(), "alpine/3.19".into())
        );
        assert_eq!(
            c.parse_remote("local:").unwrap(),
            ("local".into(), "".into())
        );
        assert_eq!(
            c.parse_remote("c1/snap").unwrap(),
            ("local".into(), "c1/snap".into())
        );
        assert_eq!(
            c.parse_remote("nope:c1").unwrap_err().to_string(),
            "The remote \"nope\" doesn't exist"
        );
    }

    #[test]
    fn unix_addresses() {
        assert_eq!(
            unix_socket_of("unix:///run/x.socket"),
            PathBuf::from("/run/x.socket")
        );
    }
}
