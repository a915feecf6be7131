//! `[[tcp_echo]]`: the accept loop. A permit (of `max_connections`) is taken
//! before each accept, so excess clients wait in the kernel backlog rather
//! than in our memory; each accepted stream runs `tcp_conn::serve` in its own
//! task on the service's tracker, so a connection's failure stays its own and
//! the supervisor can wait for every connection to drain.
//!
//! Right after accept, a connection from a source outside the access lists
//! (`allow`/`deny`, `acl.rs`) or over its per-source limits
//! (`per_source.rs`) is reset at once and counted (`denied`,
//! `per_source_limit`, `per_source_rate`); the others are unaffected.
//!
//! `[daemon] workers` accept loops share the one listener (tokio wakes every
//! waiting loop; one wins each connection), so accepting is spread over the
//! runtime's threads; the reload steering of `net::raw` is unchanged, and a
//! connection costs what it did (the loops are per service, not per connection).
//!
//! Reload: a loop stopped to hand its listener over ends at once (the new
//! loop accepts from the same queue). A loop whose listener is about to close
//! (removed, replaced, paused, shutdown) first accepts every connection still
//! in its backlog and serves it, so no queued client is reset. A replacement
//! bound beside it on the same address (SO_REUSEPORT, Linux) already takes
//! every new connection (`net::tcp_listener` steers them to the newest).
//!
//! Accept errors never end the service: running out of descriptors or memory
//! (EMFILE, ENFILE, ENOBUFS, ENOMEM) backs off with a growing sleep and a
//! rate-limited warning instead of spinning (after first spending the loop's
//! spare descriptor, `rlimit::Spare`, on one more accept); per-connection
//! errors retry at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::metrics::counter::Counter;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, Span, debug, debug_span, info, warn};

use super::per_source::{Refusal, SourceSlot, Sources};
use super::tcp_live::{Live, Pool};
use super::{ServiceCtx, StopReason, tcp_conn};
use crate::acl;
use crate::config::TcpEchoConfig;
use crate::flood::Flood;
use crate::frame::FrameFormat;
use crate::logging::RateLimited;
use crate::net::{self, Role};
use crate::rlimit::Spare;

/// A bound TCP echo listener.
#[derive(Clone)]
pub struct Bound {
    cfg: Arc<TcpEchoConfig>,
    listener: Arc<TcpListener>,
    local: SocketAddr,
    /// Timeouts and frame limit, shared with every connection and with the
    /// service this one is handed over to, so a reload changes them in place.
    live: Arc<Live>,
    /// `max_connections`, shared the same way: old and new connections count
    /// together, and a reload resizes it.
    pool: Arc<Pool>,
    /// Open connections per source, shared like `pool` across a reload's handover.
    sources: Sources,
}

pub fn bind(cfg: &TcpEchoConfig) -> Result<Bound> {
    let std = net::tcp_listener(cfg.listen, &cfg.socket)?;
    let listener = TcpListener::from_std(std).context("register listener with tokio")?;
    let local = listener.local_addr()?;
    Ok(Bound {
        cfg: Arc::new(cfg.clone()),
        listener: Arc::new(listener),
        local,
        live: Arc::new(Live::new(cfg)),
        pool: Arc::new(Pool::new(cfg.max_connections)),
        sources: Sources::default(),
    })
}

/// Sleep after the first resource-exhaustion accept error; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// Cap of the accept backoff: accepting resumes within this once descriptors free up.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The same listener under new settings (a reload's handover); nothing
    /// changes for running connections until `run` starts. A new framing
    /// (length field, byte order) cannot apply mid-stream: open connections
    /// keep theirs, with the settings they had.
    pub fn with_config(&self, cfg: &TcpEchoConfig) -> Bound {
        let same_framing = (cfg.length_field_bytes, cfg.byte_order)
            == (self.cfg.length_field_bytes, self.cfg.byte_order);
        Bound {
            cfg: Arc::new(cfg.clone()),
            live: if same_framing {
                self.live.clone()
            } else {
                Arc::new(Live::new(cfg))
            },
            ..self.clone()
        }
    }

    pub(crate) fn cfg(&self) -> &TcpEchoConfig {
        &self.cfg
    }

    pub(crate) fn sock(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&*self.listener)
    }

    pub fn report(&self) -> Vec<net::Applied> {
        net::read_back(
            socket2::SockRef::from(&*self.listener),
            self.local.is_ipv6(),
            &self.cfg.socket,
            Role::TcpListener,
        )
    }

    pub async fn run(self, ctx: ServiceCtx) -> Result<()> {
        let cfg = self.cfg.clone();
        let format = FrameFormat {
            width: cfg.length_field_bytes,
            order: cfg.byte_order,
            max_frame: cfg.frame_limit(),
        };
        // A handover's new settings reach open connections here, not before:
        // a reload that fails after planning changes nothing.
        self.live.set(&cfg);
        self.pool.resize(cfg.max_connections);
        // One copy of what every connection reads, shared: a connection holds only an Arc to it.
        let flood = Flood::new();
        let gate = Arc::new(Gate::new(&ctx, self.sources.clone(), flood.clone()));
        let shared = Arc::new(tcp_conn::Conn {
            format,
            cfg: cfg.clone(),
            live: self.live.clone(),
            ctx: ctx.clone(),
            pool: self.pool.clone(),
            span: Span::current(),
            flood,
        });
        // `[daemon] workers` accept loops on the one listener: the others in
        // tasks of their own, so accepting spreads over the runtime's threads
        // as the connections do. Only the first holds the spare descriptor.
        let others: Vec<_> = (1..net::reuseport_udp::workers())
            .map(|_| {
                let (b, shared, gate) = (self.clone(), shared.clone(), gate.clone());
                tokio::spawn(
                    async move { b.accept_loop(&shared, &gate, None).await }.in_current_span(),
                )
            })
            .collect();
        self.accept_loop(&shared, &gate, Some(Spare::open())).await;
        for h in others {
            h.await.context("an accept task of the listener failed")?;
        }
        if ctx.stop.reason() != Some(StopReason::HandedOver) {
            self.accept_backlog(&shared, &gate).await;
        }
        Ok(())
    }

    /// Accepts until `stop`: a permit first, then a connection; resource
    /// exhaustion spends the spare descriptor (when this loop holds it), then backs off.
    async fn accept_loop(
        &self,
        shared: &Arc<tcp_conn::Conn>,
        gate: &Gate,
        mut spare: Option<Spare>,
    ) {
        let (ctx, cfg, pool) = (&shared.ctx, &shared.cfg, &self.pool);
        let exhausted = ctx.metrics.error_counter("accept_resources");
        let mut backoff = MIN_BACKOFF;
        let mut warn_limit = RateLimited::new(Duration::from_secs(5));
        loop {
            let permit = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                p = pool.acquire() => p,
            };
            let accepted = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                r = self.listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(ok) => {
                    backoff = MIN_BACKOFF;
                    if let Some(s) = &mut spare {
                        s.refill();
                    }
                    ok
                }
                Err(e) if is_resource_exhaustion(&e) => {
                    exhausted.inc();
                    if spare.as_mut().is_some_and(Spare::release) {
                        // The spare descriptor is free now: one more accept can succeed.
                        continue;
                    }
                    if let Some(suppressed) = warn_limit.allow() {
                        warn!(error = %e, max_connections = cfg.max_connections, backoff_ms = backoff.as_millis() as u64, suppressed,
                            "accept failed: out of descriptors or memory; backing off (raise the fd limit, ulimit -n, or lower max_connections)");
                    }
                    tokio::select! {
                        _ = ctx.stop.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(e) => {
                    // ECONNABORTED, ECONNRESET, EPROTO...: that client is gone; the next one is fine.
                    debug!(error = %e, "accept error; retrying");
                    continue;
                }
            };
            // The connection gives the place back when it ends (tcp_conn::Slot).
            permit.forget();
            admit(shared, gate, stream, peer);
        }
    }

    /// The listener closes after this: accept and serve every connection
    /// still in its queue (under `max_connections` or not: they are here).
    async fn accept_backlog(&self, shared: &Arc<tcp_conn::Conn>, gate: &Gate) {
        let mut taken = 0usize;
        // Two passes: a handshake that began before a replacement took over
        // the address completes within microseconds on the same host; the
        // short wait lets it land in our queue rather than be reset.
        for pass in 0..2 {
            if pass == 1 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            while let Some((stream, peer)) = self.accept_queued() {
                self.pool.take_anyway();
                admit(shared, gate, stream, peer);
                taken += 1;
            }
        }
        if taken > 0 {
            debug!(
                connections = taken,
                "accepted the listener's backlog before closing it"
            );
        }
    }

    /// One connection from the accept queue without waiting, if there is one.
    fn accept_queued(&self) -> Option<(TcpStream, SocketAddr)> {
        let (sock, peer) = self.sock().accept().ok()?;
        let peer = peer.as_socket()?;
        sock.set_nonblocking(true).ok()?;
        let stream = TcpStream::from_std(std::net::TcpStream::from(sock)).ok()?;
        Some((stream, peer))
    }
}

/// Starts serving one accepted connection on the service's tracker, unless
/// the gate refuses it (reset at once, its place in the pool given back).
fn admit(shared: &Arc<tcp_conn::Conn>, gate: &Gate, stream: TcpStream, peer: SocketAddr) {
    let ctx = &shared.ctx;
    let Some(held) = gate.admit(&shared.cfg, peer) else {
        // Refused by an access list or a per-source limit (counted, logged rate-limited).
        net::reset_on_close(&stream);
        shared.pool.release();
        return;
    };
    if let Err(e) = net::apply_accepted(&stream, &shared.cfg.socket) {
        debug!(%peer, error = %e, "could not set connection options; closing");
        shared.pool.release();
        return;
    }
    ctx.metrics.accepted.inc();
    // A span per connection costs ~400 B of registry memory on every idle
    // connection, so it exists at debug level only; otherwise the connection
    // logs its end in its service's span (its info lines name the peer themselves).
    let span = debug_span!("conn", %peer);
    let conn = shared.clone();
    if span.is_disabled() {
        let task = conn.serve(stream, held, false);
        CONNECTION_FUTURE_BYTES.store(std::mem::size_of_val(&task), Ordering::Relaxed);
        ctx.tracker.spawn(task);
    } else {
        ctx.tracker
            .spawn(conn.serve(stream, held, true).instrument(span));
    }
}

/// The size of one connection's future (below debug level), recorded at
/// each accept and served in `/debug/allocator`: every idle connection pays
/// it, rounded up with tokio's task header to a 128-byte multiple, so a test
/// can hold it to a budget without measuring RSS.
static CONNECTION_FUTURE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// [`CONNECTION_FUTURE_BYTES`]: 0 until a connection was accepted.
pub fn connection_future_bytes() -> usize {
    CONNECTION_FUTURE_BYTES.load(Ordering::Relaxed)
}

/// Who may stay connected: the access lists, the per-source limits, then
/// the process's descriptor budget for TCP connections (`rlimit`).
struct Gate {
    sources: Sources,
    budget: Option<Arc<Semaphore>>,
    denied: Counter,
    per_source: Counter,
    per_rate: Counter,
    over_budget: Counter,
    flood: Flood,
}

/// What an admitted connection holds until it ends.
struct Held {
    /// Its place in its source's count (None when no per-source limit is set).
    _source: Option<SourceSlot>,
    /// Its descriptor from the process-wide budget.
    _budget: Option<OwnedSemaphorePermit>,
}

impl Gate {
    fn new(ctx: &ServiceCtx, sources: Sources, flood: Flood) -> Gate {
        let m = &ctx.metrics;
        Gate {
            sources,
            budget: crate::rlimit::connection_budget(),
            denied: m.drop_counter("denied"),
            per_source: m.drop_counter(Refusal::Open.reason()),
            per_rate: m.drop_counter(Refusal::Rate.reason()),
            over_budget: m.drop_counter("descriptor_budget"),
            flood,
        }
    }

    /// What the connection holds while it runs, or `None` when it is refused (counted, logged rate-limited).
    fn admit(&self, cfg: &TcpEchoConfig, peer: SocketAddr) -> Option<Held> {
        if !acl::permits(&cfg.allow, &cfg.deny, peer.ip()) {
            self.denied.inc();
            self.flood.hit("denied", |suppressed| {
                info!(%peer, suppressed, "connection refused by the access list (allow/deny)")
            });
            return None;
        }
        let source = if Sources::limits(cfg) {
            match self.sources.admit(peer.ip(), cfg) {
                Ok(slot) => Some(slot),
                Err(why) => {
                    let counter = match why {
                        Refusal::Open => &self.per_source,
                        Refusal::Rate => &self.per_rate,
                    };
                    counter.inc();
                    self.flood.hit(why.reason(), |suppressed| {
                        info!(%peer, max_connections_per_source = cfg.max_connections_per_source,
                            max_connections_per_second_per_source = ?cfg.max_connections_per_second_per_source,
                            source_prefix_v6 = cfg.source_prefix_v6, reason = why.reason(), suppressed,
                            "connection refused: per-source limit reached")
                    });
                    return None;
                }
            }
        } else {
            None
        };
        let budget = match &self.budget {
            Some(b) => match b.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    self.over_budget.inc();
                    self.flood.hit("descriptor_budget", |suppressed| {
                        warn!(%peer, suppressed, "connection refused: the TCP services hold their whole share of the descriptor limit (see the descriptor budget warning at start)")
                    });
                    return None;
                }
            },
            None => None,
        };
        Some(Held {
            _source: source,
            _budget: budget,
        })
    }
}

pub(crate) fn is_resource_exhaustion(e: &io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(windows)]
    {
        // WSAEMFILE, WSAENOBUFS
        matches!(e.raw_os_error(), Some(10024 | 10055))
    }
}

impl super::Kind for TcpEchoConfig {
    const SECTION: &'static str = "tcp_echo";
    const ROLE: Role = Role::TcpListener;
    type Bound = Bound;

    fn of(cfg: &crate::config::Config) -> &[Self] {
        &cfg.tcp_echo
    }
    fn of_mut(cfg: &mut crate::config::Config) -> &mut Vec<Self> {
        &mut cfg.tcp_echo
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
        crate::config::validate::services::tcp_echo(index, self, out)
    }
    fn claims(&self) -> Vec<crate::config::validate::Claim> {
        vec![crate::config::validate::Claim {
            proto: "tcp",
            addr: self.listen,
            v6only: self.socket.only_v6.unwrap_or(false),
            key: "listen",
        }]
    }
    fn directory_entry(&self) -> String {
        format!(
            "{}=tcp://{}",
            self.name,
            SocketAddr::new(self.listen.ip(), 65535)
        )
    }
    fn summary(&self) -> String {
        format!(
            "tcp://{} length_field_bytes={} byte_order={} max_frame_bytes={}",
            self.listen,
            self.length_field_bytes,
            self.byte_order,
            self.frame_limit()
        )
    }
    fn notes(&self) -> Vec<&'static str> {
        if cfg!(target_os = "linux") && self.socket.reuse_port.is_none() {
            // README "Reload and shutdown": gap-free rebinds on the same address.
            return vec![
                "the daemon also sets reuse_port = true (Linux default, so a reload binds beside the old listener; \
                 only a process of the same user can join such a port); check binds without it, so it never joins a running daemon's port",
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
    fn address_free(&self) -> Result<()> {
        net::tcp_address_free(self.listen, &self.socket)
    }
    fn effective(&self) -> toml::Table {
        let mut t = toml::Table::try_from(self).unwrap_or_default();
        // `None` means "the most the length field allows, up to 65536": say which.
        t.insert(
            "max_frame_bytes".into(),
            toml::Value::Integer(self.frame_limit() as i64),
        );
        t
    }
    fn fixture(&self) -> (crate::faults::Faults, usize) {
        let faults = self.faults.clone().unwrap_or_default();
        (crate::faults::Faults::Tcp(faults), self.journal)
    }
    fn bind(&self) -> Result<Bound> {
        bind(self)
    }
}

impl super::Service for Bound {
    type Config = TcpEchoConfig;
    fn local_addr(&self) -> SocketAddr {
        Bound::local_addr(self)
    }
    fn url(&self) -> String {
        format!("tcp://{}", self.local)
    }
    fn report(&self) -> Vec<net::Applied> {
        Bound::report(self)
    }
    fn sock(&self) -> socket2::SockRef<'_> {
        Bound::sock(self)
    }
    fn cfg(&self) -> &TcpEchoConfig {
        Bound::cfg(self)
    }
    fn with_config(&self, cfg: &TcpEchoConfig) -> Bound {
        Bound::with_config(self, cfg)
    }
    fn run(self, ctx: ServiceCtx) -> impl std::future::Future<Output = Result<()>> + Send {
        Bound::run(self, ctx)
    }
}
