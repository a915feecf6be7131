//! The admin endpoint's own accept loop, so no client can hold it or the
//! process's descriptors: at most `max_connections` connections; at the
//! limit a newcomer takes the place of the oldest connection that has no
//! request in progress (counted `evicted_idle`), or is closed right after
//! accept when all are busy (counted `connection_limit`). Each is served by hyper's HTTP/1
//! with `header_read_timeout` (hyper also applies it while a keep-alive
//! connection waits for its next request), a bounded header buffer, and an
//! [`Idle`] watchdog that ends a connection on which no byte moved for
//! `idle_timeout`. Requests themselves are checked by [`crate::admin`]'s
//! guard layer (body size, bearer token).
//!
//! A spare descriptor (`rlimit::Spare`) is freed when the process runs out, so
//! the admin endpoint can still accept while a service holds the rest.
//!
//! Data flow: accept -> permit? -> task { hyper conn over Idle<TcpStream> ->
//! axum Router }; the permit is given back when the task ends. On `stop`
//! the loop ends and each connection finishes its request in flight, then closes.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

use crate::config::AdminConfig;
use crate::flood::Flood;
use crate::metrics::ServiceMetrics;
use crate::rlimit::Spare;

/// Largest request header block a client may send (hyper's read buffer cap).
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Sleep after a resource-exhaustion accept error (EMFILE...), doubling to 1 s.
const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// Serves `app` on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    cfg: &AdminConfig,
    m: ServiceMetrics,
    stop: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(cfg.max_connections as usize));
    let refused = m.drop_counter("connection_limit");
    let exhausted = m.error_counter("accept_resources");
    let log = Flood::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let http = Arc::new(http);
    let slots = Slots::default();
    let mut backoff = MIN_BACKOFF;
    let mut spare = Spare::open();
    loop {
        spare.refill();
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => {
                backoff = MIN_BACKOFF;
                ok
            }
            Err(e) if crate::services::tcp_echo::is_resource_exhaustion(&e) => {
                exhausted.inc();
                if spare.release() {
                    // The spare descriptor is free now: accept with it at once.
                    continue;
                }
                log.hit("accept_resources", |suppressed| {
                    warn!(error = %e, suppressed, "admin accept failed: out of descriptors or memory; backing off")
                });
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
            Err(e) => {
                debug!(error = %e, "admin accept error; retrying");
                continue;
            }
        };
        let Some(permit) = slot_for(&permits, &slots).await else {
            refused.inc();
            log.hit("connection_limit", |suppressed| {
                warn!(%peer, max_connections = cfg.max_connections, suppressed,
                    "admin connection refused: [admin] max_connections reached, none idle to make room");
            });
            crate::net::reset_on_close(&stream);
            continue;
        };
        m.accepted.inc();
        let slot = slots.push();
        let conn = Connection {
            http: http.clone(),
            app: app.clone(),
            idle: cfg.idle_timeout,
            m: m.clone(),
            stop: stop.clone(),
            slot: slot.clone(),
        };
        let slots = slots.clone();
        tokio::spawn(async move {
            conn.serve(stream, peer).await;
            slots.remove(&slot);
            drop(permit);
        });
    }
}

/// A permit for one more connection. At the limit, the connection that has
/// waited longest without a request in progress is closed to make room: a
/// client holding idle connections cannot lock the endpoint, and a fresh
/// one (which sends its request at once) is the last to be chosen.
async fn slot_for(permits: &Arc<Semaphore>, slots: &Slots) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = permits.clone().try_acquire_owned() {
        return Some(p);
    }
    if !slots.evict_oldest_idle() {
        return None;
    }
    // The evicted task gives its permit back as it ends, within a poll or two.
    tokio::time::timeout(EVICT_WAIT, permits.clone().acquire_owned())
        .await
        .ok()?
        .ok()
}

/// How long the accept loop waits for an evicted connection's permit.
const EVICT_WAIT: Duration = Duration::from_millis(200);

/// The open connections, oldest first.
#[derive(Clone, Default)]
struct Slots(Arc<Mutex<VecDeque<Arc<Slot>>>>);

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Slot {
    /// A request is being handled (its head arrived, its response is not yet made).
    busy: AtomicBool,
    /// Cancelled to close the connection for a newcomer.
    evict: CancellationToken,
    /// The [`Idle`] watchdog ended the connection (hyper may report that as a clean close).
    idled_out: AtomicBool,
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Slot>>> {
        // The list stays consistent whatever panicked while holding it.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        self.lock().push_back(slot.clone());
        slot
    }

    fn remove(&self, slot: &Arc<Slot>) {
        self.lock().retain(|s| !Arc::ptr_eq(s, slot));
    }

    /// Closes the oldest connection with no request in progress; false if there is none.
    fn evict_oldest_idle(&self) -> bool {
        let list = self.lock();
        let idle = list
            .iter()
            .find(|s| !s.busy.load(Ordering::Relaxed) && !s.evict.is_cancelled());
        idle.inspect(|s| s.evict.cancel()).is_some()
    }
}

/// What one connection task needs.
struct Connection {
    http: Arc<hyper::server::conn::http1::Builder>,
    app: Router,
    idle: Duration,
    m: ServiceMetrics,
    stop: CancellationToken,
    slot: Arc<Slot>,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        self.m.active.inc();
        let io = TokioIo::new(Idle::new(stream, self.idle, self.slot.clone()));
        let (app, slot) = (self.app.clone(), self.slot.clone());
        let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            slot.busy.store(true, Ordering::Relaxed);
            let (app, slot) = (app.clone(), slot.clone());
            async move {
                let r = app.oneshot(req).await;
                slot.busy.store(false, Ordering::Relaxed);
                r
            }
        });
        let conn = self.http.serve_connection(io, svc);
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            _ = self.slot.evict.cancelled() => {
                self.m.active.dec();
                self.m.drop_counter("evicted_idle").inc();
                debug!(%peer, "idle admin connection closed to make room for a new one");
                return;
            }
            _ = self.stop.cancelled() => {
                // Finish the request in flight (bounded by the timeouts), then close.
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        self.m.active.dec();
        let reason = match &result {
            _ if self.slot.idled_out.load(Ordering::Relaxed) => "idle_timeout",
            Err(e) if e.is_timeout() => "header_read_timeout",
            Err(e) => {
                debug!(%peer, error = %e, "admin connection error");
                return;
            }
            Ok(()) => return,
        };
        self.m.drop_counter(reason).inc();
        debug!(%peer, reason, "admin connection closed by a timeout");
    }
}

/// A stream that fails with `TimedOut` once no read or write made progress
/// for `after`: the keep-alive and stalled-client watchdog.
struct Idle<T> {
    io: T,
    after: Duration,
    timer: Pin<Box<Sleep>>,
    /// Told when the watchdog fires, for the counter.
    slot: Arc<Slot>,
}

impl<T> Idle<T> {
    fn new(io: T, after: Duration, slot: Arc<Slot>) -> Idle<T> {
        Idle {
            io,
            after,
            timer: Box::pin(tokio::time::sleep(after)),
            slot,
        }
    }

    fn touch(&mut self) {
        self.timer.as_mut().reset(Instant::now() + self.after);
    }

    /// Called when the stream is not ready: has the watchdog run out?
    fn expired<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.slot.idled_out.store(true, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "admin connection idle",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.expired(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.expired(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
