//! Host sysctls a managed bridge depends on. Only IPv4 forwarding so far: LXD turns it on when a
//! bridge routes or NATs (`driver_bridge.go`), and so do we, saying so in the log.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

pub const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

pub fn read(path: &str) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|source| Error::Io {
            what: "read",
            path: path.into(),
            source,
        })
}

/// Turn on IPv4 forwarding. Returns the previous value when it changed anything (so the caller
/// can log and record it), None when it was already on.
pub fn enable_ip_forward() -> Result<Option<String>, Error> {
    enable(IP_FORWARD)
}

fn enable(path: &str) -> Result<Option<String>, Error> {
    let old = read(path)?;
    if old == "1" {
        return Ok(None);
    }
    std::fs::write(Path::new(path), "1\n").map_err(|source| Error::Io {
        what: "write",
        path: path.into(),
        source,
    })?;
    Ok(Some(old))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enables_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ip_forward");
        std::fs::write(&p, "0\n").unwrap();
        let p = p.to_str().unwrap();
        assert_eq!(enable(p).unwrap().as_deref(), Some("0"));
        assert_eq!(read(p).unwrap(), "1");
        assert_eq!(enable(p).unwrap(), None);
    }
}
