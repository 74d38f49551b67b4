//! Host links over rtnetlink: bridges, veth pairs, macvlans, addresses, moving a link into a
//! container's network namespace. Async (rtnetlink runs on tokio); every call names the
//! interface it failed on.

use futures_util::TryStreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
    MacVlanMode,
};
use rtnetlink::{Handle, LinkBridge, LinkMacVlan, LinkUnspec, LinkVeth};
use std::net::IpAddr;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("network interface \"{0}\" not found")]
    NotFound(String),
    #[error("network interface \"{0}\" already exists")]
    Exists(String),
    #[error("failed to {what} {name}: {source}")]
    Netlink {
        what: &'static str,
        name: String,
        source: std::io::Error,
    },
}

/// What we need to know about one link.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `bridge`, `veth`, `macvlan`, ... (None for plain devices such as `lo` or a physical NIC).
    pub kind: Option<String>,
    pub mac: String,
    pub mtu: u32,
    /// Index of the bridge (or other controller) the link is enslaved to.
    pub master: Option<u32>,
    pub up: bool,
    pub lower_up: bool,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
}

/// One address of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
    /// LXD's scope words: `global`, `link`, `local` (host).
    pub scope: &'static str,
}

fn to_io(e: rtnetlink::Error) -> std::io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => std::io::Error::other(other.to_string()),
    }
}

fn errno(e: &rtnetlink::Error) -> i32 {
    match e {
        rtnetlink::Error::NetlinkError(m) => -m.raw_code(),
        _ => 0,
    }
}

fn nl<'a>(what: &'static str, name: &'a str) -> impl FnOnce(rtnetlink::Error) -> Error + 'a {
    move |e| match errno(&e) {
        libc_errno::EEXIST if what.starts_with("create") => Error::Exists(name.into()),
        libc_errno::ENODEV => Error::NotFound(name.into()),
        _ => Error::Netlink {
            what,
            name: name.into(),
            source: to_io(e),
        },
    }
}

/// The errno values we tell apart (nix's Errno as plain integers, for matching).
mod libc_errno {
    pub const EEXIST: i32 = nix::errno::Errno::EEXIST as i32;
    pub const ENODEV: i32 = nix::errno::Errno::ENODEV as i32;
}

fn parse_link(m: &LinkMessage) -> Link {
    let mut l = Link {
        index: m.header.index,
        up: m.header.flags.contains(LinkFlags::Up),
        lower_up: m.header.flags.contains(LinkFlags::LowerUp),
        ..Default::default()
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => l.name = n.clone(),
            LinkAttribute::Address(mac) => l.mac = crate::format_mac(mac),
            LinkAttribute::Mtu(mtu) => l.mtu = *mtu,
            LinkAttribute::Controller(c) => l.master = Some(*c),
            LinkAttribute::Stats64(s) => {
                l.rx_bytes = s.rx_bytes;
                l.tx_bytes = s.tx_bytes;
                l.rx_packets = s.rx_packets;
                l.tx_packets = s.tx_packets;
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        l.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    l
}

/// A netlink connection in the network namespace of the calling thread at creation time.
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Open a connection; must run inside a tokio runtime (the connection task is spawned on it).
    pub fn new() -> Result<Netlink, Error> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(Error::Socket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    pub async fn links(&self) -> Result<Vec<Link>, Error> {
        let mut s = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("list", "links"))? {
            out.push(parse_link(&m));
        }
        Ok(out)
    }

    pub async fn link(&self, name: &str) -> Result<Option<Link>, Error> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(parse_link(&m))),
            Ok(None) => Ok(None),
            Err(e) if matches!(errno(&e), libc_errno::ENODEV) => Ok(None),
            Err(e) => Err(nl("look up", name)(e)),
        }
    }

    pub async fn require(&self, name: &str) -> Result<Link, Error> {
        self.link(name)
            .await?
            .ok_or_else(|| Error::NotFound(name.into()))
    }

    /// Create a bridge (STP off, so ports forward at once), optionally with an MTU and MAC, up.
    pub async fn create_bridge(
        &self,
        name: &str,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
    ) -> Result<Link, Error> {
        let mut b = LinkBridge::new(name);
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        if let Some(mac) = mac {
            b = b.address(mac.to_vec());
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(nl("create bridge", name))?;
        self.require(name).await
    }

    /// Create a veth pair. The host end is up; the peer (which goes into the container) gets the
    /// instance's MAC and stays down until it is inside.
    pub async fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_mac: Option<[u8; 6]>,
        mtu: Option<u32>,
    ) -> Result<(), Error> {
        let mut p = LinkUnspec::new_with_name(peer);
        if let Some(mac) = peer_mac {
            p = p.address(mac.to_vec());
        }
        if let Some(m) = mtu {
            p = p.mtu(m);
        }
        let mut v = LinkVeth::new(host, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())))
            .up();
        if let Some(m) = mtu {
            v = v.mtu(m);
        }
        self.handle
            .link()
            .add(v.build())
            .execute()
            .await
            .map_err(nl("create veth", host))
    }

    /// Create a macvlan (bridge mode) on `parent`.
    pub async fn create_macvlan(
        &self,
        name: &str,
        parent: u32,
        mac: Option<[u8; 6]>,
        mtu: Option<u32>,
    ) -> Result<(), Error> {
        let mut m = LinkMacVlan::new(name, parent, MacVlanMode::Bridge);
        if let Some(mac) = mac {
            m = m.address(mac.to_vec());
        }
        if let Some(mtu) = mtu {
            m = m.mtu(mtu);
        }
        self.handle
            .link()
            .add(m.build())
            .execute()
            .await
            .map_err(nl("create macvlan", name))
    }

    pub async fn set_master(&self, index: u32, master: u32, name: &str) -> Result<(), Error> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).controller(master).build())
            .execute()
            .await
            .map_err(nl("attach to its bridge", name))
    }

    pub async fn set_up(&self, index: u32, name: &str) -> Result<(), Error> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl("bring up", name))
    }

    pub async fn set_mtu(&self, index: u32, mtu: u32, name: &str) -> Result<(), Error> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .map_err(nl("set the MTU of", name))
    }

    /// Move a link into the network namespace of `pid` and rename it there in one message
    /// (`ip link set dev X netns PID name Y`).
    pub async fn move_to_netns(
        &self,
        index: u32,
        pid: u32,
        new_name: &str,
        name: &str,
    ) -> Result<(), Error> {
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .setns_by_pid(pid)
                    .name(new_name.to_string())
                    .build(),
            )
            .execute()
            .await
            .map_err(nl("move into the container", name))
    }

    pub async fn delete(&self, index: u32, name: &str) -> Result<(), Error> {
        self.handle
            .link()
            .del(index)
            .execute()
            .await
            .map_err(nl("delete", name))
    }

    /// Delete a link by name if it exists; true when something was deleted.
    pub async fn delete_by_name(&self, name: &str) -> Result<bool, Error> {
        match self.link(name).await? {
            Some(l) => match self.delete(l.index, name).await {
                Ok(()) | Err(Error::NotFound(_)) => Ok(true),
                Err(e) => Err(e),
            },
            None => Ok(false),
        }
    }

    /// IPv4 and IPv6 addresses (all links when `index` is None).
    pub async fn addresses(&self, index: Option<u32>) -> Result<Vec<Address>, Error> {
        let mut req = self.handle.address().get();
        if let Some(i) = index {
            req = req.set_link_index_filter(i);
        }
        let mut s = req.execute();
        let mut out = Vec::new();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(nl("list addresses of", "links"))?
        {
            if let Some(a) = parse_address(&m) {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub async fn add_address(
        &self,
        index: u32,
        net: impl Into<IpNet>,
        name: &str,
    ) -> Result<(), Error> {
        let net: IpNet = net.into();
        match self
            .handle
            .address()
            .add(index, net.addr(), net.prefix_len())
            .execute()
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == libc_errno::EEXIST => Ok(()),
            Err(e) => Err(nl("add an address to", name)(e)),
        }
    }

    /// Remove every IPv4 address of a link except `keep`.
    pub async fn remove_ipv4_except(
        &self,
        index: u32,
        keep: Option<Ipv4Net>,
        name: &str,
    ) -> Result<(), Error> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut doomed = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("list addresses of", name))? {
            if m.header.family != AddressFamily::Inet {
                continue;
            }
            if let Some(a) = parse_address(&m)
                && let IpAddr::V4(v4) = a.addr
                && Some((v4, a.prefix)) == keep.map(|k| (k.addr(), k.prefix_len()))
            {
                continue;
            }
            doomed.push(m);
        }
        for m in doomed {
            self.handle
                .address()
                .del(m)
                .execute()
                .await
                .map_err(nl("remove an address from", name))?;
        }
        Ok(())
    }
}

impl Netlink {
    /// Remove every IPv6 address of a link except `keep` and the link-local ones (the kernel's,
    /// which neighbour discovery and router advertisements need).
    pub async fn remove_ipv6_except(
        &self,
        index: u32,
        keep: Option<Ipv6Net>,
        name: &str,
    ) -> Result<(), Error> {
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut doomed = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("list addresses of", name))? {
            if m.header.family != AddressFamily::Inet6 {
                continue;
            }
            let Some(a) = parse_address(&m) else {
                continue;
            };
            let IpAddr::V6(v6) = a.addr else {
                continue;
            };
            if (v6.segments()[0] & 0xffc0) == 0xfe80
                || Some((v6, a.prefix)) == keep.map(|k| (k.addr(), k.prefix_len()))
            {
                continue;
            }
            doomed.push(m);
        }
        for m in doomed {
            self.handle
                .address()
                .del(m)
                .execute()
                .await
                .map_err(nl("remove an address from", name))?;
        }
        Ok(())
    }
}

fn parse_address(m: &AddressMessage) -> Option<Address> {
    let mut addr = None;
    let mut local = None;
    for a in &m.attributes {
        match a {
            AddressAttribute::Address(ip) => addr = Some(*ip),
            AddressAttribute::Local(ip) => local = Some(*ip),
            _ => {}
        }
    }
    // For IPv4 the interface's own address is IFA_LOCAL (IFA_ADDRESS is the peer on p2p links).
    let addr = local.or(addr)?;
    Some(Address {
        index: m.header.index,
        addr,
        prefix: m.header.prefix_len,
        scope: match m.header.scope {
            AddressScope::Universe => "global",
            AddressScope::Link => "link",
            AddressScope::Host => "local",
            _ => "global",
        },
    })
}

/// True when `kind` from a link names a bridge.
pub fn is_bridge(l: &Link) -> bool {
    l.kind.as_deref() == Some(&InfoKind::Bridge.to_string())
}
