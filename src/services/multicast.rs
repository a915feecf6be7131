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

use anyhow::Result;
use lru::LruCache;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::ServiceCtx;
use super::udp_guard::{Guard, Verdict};
use crate::acl;
use crate::config::{Compat, DEFAULT_BLOCKED_SOURCE_PORTS, MulticastConfig, Reply};
use crate::faults;
use crate::logging::RateLimited;
use crate::net::groups::{Datagram, GroupSocket, Membership};
use crate::net::{self, Applied, Role};

/// Senders tracked at once; the least recently heard is forgotten.
pub const MAX_SENDERS: usize = 1024;

#[derive(Clone)]
pub struct Bound {
    cfg: Arc<MulticastConfig>,
    joined: Arc<GroupSocket>,
    local: SocketAddr,
    /// The socket's kernel drops already counted (Linux), handed over with it.
    #[cfg(target_os = "linux")]
    drops_seen: super::kernel_drops::Seen,
}

/// Counts a datagram of `src` (its first is logged, rate-limited).
fn count_sender(
    senders: &mut LruCache<SocketAddr, (u64, u64)>,
    src: SocketAddr,
    n: usize,
    new_sender_log: &mut RateLimited,
) {
    let entry = senders.get_or_insert_mut(src, || (0, 0));
    entry.0 += 1;
    entry.1 += n as u64;
    if entry.0 == 1
        && let Some(suppressed) = new_sender_log.allow()
    {
        info!(sender = %src, bytes = n, suppressed, "new sender");
    }
    debug!(sender = %src, bytes = n, datagrams = entry.0, "datagram");
}

/// Sends one echo; a full send queue drops it (counted), an error is counted and logged (rate-limited).
fn send_echo(
    socket: &UdpSocket,
    reply: &[u8],
    src: SocketAddr,
    m: &crate::metrics::ServiceMetrics,
    send_errors: &prometheus_client::metrics::counter::Counter,
    error_log: &mut RateLimited,
) {
    match socket.try_send_to(reply, src) {
        Ok(_) => {
            m.msgs_out.inc();
            m.bytes_out.inc_by(reply.len() as u64);
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

/// Delayed fault replies keep the membership (and so the socket) alive.
impl faults::udp::Socket for GroupSocket {
    fn udp(&self) -> &UdpSocket {
        self.socket()
    }
}

pub fn bind(cfg: &MulticastConfig) -> Result<Bound> {
    let joined = GroupSocket::open(cfg)?;
    warn_pitfalls(cfg, joined.membership());
    let local = joined.socket().local_addr()?;
    Ok(Bound {
        cfg: Arc::new(cfg.clone()),
        joined: Arc::new(joined),
        local,
        #[cfg(target_os = "linux")]
        drops_seen: Default::default(),
    })
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
        let m = self.joined.membership();
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
        self.joined.socket()
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
        socket2::SockRef::from(self.joined.socket())
    }

    /// Receives the next datagram into `buf` (65536 bytes hold any); on
    /// Windows it says whether it was sent to another group on this port.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        self.joined.recv(buf).await
    }

    pub fn report(&self) -> Vec<Applied> {
        let mut out = net::read_back(
            socket2::SockRef::from(self.joined.socket()),
            self.local.is_ipv6(),
            &self.cfg.socket,
            Role::UdpMulticast,
        );
        let m = self.joined.membership();
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
        let socket = self.joined.socket();
        #[cfg(target_os = "linux")]
        super::kernel_drops::watch(
            socket,
            self.local.is_ipv6(),
            self.drops_seen.clone(),
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
            count_sender(&mut senders, src, n, &mut new_sender_log);
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
            send_echo(socket, reply, src, m, &send_errors, &mut error_log);
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

impl super::Kind for MulticastConfig {
    const SECTION: &'static str = "multicast";
    const ROLE: Role = Role::UdpMulticast;
    const SHARES_PORT: bool = true;
    type Bound = Bound;

    fn of(cfg: &crate::config::Config) -> &[Self] {
        &cfg.multicast
    }
    fn of_mut(cfg: &mut crate::config::Config) -> &mut Vec<Self> {
        &mut cfg.multicast
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn socket(&self) -> &crate::config::SocketOptions {
        &self.socket
    }
    fn family_ip(&self) -> std::net::IpAddr {
        self.group
    }
    fn validate(
        &self,
        index: usize,
        _: &crate::config::validate::Rules,
        out: &mut crate::config::validate::Issues,
    ) {
        crate::config::validate::services::multicast(index, self, out)
    }
    fn claims(&self) -> Vec<crate::config::validate::Claim> {
        // A multicast listener binds the wildcard address of its port (IPv6 ones v6-only),
        // so it would take unicast datagrams meant for a udp_echo on that port.
        vec![crate::config::validate::Claim {
            proto: "udp",
            addr: SocketAddr::new(crate::net::groups::unspecified(self.group), self.port),
            v6only: true,
            key: "port",
        }]
    }
    fn directory_entry(&self) -> String {
        format!(
            "{}=udp://{}",
            self.name,
            SocketAddr::new(self.group, self.port)
        )
    }
    fn summary(&self) -> String {
        format!(
            "group {} port {} interface {}",
            self.group,
            self.port,
            self.interface.as_deref().unwrap_or("(kernel picks)")
        )
    }
    fn address_change(&self, new: &Self) -> Option<&'static str> {
        ((self.group, self.port, &self.interface, self.source)
            != (new.group, new.port, &new.interface, new.source))
            .then_some("group")
    }
    fn bind_addr(&self) -> Option<SocketAddr> {
        Some(SocketAddr::new(self.group, self.port))
    }
    fn fixture(&self) -> (crate::faults::Faults, usize) {
        let faults = self.faults.clone().unwrap_or_default();
        (crate::faults::Faults::Udp(faults), self.journal)
    }
    fn bind(&self) -> Result<Bound> {
        bind(self)
    }
}

impl super::Service for Bound {
    type Config = MulticastConfig;
    fn local_addr(&self) -> SocketAddr {
        Bound::local_addr(self)
    }
    fn url(&self) -> String {
        format!("udp://{}", self.group_addr())
    }
    fn report(&self) -> Vec<net::Applied> {
        Bound::report(self)
    }
    fn sock(&self) -> socket2::SockRef<'_> {
        Bound::sock(self)
    }
    fn cfg(&self) -> &MulticastConfig {
        Bound::cfg(self)
    }
    fn with_config(&self, cfg: &MulticastConfig) -> Bound {
        Bound::with_config(self, cfg)
    }
    fn groups(&self) -> Vec<String> {
        Bound::groups(self)
    }
    fn run(self, ctx: ServiceCtx) -> impl std::future::Future<Output = Result<()>> + Send {
        Bound::run(self, ctx)
    }
}
