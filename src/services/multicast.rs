//! `[[multicast]]`: joins `group` on `interface` (optionally only from
//! `source`), counts what arrives per sender, and with `reply = "echo"` sends
//! each datagram back to its sender by unicast.
//!
//! Binding: `group:port`, SO_REUSEADDR on by default (and SO_REUSEPORT when
//! asked) so other listeners and programs can share the port. On Unix the
//! socket binds the group address itself (the classic BSD filter, Linux
//! included): unicast datagrams to the port never reach it, so a listener
//! with `reply = "echo"` answers its group only, never a unicast sender on
//! some interface. On Linux IP_MULTICAST_ALL / IPV6_MULTICAST_ALL is off
//! unless `socket.multicast_all = true` (otherwise a socket gets every group
//! any socket on the host joined on that port). Windows refuses a bind to a
//! group address, so it binds the wildcard, asks for each
//! datagram's destination (IP_PKTINFO / IPV6_PKTINFO, `net::pktinfo`) and
//! skips, counting them as `other_group`, the datagrams sent to other groups
//! joined on the same port.
//!
//! Datagrams from a source outside the access lists (`allow`/`deny`,
//! `acl.rs`) are dropped before they are counted as received (`denied`).
//!
//! The joined socket lives in one `Arc` with a `Drop` that leaves the group:
//! a reload that hands the socket to a changed service keeps the membership,
//! and the group is left (IP_DROP_MEMBERSHIP / IPV6_LEAVE_GROUP) exactly
//! when the last user of the socket goes away.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use lru::LruCache;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::ServiceCtx;
use super::mcast_join::{Membership, unspecified};
use super::udp_guard::{Guard, Verdict};
use crate::acl;
use crate::config::{Compat, DEFAULT_BLOCKED_SOURCE_PORTS, MulticastConfig, Reply};
use crate::faults;
use crate::logging::RateLimited;
use crate::net::{self, Applied, Role};

/// Senders tracked at once; the least recently heard is forgotten.
pub const MAX_SENDERS: usize = 1024;

/// The joined socket; leaving the group is tied to its lifetime.
struct Joined {
    socket: UdpSocket,
    membership: Membership,
    /// Reads each datagram's destination address (Windows: the port is shared by every group).
    #[cfg(windows)]
    dest: net::pktinfo::DestAddrs,
    /// The socket's kernel drops already counted (Linux), handed over with it.
    #[cfg(target_os = "linux")]
    drops_seen: super::kernel_drops::Seen,
}

/// Delayed fault replies keep the membership (and so the socket) alive.
impl faults::udp::Socket for Joined {
    fn udp(&self) -> &UdpSocket {
        &self.socket
    }
}

/// One datagram from [`Bound::recv`].
pub struct Datagram {
    pub len: usize,
    pub src: SocketAddr,
    /// Sent to another group joined on this port, not to ours (only Windows,
    /// where the wildcard bind shares the port, reports it).
    pub other_group: bool,
}

impl Drop for Joined {
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

#[derive(Clone)]
pub struct Bound {
    cfg: Arc<MulticastConfig>,
    joined: Arc<Joined>,
    local: SocketAddr,
}

pub fn bind(cfg: &MulticastConfig) -> Result<Bound> {
    let membership = Membership::new(cfg.group, cfg.interface.as_deref(), cfg.source)?;
    let addr = bind_addr(cfg, &membership);
    let sock = net::udp_unbound(addr, &cfg.socket, Role::UdpMulticast)?;
    if cfg.group.is_ipv6() && cfg.socket.only_v6.is_none() {
        // An IPv6 wildcard socket would otherwise also take IPv4 traffic to this port.
        sock.set_only_v6(true).context("set IPV6_V6ONLY")?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let all = cfg.socket.multicast_all.unwrap_or(false);
        let r = if cfg.group.is_ipv4() {
            sock.set_multicast_all_v4(all)
        } else {
            sock.set_multicast_all_v6(all)
        };
        r.context("set socket.multicast_all (IP_MULTICAST_ALL / IPV6_MULTICAST_ALL)")?;
    }
    net::bind(&sock, addr, "udp")?;
    membership.join(&sock)?;
    warn_pitfalls(cfg, &membership);
    net::make_nonblocking(&sock)?;
    #[cfg(windows)]
    let dest = net::pktinfo::DestAddrs::enable(&sock, cfg.group.is_ipv6()).context(
        "enable IP_PKTINFO (the destination of each datagram, to keep groups on one port apart)",
    )?;
    let socket = UdpSocket::from_std(sock.into()).context("register UDP socket with tokio")?;
    let local = socket.local_addr()?;
    debug!(group = %cfg.group, interface = %membership.iface_text, source = %cfg.source.map_or("any".to_string(), |s| s.to_string()), %local, "joined multicast group");
    Ok(Bound {
        cfg: Arc::new(cfg.clone()),
        joined: Arc::new(Joined {
            socket,
            membership,
            #[cfg(windows)]
            dest,
            #[cfg(target_os = "linux")]
            drops_seen: Default::default(),
        }),
        local,
    })
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
        (IpAddr::V6(g), super::mcast_join::Iface::V6(index)) if needs_scope(g) => {
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

/// Start-up warnings for the mistakes that make a listener silently hear nothing (or too much).
fn warn_pitfalls(cfg: &MulticastConfig, m: &Membership) {
    if m.kernel_picks() {
        warn!(group = %cfg.group, kernel_interface = %m.kernel_choice(cfg.port),
            "no interface given: the kernel joined on the interface of its route to the group; set `interface` to choose");
    }
    if cfg.socket.multicast_loop.is_some() {
        warn!(
            "socket.multicast_loop only affects datagrams this socket sends (echo replies are unicast); \
            to hear a sender on this host, set multicast_loop on the sender"
        );
    }
    if cfg.socket.multicast_all == Some(true) {
        warn!(
            port = cfg.port,
            "socket.multicast_all = true: this socket binds the wildcard and also receives every other group joined on this host on this port, and unicast to it"
        );
    }
    let loopback = cfg
        .interface
        .as_deref()
        .is_some_and(|i| i.parse::<IpAddr>().is_ok_and(|a| a.is_loopback()) || i == "lo");
    if loopback {
        debug!(group = %cfg.group, "joined on loopback: only senders on this host (with multicast_loop on) reach this group");
    }
    if let IpAddr::V4(g) = cfg.group
        && g.octets()[..3] == [224, 0, 0]
    {
        warn!(group = %g, "224.0.0.0/24 is the local network control block (routing protocols); use 239.0.0.0/8 for your own groups");
    }
}

impl Bound {
    /// The membership this listener holds, as `/services` shows it.
    pub fn groups(&self) -> Vec<String> {
        let m = &self.joined.membership;
        let source = m.source.map(|s| format!(" from {s}")).unwrap_or_default();
        vec![format!("{} on {}{source}", m.group, m.iface_text)]
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The group and port senders address.
    pub fn group_addr(&self) -> SocketAddr {
        SocketAddr::new(self.cfg.group, self.cfg.port)
    }

    /// The joined socket (`netservd listen` reads it directly).
    pub fn socket(&self) -> &UdpSocket {
        &self.joined.socket
    }

    pub fn with_config(&self, cfg: &MulticastConfig) -> Bound {
        Bound {
            cfg: Arc::new(cfg.clone()),
            ..self.clone()
        }
    }

    pub(crate) fn cfg(&self) -> &MulticastConfig {
        &self.cfg
    }

    pub(crate) fn sock(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&self.joined.socket)
    }

    /// Receives the next datagram into `buf` (65536 bytes hold any).
    #[cfg(not(windows))]
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        let (len, src) = self.joined.socket.recv_from(buf).await?;
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
        let j = &*self.joined;
        loop {
            j.socket.readable().await?;
            match j
                .socket
                .try_io(Interest::READABLE, || j.dest.recv(&j.socket, buf))
            {
                Ok(r) => {
                    return Ok(Datagram {
                        len: r.len,
                        src: r.src,
                        other_group: r.dst.is_some_and(|d| d != self.cfg.group),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn report(&self) -> Vec<Applied> {
        let mut out = net::read_back(
            socket2::SockRef::from(&self.joined.socket),
            self.local.is_ipv6(),
            &self.cfg.socket,
            Role::UdpMulticast,
        );
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if self.cfg.socket.multicast_all.is_none() {
            let sock = socket2::SockRef::from(&self.joined.socket);
            let v = if self.local.is_ipv4() {
                sock.multicast_all_v4()
            } else {
                sock.multicast_all_v6()
            };
            out.push(Applied {
                key: "multicast_all",
                requested: "false (default)".into(),
                effective: v
                    .map(|v| v.to_string())
                    .unwrap_or_else(|e| format!("error: {e}")),
            });
        }
        let m = &self.joined.membership;
        let src = m.source.map(|s| format!(" source {s}")).unwrap_or_default();
        out.push(Applied {
            key: "membership",
            requested: format!("{} on {}{src}", m.group, m.iface_text),
            effective: "joined".into(),
        });
        out
    }

    pub async fn run(self, ctx: ServiceCtx) -> Result<()> {
        let cfg = &self.cfg;
        let m = &ctx.metrics;
        let socket = &self.joined.socket;
        #[cfg(target_os = "linux")]
        super::kernel_drops::watch(
            socket,
            self.local.is_ipv6(),
            self.joined.drops_seen.clone(),
            m.drop_counter("receive_buffer_full"),
            ctx.stop.clone(),
        );
        let recv_errors = m.error_counter("recv");
        let other_group = m.drop_counter("other_group");
        let denied = m.drop_counter("denied");
        let send_errors = m.error_counter("send");
        let mut guard = Guard::new(&DEFAULT_BLOCKED_SOURCE_PORTS, cfg.port, None, m);
        let mut senders: LruCache<SocketAddr, (u64, u64)> =
            LruCache::new(NonZeroUsize::new(MAX_SENDERS).unwrap_or(NonZeroUsize::MIN));
        let mut new_sender_log = RateLimited::new(Duration::from_secs(1));
        let mut error_log = RateLimited::new(Duration::from_secs(5));
        // Room for the largest UDP payload of either family (IPv6: 65527), so nothing is truncated.
        let mut buf = vec![0u8; 65536];
        let mut held = faults::udp::Held::default();
        loop {
            let received = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                r = self.recv(&mut buf) => r,
            };
            let (n, src) = match received {
                Ok(d) if d.other_group => {
                    other_group.inc();
                    continue;
                }
                Ok(d) if !acl::permits(&cfg.allow, &cfg.deny, d.src.ip()) => {
                    denied.inc();
                    continue;
                }
                Ok(d) => (d.len, d.src),
                Err(e) => {
                    recv_errors.inc();
                    if let Some(suppressed) = error_log.allow() {
                        debug!(error = %e, suppressed, "receive error; continuing");
                    }
                    continue;
                }
            };
            m.msgs_in.inc();
            m.bytes_in.inc_by(n as u64);
            let entry = senders.get_or_insert_mut(src, || (0, 0));
            entry.0 += 1;
            entry.1 += n as u64;
            if entry.0 == 1
                && let Some(suppressed) = new_sender_log.allow()
            {
                info!(sender = %src, bytes = n, suppressed, "new sender");
            }
            debug!(sender = %src, bytes = n, datagrams = entry.0, "datagram");
            let fixture = ctx.fixture.flags();
            if fixture & faults::JOURNAL != 0 {
                let group = Some(cfg.group.to_string());
                ctx.fixture.journal.record("in", src, group, &buf[..n]);
            }
            if cfg.reply != Reply::Echo || guard.check(src) != Verdict::Reply {
                continue;
            }
            let reply = &mut buf[..n];
            if cfg.compat == Compat::Sockperf {
                super::udp_echo::sockperf_reply(reply);
            }
            if fixture & faults::FAULTS != 0 {
                faults::udp::reply(&ctx.fixture, &mut held, &self.joined, src, reply, m);
                continue;
            }
            match socket.try_send_to(reply, src) {
                Ok(_) => {
                    m.msgs_out.inc();
                    m.bytes_out.inc_by(n as u64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    m.drop_counter("send_buffer_full").inc();
                }
                Err(e) => {
                    send_errors.inc();
                    if let Some(suppressed) = error_log.allow() {
                        debug!(sender = %src, error = %e, suppressed, "echo send error; continuing");
                    }
                }
            }
        }
        let top: Vec<String> = senders
            .iter()
            .take(16)
            .map(|(a, (d, b))| format!("{a}:{d}/{b}"))
            .collect();
        info!(senders = senders.len(), top = %top.join(" "), "per-sender totals (sender:datagrams/bytes, most recent first)");
        Ok(())
    }
}
