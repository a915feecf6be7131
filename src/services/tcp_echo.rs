//! `[[tcp_echo]]`: the accept loop. A permit (of `max_connections`) is taken
//! before each accept, so excess clients wait in the kernel backlog rather
//! than in our memory; each accepted stream runs `tcp_conn::serve` in its own
//! task on the service's tracker, so a connection's failure stays its own and
//! the supervisor can wait for every connection to drain.
//!
//! Accept errors never end the service: running out of descriptors or memory
//! (EMFILE, ENFILE, ENOBUFS, ENOMEM) backs off with a growing sleep and a
//! rate-limited warning instead of spinning; per-connection errors retry at once.
//!
//! Reload: a loop stopped to hand its listener over ends at once (the new
//! loop accepts from the same queue). A loop whose listener is about to close
//! (removed, replaced, paused, shutdown) first accepts every connection still
//! in its backlog and serves it, so no queued client is reset. A replacement
//! bound beside it on the same address (SO_REUSEPORT, Linux) already takes
//! every new connection (`net::tcp_listener` steers them to the newest).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tracing::{Instrument, Span, debug, debug_span, warn};

use super::tcp_live::{Live, Pool};
use super::{ServiceCtx, StopReason, tcp_conn};
use crate::config::TcpEchoConfig;
use crate::frame::FrameFormat;
use crate::logging::RateLimited;
use crate::net::{self, Role};

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
        let pool = self.pool.clone();
        let exhausted = ctx.metrics.error_counter("accept_resources");
        let mut backoff = MIN_BACKOFF;
        let mut warn_limit = RateLimited::new(Duration::from_secs(5));
        // One copy of what every connection reads, shared: a connection holds only an Arc to it.
        let shared = Arc::new(tcp_conn::Conn {
            format,
            cfg: cfg.clone(),
            live: self.live.clone(),
            ctx: ctx.clone(),
            pool: pool.clone(),
            span: Span::current(),
        });
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
                    ok
                }
                Err(e) if is_resource_exhaustion(&e) => {
                    exhausted.inc();
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
            admit(&shared, stream, peer);
        }
        if ctx.stop.reason() != Some(StopReason::HandedOver) {
            self.accept_backlog(&shared).await;
        }
        Ok(())
    }

    /// The listener closes after this: accept and serve every connection
    /// still in its queue (under `max_connections` or not: they are here).
    async fn accept_backlog(&self, shared: &Arc<tcp_conn::Conn>) {
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
                admit(shared, stream, peer);
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

/// Starts serving one accepted connection on the service's tracker.
fn admit(shared: &Arc<tcp_conn::Conn>, stream: TcpStream, peer: SocketAddr) {
    let ctx = &shared.ctx;
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
        ctx.tracker.spawn(conn.serve(stream, false));
    } else {
        ctx.tracker.spawn(conn.serve(stream, true).instrument(span));
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
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
