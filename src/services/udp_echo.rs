//! `[[udp_echo]]`: every datagram goes back to its sender unchanged.
//!
//! Each datagram is received into `max_datagram_bytes + 1` bytes, so an
//! oversized one is seen as oversized (and dropped, counted) instead of being
//! silently truncated. A source outside the access lists (`allow`/`deny`) is
//! dropped and counted as `denied`. Before replying, the guards in `udp_guard` refuse
//! sources that can only be loops or spoofs and apply the per-source rate
//! limit. A reply is the request's own bytes, so it is never larger. Errors
//! from one send or one receive (ICMP port unreachable surfacing as
//! ECONNREFUSED, WSAECONNRESET on Windows) are counted and the loop goes on.
//!
//! On Linux the service is a set of sockets, one per `[daemon] workers`, on
//! one address (`net::reuseport_udp`: SO_REUSEPORT with a guard program that
//! spreads sources by port and keeps latecomers out); each socket has its own
//! receive loop in its own task, all counting into the one service's metrics.
//! The guards and the rate limit are per socket: a source keeps its socket
//! as long as it keeps its port, so a source address sending from k ports
//! may get up to min(k, workers) times `rate_limit.per_source`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tracing::{Instrument, debug};

use prometheus_client::metrics::counter::Counter;

use super::ServiceCtx;
use super::udp_guard::{Guard, Verdict};
#[cfg(target_os = "linux")]
use super::udp_mmsg;
use crate::acl::{self, Cidr};
use crate::config::{Compat, UdpEchoConfig};
use crate::faults;
use crate::logging::RateLimited;
use crate::metrics::ServiceMetrics;
use crate::net::{self, Role};

#[derive(Clone)]
pub struct Bound {
    cfg: Arc<UdpEchoConfig>,
    /// The socket set (one socket unless `net::reuseport_udp` binds more);
    /// a reload keeps or replaces it whole.
    sockets: Arc<[Member]>,
    local: SocketAddr,
}

/// One socket of the set.
struct Member {
    /// Shared with delayed fault replies (`faults::udp`), which keep it open.
    socket: Arc<UdpSocket>,
    /// The socket's kernel drops already counted (Linux), handed over with it.
    #[cfg(target_os = "linux")]
    drops_seen: super::kernel_drops::Seen,
}

pub fn bind(cfg: &UdpEchoConfig) -> Result<Bound> {
    let mut sockets = Vec::new();
    for std in net::reuseport_udp::udp_set(cfg.listen, &cfg.socket, Role::Udp)? {
        sockets.push(Member {
            socket: Arc::new(UdpSocket::from_std(std).context("register UDP socket with tokio")?),
            #[cfg(target_os = "linux")]
            drops_seen: Default::default(),
        });
    }
    let local = sockets[0].socket.local_addr()?;
    Ok(Bound {
        cfg: Arc::new(cfg.clone()),
        sockets: sockets.into(),
        local,
    })
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn with_config(&self, cfg: &UdpEchoConfig) -> Bound {
        Bound {
            cfg: Arc::new(cfg.clone()),
            ..self.clone()
        }
    }

    pub(crate) fn cfg(&self) -> &UdpEchoConfig {
        &self.cfg
    }

    /// How many sockets the set has (`/services` shows it).
    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }

    /// Every socket of the set: a reload's live options apply to each.
    pub(crate) fn socks(&self) -> impl Iterator<Item = socket2::SockRef<'_>> {
        self.sockets
            .iter()
            .map(|m| socket2::SockRef::from(&m.socket))
    }

    /// The sockets of a set differ only in the SO_REUSEPORT they all need, so the first speaks for all.
    pub fn report(&self) -> Vec<net::Applied> {
        net::read_back(
            socket2::SockRef::from(&self.sockets[0].socket),
            self.local.is_ipv6(),
            &self.cfg.socket,
            Role::Udp,
        )
    }

    /// One receive loop per socket of the set, each in a task of its own
    /// (so the runtime's workers share them). The first loop to fail ends
    /// the service with its error (the supervisor reports it; the others
    /// serve on until the service is stopped); otherwise all end on `stop`.
    pub async fn run(self, ctx: ServiceCtx) -> Result<()> {
        use futures_util::FutureExt;
        let loops = (0..self.sockets.len()).map(|i| {
            let (b, ctx) = (self.clone(), ctx.clone());
            tokio::spawn(async move { b.run_socket(i, &ctx).await }.in_current_span()).map(
                move |r| {
                    r.map_err(|e| {
                        anyhow::anyhow!("receive task of socket {} of the set failed: {e}", i + 1)
                    })?
                },
            )
        });
        futures_util::future::try_join_all(loops).await?;
        Ok(())
    }

    async fn run_socket(&self, i: usize, ctx: &ServiceCtx) -> Result<()> {
        let member = &self.sockets[i];
        let mut echo = Echo::new(&self.cfg, self.local.port(), ctx);
        #[cfg(target_os = "linux")]
        super::kernel_drops::watch(
            &member.socket,
            self.local.is_ipv6(),
            member.drops_seen.clone(),
            ctx.metrics.drop_counter("receive_buffer_full"),
            ctx.stop.clone(),
        );
        #[cfg(target_os = "linux")]
        run_batched(&member.socket, &self.cfg, ctx, &mut echo).await?;
        #[cfg(not(target_os = "linux"))]
        run_single(&member.socket, &self.cfg, ctx, &mut echo).await?;
        Ok(())
    }
}

/// Linux: up to `BATCH` datagrams per `recvmmsg`, their replies in one `sendmmsg`.
#[cfg(target_os = "linux")]
async fn run_batched(
    socket: &Arc<UdpSocket>,
    cfg: &UdpEchoConfig,
    ctx: &ServiceCtx,
    echo: &mut Echo,
) -> Result<()> {
    let mut batch = udp_mmsg::Batch::new(cfg.max_datagram_bytes + 1, socket, cfg.gso);
    let mut replies: Vec<usize> = Vec::with_capacity(udp_mmsg::BATCH);
    let mut held = faults::udp::Held::default();
    loop {
        // `readable()` takes nothing from tokio's cooperative budget: take one
        // unit per batch so a flood yields to other tasks instead of owning a worker.
        tokio::task::consume_budget().await;
        if ctx.stop.is_cancelled() {
            break;
        }
        // Try the socket first; only an empty one makes us build the select
        // (whose cancellation waiter takes a lock to register and to drop).
        let n = match batch.recv(socket) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                tokio::select! {
                    biased;
                    _ = ctx.stop.cancelled() => break,
                    r = socket.readable() => r.context("wait for datagrams")?,
                }
                continue;
            }
            Err(e) => {
                echo.recv_error(&e);
                continue;
            }
        };
        replies.clear();
        let mut bytes = 0;
        // Faults and journal: one relaxed load per batch.
        let fixture = ctx.fixture.flags();
        for i in 0..n {
            let (src, data) = batch.datagram(i);
            bytes += data.len();
            if fixture & faults::JOURNAL != 0
                && let Some(src) = src
            {
                ctx.fixture.journal.record("in", src, None, data);
            }
            if let Some(src) = src
                && echo.accept(src, data)
            {
                replies.push(i);
            }
        }
        echo.m.msgs_in.inc_by(n as u64);
        echo.m.bytes_in.inc_by(bytes as u64);
        if fixture & faults::FAULTS != 0 {
            for &i in &replies {
                if let (Some(src), data) = batch.datagram(i) {
                    faults::udp::reply(&ctx.fixture, &mut held, socket, src, data, &echo.m);
                }
            }
            continue;
        }
        send_replies(socket, &mut batch, &replies, echo);
    }
    Ok(())
}

/// The replies of one batch in as few `sendmmsg` calls as the kernel takes.
#[cfg(target_os = "linux")]
fn send_replies(
    socket: &UdpSocket,
    batch: &mut udp_mmsg::Batch,
    replies: &[usize],
    echo: &mut Echo,
) {
    let mut done = 0;
    while done < replies.len() {
        match batch.send(socket, &replies[done..]) {
            Ok(k) => {
                let sent_bytes: usize = replies[done..done + k]
                    .iter()
                    .map(|&i| batch.datagram(i).1.len())
                    .sum();
                echo.m.msgs_out.inc_by(k as u64);
                echo.m.bytes_out.inc_by(sent_bytes as u64);
                done += k;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // Send queue full: these replies are dropped (counted), like a full queue would.
                echo.send_full.inc_by((replies.len() - done) as u64);
                break;
            }
            Err(e) => {
                let src = batch.datagram(replies[done]).0;
                echo.send_error(src, &e);
                done += 1;
            }
        }
    }
}

/// Portable path: one `recv_from` and one `send_to` per datagram.
#[cfg_attr(target_os = "linux", allow(dead_code))]
async fn run_single(
    socket: &Arc<UdpSocket>,
    cfg: &UdpEchoConfig,
    ctx: &ServiceCtx,
    echo: &mut Echo,
) -> Result<()> {
    let mut buf = vec![0u8; cfg.max_datagram_bytes + 1];
    let mut held = faults::udp::Held::default();
    loop {
        let received = tokio::select! {
            biased;
            _ = ctx.stop.cancelled() => break,
            r = socket.recv_from(&mut buf) => r,
        };
        let (n, src) = match received {
            Ok(ok) => ok,
            Err(e) => {
                echo.recv_error(&e);
                continue;
            }
        };
        echo.m.msgs_in.inc();
        echo.m.bytes_in.inc_by(n as u64);
        let fixture = ctx.fixture.flags();
        if fixture & faults::JOURNAL != 0 {
            ctx.fixture.journal.record("in", src, None, &buf[..n]);
        }
        let reply = &mut buf[..n];
        if !echo.accept(src, reply) {
            continue;
        }
        if fixture & faults::FAULTS != 0 {
            faults::udp::reply(&ctx.fixture, &mut held, socket, src, reply, &echo.m);
            continue;
        }
        match socket.try_send_to(reply, src) {
            Ok(_) => {
                echo.m.msgs_out.inc();
                echo.m.bytes_out.inc_by(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                echo.send_full.inc();
            }
            Err(e) => echo.send_error(Some(src), &e),
        }
    }
    Ok(())
}

/// What both receive paths share: the size limit, the guards, the compat
/// rewrite, and the counters and rate-limited logs of drops and errors.
struct Echo {
    m: ServiceMetrics,
    max: usize,
    compat: Compat,
    guard: Guard,
    /// The access lists (`acl.rs`); a refused source is counted as `denied`.
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    denied: Counter,
    oversize: Counter,
    send_full: Counter,
    recv_errors: Counter,
    send_errors: Counter,
    log_limit: RateLimited,
}

impl Echo {
    fn new(cfg: &UdpEchoConfig, own_port: u16, ctx: &ServiceCtx) -> Echo {
        let m = &ctx.metrics;
        Echo {
            max: cfg.max_datagram_bytes,
            compat: cfg.compat,
            guard: Guard::new(&cfg.blocked_source_ports, own_port, cfg.rate_limit, m),
            allow: cfg.allow.clone(),
            deny: cfg.deny.clone(),
            denied: m.drop_counter("denied"),
            oversize: m.drop_counter("oversize"),
            send_full: m.drop_counter("send_buffer_full"),
            recv_errors: m.error_counter("recv"),
            send_errors: m.error_counter("send"),
            log_limit: RateLimited::new(Duration::from_secs(5)),
            m: m.clone(),
        }
    }

    /// Should `data` from `src` be echoed? Oversized datagrams and refused
    /// sources are counted and dropped; an accepted one is made into its reply in place.
    fn accept(&mut self, src: SocketAddr, data: &mut [u8]) -> bool {
        if !acl::permits(&self.allow, &self.deny, src.ip()) {
            self.denied.inc();
            return false;
        }
        if data.len() > self.max {
            self.oversize.inc();
            return false;
        }
        if self.guard.check(src) != Verdict::Reply {
            return false;
        }
        if self.compat == Compat::Sockperf {
            sockperf_reply(data);
        }
        true
    }

    fn recv_error(&mut self, e: &io::Error) {
        self.recv_errors.inc();
        if let Some(suppressed) = self.log_limit.allow() {
            debug!(error = %e, suppressed, "receive error (often an ICMP unreachable from an earlier reply); continuing");
        }
    }

    fn send_error(&mut self, src: Option<SocketAddr>, e: &io::Error) {
        self.send_errors.inc();
        if let Some(suppressed) = self.log_limit.allow() {
            debug!(src = ?src, error = %e, suppressed, "send error; continuing");
        }
    }
}

/// sockperf's client ignores datagrams whose header still has its "client"
/// flag (bit 0 of byte 9 of the 14-byte header) set: clear it in the reply.
pub fn sockperf_reply(datagram: &mut [u8]) {
    if datagram.len() >= 14 {
        datagram[9] &= !1;
    }
}

impl super::Kind for UdpEchoConfig {
    const SECTION: &'static str = "udp_echo";
    const ROLE: Role = Role::Udp;
    type Bound = Bound;

    fn of(cfg: &crate::config::Config) -> &[Self] {
        &cfg.udp_echo
    }
    fn of_mut(cfg: &mut crate::config::Config) -> &mut Vec<Self> {
        &mut cfg.udp_echo
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn socket(&self) -> &crate::config::SocketOptions {
        &self.socket
    }
    fn family_ip(&self) -> std::net::IpAddr {
        self.listen.ip()
    }
    fn validate(
        &self,
        index: usize,
        _: &crate::config::validate::Rules,
        out: &mut crate::config::validate::Issues,
    ) {
        crate::config::validate::services::udp_echo(index, self, out)
    }
    fn claims(&self) -> Vec<crate::config::validate::Claim> {
        vec![crate::config::validate::Claim {
            proto: "udp",
            addr: self.listen,
            v6only: self.socket.only_v6.unwrap_or(false),
            key: "listen",
        }]
    }
    fn directory_entry(&self) -> String {
        format!(
            "{}=udp://{}",
            self.name,
            SocketAddr::new(self.listen.ip(), 65535)
        )
    }
    fn summary(&self) -> String {
        format!(
            "udp://{} max_datagram_bytes={}",
            self.listen, self.max_datagram_bytes
        )
    }
    fn notes(&self) -> Vec<&'static str> {
        // What a udp_echo with `reuse_address = true` gives away (Unix: the default is off).
        if cfg!(unix) && self.socket.reuse_address == Some(true) {
            return vec![
                "reuse_address = true: another process that also sets SO_REUSEADDR may bind this address \
                 and receive its datagrams (the daemon's counters then miss them); remove the key to keep the port exclusive",
            ];
        }
        Vec::new()
    }
    fn address_change(&self, new: &Self) -> Option<&'static str> {
        (self.listen != new.listen).then_some("listen")
    }
    fn bind_addr(&self) -> Option<SocketAddr> {
        Some(self.listen)
    }
    fn sockets(&self, workers: usize) -> usize {
        net::reuseport_udp::sockets_with(&self.socket, workers)
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
    type Config = UdpEchoConfig;
    fn local_addr(&self) -> SocketAddr {
        Bound::local_addr(self)
    }
    fn url(&self) -> String {
        format!("udp://{}", self.local_addr())
    }
    fn report(&self) -> Vec<net::Applied> {
        Bound::report(self)
    }
    fn sock(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&*self.sockets[0].socket)
    }
    fn socks(&self) -> Vec<socket2::SockRef<'_>> {
        Bound::socks(self).collect()
    }
    fn cfg(&self) -> &UdpEchoConfig {
        Bound::cfg(self)
    }
    fn with_config(&self, cfg: &UdpEchoConfig) -> Bound {
        Bound::with_config(self, cfg)
    }
    fn run(self, ctx: ServiceCtx) -> impl std::future::Future<Output = Result<()>> + Send {
        Bound::run(self, ctx)
    }
}
