//! The `[admin]` HTTP endpoint (axum on the daemon's runtime):
//! - `GET /healthz`: 200 `ok` when every configured service is running; 503
//!   naming each failed service and its error, or while the daemon drains.
//! - `GET /metrics`: the Prometheus text exposition of [`Metrics`]
//!   (OpenMetrics when the scraper asks for it in `Accept`).
//! - `GET /services`: the supervisor's [`State`] as JSON: each service with its
//!   URL, bound address, error and socket options read back from the kernel.
//! - `GET /debug/allocator`: jemalloc's heap counters as JSON ([`crate::alloc_stats`]);
//!   404 where the binary has no jemalloc (not Linux).
//! - `POST /reload`: the same as SIGHUP (the daemon signals itself), for
//!   `netservd reload` when the config sets no `pid_file`.
//! - `GET/PUT/DELETE /services/NAME/faults`, `GET/DELETE /services/NAME/journal?since=SEQ`:
//!   live faults and the traffic journal (issue 16, [`crate::admin_faults`]);
//!   the writes need `[admin] control = true`.
//!
//! Data flow: the supervisor rewrites [`State`] on start and reload and the
//! services bump [`Metrics`]; handlers only read both. Connections come
//! through `admin_serve` (connection limit, header and idle timeouts); each
//! request passes [`check_request`] (body size, bearer token from
//! `token_file`) before its handler. The server task stops when [`Admin`] is
//! dropped (the end of `daemon::run`), finishing requests in flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Request, State as Extract};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::metrics::counter::Counter;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

use crate::config::AdminConfig;
use crate::daemon::{ServiceInfo, State};
use crate::flood::Flood;
use crate::metrics::Metrics;

/// Prometheus' classic text format; what scrapers get unless they ask for OpenMetrics.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running admin server. Dropping it stops the server.
pub struct Admin {
    local: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

/// What every handler reads.
pub(crate) struct Shared {
    state: State,
    metrics: Arc<Metrics>,
    /// Set once shutdown starts, so `/healthz` takes the instance out of rotation while it drains.
    draining: AtomicBool,
    /// Live faults and journals by service name.
    pub(crate) fixtures: crate::faults::Registry,
    /// `[admin] control`: the fault and journal write endpoints are allowed.
    pub(crate) control: bool,
}

impl Admin {
    /// The bound address (the real port when the config says `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// From now on `/healthz` answers 503 `draining`; metrics and services stay available.
    pub fn set_draining(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The metrics label of the admin endpoint's own counters (`service="[admin]"`):
/// brackets cannot appear in a service name, so it never collides with one.
pub const METRICS_NAME: &str = "[admin]";

/// Binds `cfg.listen` and serves until the returned [`Admin`] is dropped.
pub async fn start(
    cfg: &AdminConfig,
    state: State,
    metrics: Arc<Metrics>,
    fixtures: crate::faults::Registry,
) -> Result<Admin> {
    let token = match &cfg.token_file {
        Some(path) => Some(read_token(path)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "[admin] cannot listen on {}; free the port or change [admin] listen",
                cfg.listen
            )
        })?;
    let local = listener.local_addr()?;
    let m = metrics.service(METRICS_NAME);
    let shared = Arc::new(Shared {
        state,
        metrics,
        draining: AtomicBool::new(false),
        fixtures,
        control: cfg.control,
    });
    let guard = Arc::new(Guard {
        token,
        max_body: cfg.max_body_bytes,
        unauthorized: m.drop_counter("unauthorized"),
        too_large: m.drop_counter("body_too_large"),
        flood: Flood::new(),
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/services", get(services))
        .route("/debug/allocator", get(allocator))
        .route("/reload", post(reload))
        .merge(crate::admin_faults::routes())
        .with_state(shared.clone())
        .layer(axum::middleware::from_fn_with_state(guard, check_request));
    let stop = CancellationToken::new();
    let cfg = cfg.clone();
    let until = stop.clone();
    tokio::spawn(
        async move {
            info!(
                max_connections = cfg.max_connections,
                header_read_timeout = ?cfg.header_read_timeout,
                idle_timeout = ?cfg.idle_timeout,
                token = cfg.token_file.is_some(),
                "admin endpoint listening"
            );
            crate::admin_serve::serve(listener, app, &cfg, m, until).await;
        }
        .instrument(info_span!("admin", local_addr = %local)),
    );
    Ok(Admin {
        local,
        shared,
        stop,
    })
}

/// `POST /reload` (a write: 403 unless `[admin] control = true`): raises SIGHUP in this process, which the signal stream
/// turns into a reload exactly as `kill -HUP` would; 202, as the reload runs
/// after the answer (its outcome is logged and counted in `reloads_total`).
async fn reload(Extract(s): Extract<Arc<Shared>>) -> Response {
    if let Err(refused) = crate::admin_faults::control(&s, "POST /reload") {
        return refused.into_response();
    }
    #[cfg(unix)]
    {
        // SAFETY: kill(2) on our own pid with SIGHUP, which `signals` handles.
        if unsafe { libc::kill(libc::getpid(), libc::SIGHUP) } == 0 {
            return (StatusCode::ACCEPTED, "reload requested\n").into_response();
        }
        let e = std::io::Error::last_os_error();
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot signal the daemon: {e}\n"),
        )
            .into_response()
    }
    #[cfg(not(unix))]
    {
        (
            StatusCode::NOT_IMPLEMENTED,
            "POST /reload needs Unix signals; restart the service to apply a new config\n",
        )
            .into_response()
    }
}

/// The token in `path`, surrounding whitespace (a trailing newline) removed.
fn read_token(path: &std::path::Path) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "[admin] token_file {}: cannot read it; create it (e.g. `openssl rand -hex 32 > FILE`) or remove token_file",
            path.display()
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!(
            "[admin] token_file {}: the file is empty; write a token into it (e.g. `openssl rand -hex 32 > FILE`)",
            path.display()
        );
    }
    Ok(token.as_bytes().to_vec())
}

/// What every request is checked against before it reaches a handler.
struct Guard {
    /// The bearer token, when `token_file` is set.
    token: Option<Vec<u8>>,
    max_body: u64,
    unauthorized: Counter,
    too_large: Counter,
    flood: Flood,
}

/// Body size and bearer token; `GET /healthz` needs no token (load balancers probe it).
async fn check_request(Extract(g): Extract<Arc<Guard>>, req: Request, next: Next) -> Response {
    let h = req.headers();
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let refused = match declared {
        Some(n) if n > g.max_body => Some((StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")),
        None if h.contains_key(header::TRANSFER_ENCODING) => {
            Some((StatusCode::LENGTH_REQUIRED, "body_too_large"))
        }
        _ => None,
    };
    if let Some((status, reason)) = refused {
        g.too_large.inc();
        g.flood.hit(reason, |suppressed| {
            info!(declared_bytes = ?declared, max_body_bytes = g.max_body, suppressed, "admin request body refused")
        });
        return (
            status,
            format!(
                "request body over [admin] max_body_bytes = {}\n",
                g.max_body
            ),
        )
            .into_response();
    }
    let open = req.method() == Method::GET && req.uri().path() == "/healthz";
    if let Some(token) = &g.token
        && !open
        && !bearer_matches(h, token)
    {
        g.unauthorized.inc();
        g.flood.hit("unauthorized", |suppressed| {
            info!(path = %req.uri().path(), suppressed, "admin request without a valid bearer token")
        });
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "unauthorized: send Authorization: Bearer <token from [admin] token_file>\n",
        )
            .into_response();
    }
    next.run(req).await
}

/// `Authorization: Bearer <token>`, compared in time independent of where it differs.
fn bearer_matches(h: &HeaderMap, token: &[u8]) -> bool {
    let Some(given) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    constant_time_eq(given, token)
}

/// Equal bytes? Looks at every byte of the longer input whatever the first
/// difference, so the time taken says nothing about how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// The services whose task ended with an error, as `name: error` lines.
pub fn failing(services: &[ServiceInfo]) -> Vec<String> {
    services
        .iter()
        .filter_map(|s| s.error.as_ref().map(|e| format!("{}: {e}", s.name)))
        .collect()
}

/// A copy of the state; a writer that panicked left a complete list behind, so poisoning is ignored.
fn snapshot(state: &State) -> Vec<ServiceInfo> {
    state.read().unwrap_or_else(|p| p.into_inner()).clone()
}

async fn healthz(Extract(s): Extract<Arc<Shared>>) -> Response {
    if s.draining.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining: shutdown in progress\n",
        )
            .into_response();
    }
    let services = snapshot(&s.state);
    let failed = failing(&services);
    if failed.is_empty() {
        (
            StatusCode::OK,
            format!("ok: {} services running\n", services.len()),
        )
            .into_response()
    } else {
        let body = format!(
            "unhealthy: {} of {} services failed\n{}\n",
            failed.len(),
            services.len(),
            failed.join("\n")
        );
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics_text(Extract(s): Extract<Arc<Shared>>, headers: HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let ctype = if wants_openmetrics {
        OPENMETRICS_TEXT
    } else {
        PROMETHEUS_TEXT
    };
    ([(header::CONTENT_TYPE, ctype)], s.metrics.encode()).into_response()
}

/// The services as the supervisor published them, each with its live
/// faults (`null` when none) and journal (`null` when off), which change
/// between publishes (`PUT /services/NAME/faults`).
async fn services(Extract(s): Extract<Arc<Shared>>) -> Response {
    let services: Vec<serde_json::Value> = snapshot(&s.state)
        .into_iter()
        .map(|info| {
            let fx = s.fixtures.get(&info.name);
            let mut v = serde_json::to_value(&info).unwrap_or_default();
            if let Some(obj) = v.as_object_mut() {
                let faults = fx.as_ref().map(|f| f.faults()).filter(|f| !f.is_empty());
                obj.insert(
                    "faults".into(),
                    faults.map_or(serde_json::Value::Null, |f| f.to_json()),
                );
                let journal = fx.as_ref().map(|f| &f.journal).filter(|j| j.capacity() > 0);
                obj.insert(
                    "journal".into(),
                    journal.map_or(
                        serde_json::Value::Null,
                        |j| serde_json::json!({"capacity": j.capacity(), "last_seq": j.last_seq()}),
                    ),
                );
            }
            v
        })
        .collect();
    axum::Json(services).into_response()
}

async fn allocator() -> Response {
    match crate::alloc_stats::read() {
        Some(stats) => axum::Json(stats).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no allocator statistics in this build (jemalloc is used on Linux only)\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        // Lengths differing by a multiple of 256 must not look equal.
        assert!(!constant_time_eq(&[0; 256], b""));
    }
}
