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
//! Accept errors never end the service: running out of descriptors or memory
//! (EMFILE, ENFILE, ENOBUFS, ENOMEM) backs off with a growing sleep and a
//! rate-limited warning instead of spinning (after first spending the loop's
//! spare descriptor, `rlimit::Spare`, on one more accept); per-connection
//! errors retry at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::metrics::counter::Counter;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, Span, debug, debug_span, info, warn};

use super::per_source::{Refusal, SourceSlot, Sources};
use super::{ServiceCtx, tcp_conn};
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
    /// `max_connections`, shared with the service this one is handed over to
    /// when the limit stays the same, so old and new connections count together.
    permits: Arc<Semaphore>,
    /// Open connections per source, shared like `permits` across a reload's handover.
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
        permits: Arc::new(Semaphore::new(cfg.max_connections as usize)),
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

    /// The same listener under new settings (a reload's handover). With the
    /// same `max_connections` the connections still draining under the old
    /// settings keep counting against it; a changed limit starts a new count.
    pub fn with_config(&self, cfg: &TcpEchoConfig) -> Bound {
        let permits = if cfg.max_connections == self.cfg.max_connections {
            self.permits.clone()
        } else {
            Arc::new(Semaphore::new(cfg.max_connections as usize))
        };
        Bound {
            cfg: Arc::new(cfg.clone()),
            permits,
            ..self.clone()
        }
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
        let cfg = self.cfg;
        let format = FrameFormat {
            width: cfg.length_field_bytes,
            order: cfg.byte_order,
            max_frame: cfg.frame_limit(),
        };
        let permits = self.permits;
        let exhausted = ctx.metrics.error_counter("accept_resources");
        let mut backoff = MIN_BACKOFF;
        let mut warn_limit = RateLimited::new(Duration::from_secs(5));
        let mut spare = Spare::open();
        // One copy of what every connection reads, shared: a connection holds only an Arc to it.
        let flood = Flood::new();
        let gate = Gate::new(&ctx, self.sources.clone(), flood.clone());
        let shared = Arc::new(tcp_conn::Conn {
            format,
            cfg: cfg.clone(),
            ctx: ctx.clone(),
            permits: permits.clone(),
            span: Span::current(),
            flood,
        });
        loop {
            let permit = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                p = permits.acquire() => p.expect("semaphore is never closed"),
            };
            let accepted = tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                r = self.listener.accept() => r,
            };
            let (stream, peer) = match accepted {
                Ok(ok) => {
                    backoff = MIN_BACKOFF;
                    spare.refill();
                    ok
                }
                Err(e) if is_resource_exhaustion(&e) => {
                    exhausted.inc();
                    if spare.release() {
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
            let Some(held) = gate.admit(&cfg, peer) else {
                // Refused by an access list or a per-source limit (counted, logged
                // rate-limited): closed at once with a reset, its permit given back.
                net::reset_on_close(&stream);
                continue;
            };
            if let Err(e) = net::apply_accepted(&stream, &cfg.socket) {
                debug!(%peer, error = %e, "could not set connection options; closing");
                continue;
            }
            // The connection gives the permit back when it ends (tcp_conn::Slot).
            permit.forget();
            ctx.metrics.accepted.inc();
            // A span per connection costs ~400 B of registry memory on every idle
            // connection, so it exists at debug level only; otherwise the connection
            // logs its end in its service's span (its info lines name the peer themselves).
            let span = debug_span!("conn", %peer);
            let conn = shared.clone();
            if span.is_disabled() {
                ctx.tracker.spawn(holding(held, conn.serve(stream, false)));
            } else {
                ctx.tracker
                    .spawn(holding(held, conn.serve(stream, true)).instrument(span));
            }
        }
        Ok(())
    }
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

/// Runs `f` holding what the connection took at accept, given back when it ends.
async fn holding(held: Held, f: impl Future<Output = ()>) {
    let _held = held;
    f.await
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
