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
//!
//! Data flow: the supervisor rewrites [`State`] on start and reload and the
//! services bump [`Metrics`]; handlers only read both. The server task stops
//! when [`Admin`] is dropped (the end of `daemon::run`), finishing requests in
//! flight.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::AdminConfig;
use crate::daemon::{ServiceInfo, State};
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
struct Shared {
    state: State,
    metrics: Arc<Metrics>,
    /// Set once shutdown starts, so `/healthz` takes the instance out of rotation while it drains.
    draining: AtomicBool,
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

/// Binds `cfg.listen` and serves until the returned [`Admin`] is dropped.
pub async fn start(cfg: &AdminConfig, state: State, metrics: Arc<Metrics>) -> Result<Admin> {
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| {
            format!(
                "[admin] cannot listen on {}; free the port or change [admin] listen",
                cfg.listen
            )
        })?;
    let local = listener.local_addr()?;
    let shared = Arc::new(Shared {
        state,
        metrics,
        draining: AtomicBool::new(false),
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/services", get(services))
        .route("/debug/allocator", get(allocator))
        .route("/reload", post(reload))
        .with_state(shared.clone());
    let stop = CancellationToken::new();
    let until = stop.clone().cancelled_owned();
    tokio::spawn(
        async move {
            info!("admin endpoint listening");
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(until)
                .await
            {
                warn!(error = %e, "admin endpoint stopped with an error");
            }
        }
        .instrument(info_span!("admin", local_addr = %local)),
    );
    Ok(Admin {
        local,
        shared,
        stop,
    })
}

/// `POST /reload`: raises SIGHUP in this process, which the signal stream
/// turns into a reload exactly as `kill -HUP` would; 202, as the reload runs
/// after the answer (its outcome is logged and counted in `reloads_total`).
async fn reload() -> Response {
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

async fn services(Extract(s): Extract<Arc<Shared>>) -> Response {
    let services = snapshot(&s.state);
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
