//! A bound, joined multicast socket: [`GroupSocket::open`] turns a
//! `[[multicast]]` config (or what `netservd listen` builds from its flags)
//! into a socket bound to the group, joined through [`Membership`], and
//! registered with tokio; dropping it leaves the group. [`GroupSocket::recv`]
//! hands out each datagram with whether it was meant for another group on
//! the same port (only Windows, where the bind is the wildcard, can tell).

use std::io;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::{Iface, Membership, unspecified};
use crate::config::MulticastConfig;
use crate::net::{self, Role};

/// The joined socket; leaving the group is tied to its lifetime.
pub struct GroupSocket {
    socket: UdpSocket,
    membership: Membership,
    /// The group datagrams must be sent to, to be ours (the Windows filter).
    #[cfg(windows)]
    group: IpAddr,
    /// Reads each datagram's destination address (Windows: the port is shared by every group).
    #[cfg(windows)]
    dest: net::pktinfo::DestAddrs,
}

/// One datagram from [`GroupSocket::recv`].
pub struct Datagram {
    pub len: usize,
    pub src: SocketAddr,
    /// Sent to another group joined on this port, not to ours (only Windows,
    /// where the wildcard bind shares the port, reports it).
    pub other_group: bool,
}

impl Drop for GroupSocket {
    fn drop(&mut self) {
        let m = &self.membership;
        match m.leave(&socket2::SockRef::from(&self.socket)) {
            Ok(()) => info!(group = %m.group, interface = %m.iface_text, "left multicast group"),
            Err(e) => {
                warn!(group = %m.group, interface = %m.iface_text, error = %e, "leaving multicast group failed (the kernel drops it when the socket closes)")
            }
        }
    }
}

impl GroupSocket {
    /// Creates the socket with `cfg.socket`'s options, binds it (see
    /// `bind_addr`), joins the group and registers it with tokio.
    pub fn open(cfg: &MulticastConfig) -> Result<GroupSocket> {
        let membership = Membership::new(cfg.group, cfg.interface.as_deref(), cfg.source)?;
        let addr = bind_addr(cfg, &membership);
        let sock = net::udp_unbound(addr, &cfg.socket, Role::UdpMulticast)?;
        if cfg.group.is_ipv6() && cfg.socket.only_v6.is_none() {
            // An IPv6 wildcard socket would otherwise also take IPv4 traffic to this port.
            sock.set_only_v6(true).context("set IPV6_V6ONLY")?;
        }
        // IP_MULTICAST_ALL (off unless asked for) was set by the option table's default.
        net::bind(&sock, addr, "udp")?;
        membership.join(&sock)?;
        net::make_nonblocking(&sock)?;
        #[cfg(windows)]
        let dest = net::pktinfo::DestAddrs::enable(&sock, cfg.group.is_ipv6()).context(
            "enable IP_PKTINFO (the destination of each datagram, to keep groups on one port apart)",
        )?;
        let socket = UdpSocket::from_std(sock.into()).context("register UDP socket with tokio")?;
        debug!(group = %cfg.group, interface = %membership.iface_text, source = %cfg.source.map_or("any".to_string(), |s| s.to_string()), local = ?socket.local_addr().ok(), "joined multicast group");
        Ok(GroupSocket {
            socket,
            membership,
            #[cfg(windows)]
            group: cfg.group,
            #[cfg(windows)]
            dest,
        })
    }

    /// The joined socket (sends, local address, socket options).
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// What was joined.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Receives the next datagram into `buf` (65536 bytes hold any).
    #[cfg(not(windows))]
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        let (len, src) = self.socket.recv_from(buf).await?;
        Ok(Datagram {
            len,
            src,
            other_group: false,
        })
    }

    /// Receives the next datagram into `buf` (65536 bytes hold any), with
    /// its destination: on Windows the port is shared by every group joined on it.
    #[cfg(windows)]
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        use tokio::io::Interest;
        loop {
            self.socket.readable().await?;
            match self
                .socket
                .try_io(Interest::READABLE, || self.dest.recv(&self.socket, buf))
            {
                Ok(r) => {
                    return Ok(Datagram {
                        len: r.len,
                        src: r.src,
                        other_group: r.dst.is_some_and(|d| d != self.group),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// Where the listener binds. Unix: the group address itself, so the kernel
/// delivers only datagrams sent to the group; a unicast datagram to the port
/// (to 127.0.0.1, or to any address of the host) finds no socket and is never
/// seen, let alone echoed. An IPv6 group of interface or link scope (ff01::,
/// ff02::, ff12::...) is bound with the joined interface as its scope id,
/// which Linux requires; without an interface it falls back to the wildcard
/// (warned at start). Windows refuses a bind to a group address: wildcard,
/// and `recv` filters by destination (IP_PKTINFO). `socket.multicast_all =
/// true` (Linux) asks for every group on the port, so it gets the wildcard too.
fn bind_addr(cfg: &MulticastConfig, m: &Membership) -> SocketAddr {
    let wildcard = SocketAddr::new(unspecified(cfg.group), cfg.port);
    if cfg!(windows) || cfg.socket.multicast_all == Some(true) {
        return wildcard;
    }
    match (cfg.group, m.iface) {
        (IpAddr::V6(g), Iface::V6(index)) if needs_scope(g) => {
            if index == 0 {
                warn!(group = %g, port = cfg.port,
                    "no interface given for a link-scope IPv6 group: bound to the wildcard, so unicast to this port is received too; set `interface`");
                wildcard
            } else {
                SocketAddr::V6(std::net::SocketAddrV6::new(g, cfg.port, 0, index))
            }
        }
        (g, _) => SocketAddr::new(g, cfg.port),
    }
}

/// IPv6 multicast scopes 1 (interface) and 2 (link) name an interface.
fn needs_scope(g: std::net::Ipv6Addr) -> bool {
    matches!(g.octets()[1] & 0x0f, 1 | 2)
}
