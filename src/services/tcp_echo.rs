//! `[[tcp_echo]]`: the accept loop. A permit (of `max_connections`) is taken
//! before each accept, so excess clients wait in the kernel backlog rather
//! than in our memory; each accepted stream runs `tcp_conn::serve` in its own
//! task on the service's tracker, so a connection's failure stays its own and
//! the supervisor can wait for every connection to drain.
//!
//! Accept errors never end the service: running out of descriptors or memory
//! (EMFILE, ENFILE, ENOBUFS, ENOMEM) backs off with a growing sleep and a
//! rate-limited warning instead of spinning; per-connection errors retry at once.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{Instrument, Span, debug, debug_span, warn};

use super::{ServiceCtx, tcp_conn};
use crate::config::TcpEchoConfig;
use crate::flood::Flood;
use crate::frame::FrameFormat;
use crate::logging::RateLimited;
use crate::net::{self, Role};

/// A bound TCP echo listener.
#[derive(Clone)]
pub struct Bound {
    cfg: Arc<TcpEchoConfig>,
    listener: Arc<TcpListener>,
    local: SocketAddr,
    /// `max_connections`, shared with the service this one is handed over to
    /// when the limit stays the same, so old and new connections count together.
    permits: Arc<Semaphore>,
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
        // One copy of what every connection reads, shared: a connection holds only an Arc to it.
        let shared = Arc::new(tcp_conn::Conn {
            format,
            cfg: cfg.clone(),
            ctx: ctx.clone(),
            permits: permits.clone(),
            span: Span::current(),
            flood: Flood::new(),
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
                ctx.tracker.spawn(conn.serve(stream, false));
            } else {
                ctx.tracker.spawn(conn.serve(stream, true).instrument(span));
            }
        }
        Ok(())
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
