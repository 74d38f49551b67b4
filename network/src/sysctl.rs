//! Host sysctls a managed bridge depends on: IPv4 and IPv6 forwarding, which LXD turns on when a
//! bridge routes or NATs (`driver_bridge.go`), and so do we, saying so in the log; and the
//! per-bridge IPv6 switches LXD sets (`disable_ipv6`, `autoconf`, `accept_dad`).

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

const IPV6_CONF: &str = "/proc/sys/net/ipv6/conf";

fn write(path: &str, value: &str) -> Result<(), Error> {
    std::fs::write(Path::new(path), format!("{value}\n")).map_err(|source| Error::Io {
        what: "write",
        path: path.into(),
        source,
    })
}

/// Whether the kernel has IPv6 at all.
pub fn has_ipv6() -> bool {
    Path::new(IPV6_CONF).exists()
}

/// The IPv6 switches of a managed bridge, as LXD sets them. With an address: IPv6 on, no
/// autoconfiguration and no DAD (the gateway address must be usable at once: dnsmasq binds it
/// right after), and no router advertisements accepted from instances. Without one: IPv6 off, so
/// the host is not reachable on a guessable link-local address of the bridge.
pub fn set_bridge_ipv6(bridge: &str, enabled: bool) -> Result<(), Error> {
    if !has_ipv6() {
        return Ok(());
    }
    let p = |k: &str| format!("{IPV6_CONF}/{bridge}/{k}");
    if enabled {
        write(&p("disable_ipv6"), "0")?;
        write(&p("autoconf"), "0")?;
        write(&p("accept_dad"), "0")?;
        write(&p("accept_ra"), "0")?;
    } else {
        write(&p("disable_ipv6"), "1")?;
    }
    Ok(())
}

/// What turning on IPv6 forwarding changed, for the log and the record.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ipv6ForwardChange {
    /// Previous `net.ipv6.conf.all.forwarding` when it was not 1.
    pub forwarding_was: Option<String>,
    /// Interfaces whose `accept_ra` went from 1 to 2.
    pub accept_ra_raised: Vec<String>,
}

/// Turn on IPv6 forwarding as LXD does for `ipv6.routing`: first `accept_ra` 1 -> 2 on every
/// interface (forwarding makes the kernel ignore router advertisements unless accept_ra is 2,
/// and the host may depend on them), then `forwarding=1` everywhere.
pub fn enable_ipv6_forward() -> Result<Ipv6ForwardChange, Error> {
    enable_ipv6_forward_in(IPV6_CONF)
}

fn enable_ipv6_forward_in(conf: &str) -> Result<Ipv6ForwardChange, Error> {
    let mut change = Ipv6ForwardChange::default();
    let all_fwd = format!("{conf}/all/forwarding");
    let old = read(&all_fwd)?;
    if old == "1" {
        return Ok(change);
    }
    let entries = std::fs::read_dir(conf).map_err(|source| Error::Io {
        what: "read",
        path: conf.into(),
        source,
    })?;
    let mut names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in &names {
        let ra = format!("{conf}/{n}/accept_ra");
        if read(&ra).ok().as_deref() == Some("1") {
            write(&ra, "2")?;
            change.accept_ra_raised.push(n.clone());
        }
    }
    write(&all_fwd, "1")?;
    for n in &names {
        // `all` propagates to every interface; set each anyway, as LXD does, for kernels where
        // it does not. An interface that went away meanwhile is not an error.
        let _ = write(&format!("{conf}/{n}/forwarding"), "1");
    }
    change.forwarding_was = Some(old);
    Ok(change)
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

    #[test]
    fn ipv6_forwarding_keeps_router_advertisements() {
        let dir = tempfile::tempdir().unwrap();
        for (n, ra) in [("all", "1"), ("default", "1"), ("eth0", "1"), ("lo", "0")] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
            std::fs::write(dir.path().join(n).join("accept_ra"), format!("{ra}\n")).unwrap();
            std::fs::write(dir.path().join(n).join("forwarding"), "0\n").unwrap();
        }
        let conf = dir.path().to_str().unwrap();
        let c = enable_ipv6_forward_in(conf).unwrap();
        assert_eq!(c.forwarding_was.as_deref(), Some("0"));
        assert_eq!(c.accept_ra_raised, ["all", "default", "eth0"]);
        assert_eq!(read(&format!("{conf}/eth0/accept_ra")).unwrap(), "2");
        assert_eq!(read(&format!("{conf}/lo/accept_ra")).unwrap(), "0");
        assert_eq!(read(&format!("{conf}/eth0/forwarding")).unwrap(), "1");
        assert_eq!(
            enable_ipv6_forward_in(conf).unwrap(),
            Ipv6ForwardChange::default()
        );
    }
}
