//! The supervisor: binds every service of a config before any serves
//! (all-or-nothing), runs each in its own task with its own cancellation
//! tokens and connection tracker, applies reloads (see `reload.rs`) and drains
//! everything on shutdown.
//!
//! Flow: `run` loads the config, `Supervisor::start` binds and spawns, logs
//! `ready`, then the event loop takes signals and file changes until a
//! shutdown event; `shutdown` stops accepting everywhere, waits for
//! connections to drain up to `shutdown_timeout`, then closes the rest (at a
//! frame boundary gracefully, mid-frame with a reset), and a second shutdown
//! signal during the drain exits at once.
//!
//! Supervision: each service task's end is its outcome. An error, a panic or
//! a loop that ends without being asked to becomes that service's `error`
//! (logged at ERROR, `/healthz` 503 naming it). Tokens per service: `abort`
//! is a child of the daemon's, `drain` a child of `abort`, so an abort always
//! drains too; `stop` carries the reason the loop was stopped for.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::{self, Config, ConfigError};
use crate::metrics::Metrics;
use crate::net::Applied;
use crate::services::{Bound, Directory, ServiceCtx, Spec, Stop, StopReason};
use crate::signals::{self, Event};

/// Where the config comes from, so reloads read the same place.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// The shipped config compiled into the binary: nothing to watch or reload.
    Builtin,
}

impl ConfigSource {
    /// Reads and validates; also returns the text, so reloads can skip a file that did not change.
    pub fn load(&self) -> Result<(Config, String), ConfigError> {
        let text = self.read()?;
        Ok((self.parse(&text)?, text))
    }

    /// The config's text as it is now.
    pub fn read(&self) -> Result<String, ConfigError> {
        match self {
            ConfigSource::File(p) => {
                std::fs::read_to_string(p).map_err(|e| config::unreadable(p, &e))
            }
            ConfigSource::Builtin => Ok(config::SHIPPED.to_string()),
        }
    }

    /// Parses and validates `text` as this source's content.
    pub fn parse(&self, text: &str) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::File(p) => config::parse(text, &p.display().to_string()),
            ConfigSource::Builtin => config::parse(text, config::SHIPPED_ORIGIN),
        }
    }
}

/// Settings read at start only; a reload that changes them says so.
#[derive(Debug, Clone, PartialEq)]
pub struct FixedSettings {
    pub admin: Option<crate::config::AdminConfig>,
    pub watch_config: bool,
    /// `[daemon] workers`: the runtime's threads and the UDP socket sets.
    pub workers: usize,
}

impl FixedSettings {
    pub fn of(cfg: &Config) -> FixedSettings {
        FixedSettings {
            admin: cfg.admin.clone(),
            watch_config: cfg.daemon.watch_config,
            workers: cfg.daemon.workers,
        }
    }
}

/// Deadlines that a reload applies at once.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// SIGTERM/SIGINT drain deadline.
    pub shutdown: Duration,
    /// How long a retired service's connections are still served.
    pub drain: Duration,
}

impl Deadlines {
    pub fn of(cfg: &Config) -> Deadlines {
        Deadlines {
            shutdown: cfg.daemon.shutdown_timeout,
            drain: cfg.daemon.drain_timeout,
        }
    }
}

/// What the admin endpoint and `check` show of one service.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceInfo {
    pub name: String,
    pub kind: &'static str,
    pub url: String,
    pub local_addr: SocketAddr,
    /// Set when the service's task ended with an error.
    pub error: Option<String>,
    pub socket: Vec<Applied>,
    /// Sockets it receives on: a UDP echo's SO_REUSEPORT set has one per
    /// worker (Linux); `socket` shows the first, the others are alike.
    pub sockets: usize,
    /// Multicast groups joined, each as `group on interface [from source]`.
    pub groups: Vec<String>,
}

/// The services as they run now; the supervisor writes it, readers copy it.
pub type State = Arc<RwLock<Vec<ServiceInfo>>>;

/// One running service.
pub(crate) struct Running {
    pub spec: Spec,
    /// Kept for handing the socket to a changed service; `None` once released.
    pub bound: Option<Bound>,
    pub url: String,
    pub ctx: ServiceCtx,
    pub task: Option<JoinHandle<()>>,
    /// How this run of the service failed, once it has (see [`supervised`]).
    pub error: ErrorSlot,
}

/// Where a service task records its failure; [`Supervisor::publish`] reads it.
pub(crate) type ErrorSlot = Arc<std::sync::Mutex<Option<String>>>;

pub struct Supervisor {
    pub(crate) services: Vec<Running>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) directory: Directory,
    pub(crate) state: State,
    pub(crate) deadlines: Deadlines,
    /// Settings fixed at start (`[admin]`, `watch_config`, `workers`): a reload that
    /// changes them says they need a restart.
    pub(crate) fixed: FixedSettings,
    /// Services a reload removed or replaced, still serving their connections.
    pub(crate) retiring: TaskTracker,
    /// Cancelled when shutdown starts: retired services drain too.
    pub(crate) drain_all: CancellationToken,
    /// Parent of every service's `abort` token: cancelled at the shutdown deadline.
    pub(crate) abort_all: CancellationToken,
    /// Live faults and journals by service name (issue 16), shared with the admin endpoint.
    pub(crate) fixtures: crate::faults::Registry,
}

impl Supervisor {
    /// Binds every service, then starts them all; nothing serves if any bind fails.
    pub fn start(cfg: &Config, metrics: Arc<Metrics>) -> Result<Supervisor> {
        let mut bound = Vec::new();
        for spec in Spec::all(cfg) {
            let b = spec
                .address_free()
                .and_then(|()| spec.bind())
                .with_context(|| format!("{} {:?} cannot start", spec.kind(), spec.name()))?;
            bound.push((spec, b));
        }
        let mut sup = Supervisor {
            services: Vec::new(),
            metrics,
            directory: Directory::default(),
            state: State::default(),
            deadlines: Deadlines::of(cfg),
            fixed: FixedSettings::of(cfg),
            retiring: TaskTracker::new(),
            drain_all: CancellationToken::new(),
            abort_all: CancellationToken::new(),
            fixtures: crate::faults::Registry::default(),
        };
        for (spec, b) in bound {
            let r = sup.launch(spec, b, None);
            sup.services.push(r);
        }
        sup.publish();
        Ok(sup)
    }

    /// Spawns a bound service. `reuse` keeps the drain/abort tokens and the
    /// tracker of an earlier run of it (a handover, or a rollback restarting
    /// a paused service, goes on without disturbing its connections).
    pub(crate) fn launch(&self, spec: Spec, bound: Bound, reuse: Option<ServiceCtx>) -> Running {
        let ctx = match reuse {
            Some(old) => ServiceCtx {
                stop: Stop::default(),
                ..old
            },
            None => {
                let abort = self.abort_all.child_token();
                let metrics = self.metrics.service(spec.name());
                ServiceCtx {
                    stop: Stop::default(),
                    drain: abort.child_token(),
                    abort,
                    tracker: TaskTracker::new(),
                    fixture: self
                        .fixtures
                        .attach(crate::faults::file_settings(&spec), &metrics),
                    metrics,
                    directory: self.directory.clone(),
                }
            }
        };
        let url = bound.url();
        let span = info_span!("service", service = %spec.name(), kind = spec.kind(), local_addr = %bound.local_addr());
        let (state, name, run_ctx, b) = (
            self.state.clone(),
            spec.name().to_string(),
            ctx.clone(),
            bound.clone(),
        );
        let error = ErrorSlot::default(); // a new run starts clean
        let report = Report {
            name,
            state,
            slot: error.clone(),
        };
        let task = tokio::spawn(supervised(b, run_ctx, report).instrument(span));
        Running {
            spec,
            bound: Some(bound),
            url,
            ctx,
            task: Some(task),
            error,
        }
    }

    /// Rewrites the directory (for `{services}`) and the admin state.
    pub(crate) fn publish(&self) {
        let dir = self
            .services
            .iter()
            .map(|r| format!("{}={}", r.spec.name(), r.url))
            .collect::<Vec<_>>()
            .join(" ");
        *self.directory.write().unwrap() = dir;
        // Held throughout, so a task failing meanwhile either finds its slot
        // read below or its entry already published (see `supervised`).
        let mut state = self.state.write().unwrap();
        let infos = self
            .services
            .iter()
            .map(|r| {
                let b = r.bound.as_ref();
                ServiceInfo {
                    name: r.spec.name().to_string(),
                    kind: r.spec.kind(),
                    url: r.url.clone(),
                    local_addr: b
                        .map(Bound::local_addr)
                        .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                    error: r.error.lock().unwrap().clone(),
                    socket: b.map(Bound::report).unwrap_or_default(),
                    sockets: b.map_or(0, Bound::sockets),
                    groups: b.map(Bound::groups).unwrap_or_default(),
                }
            })
            .collect();
        *state = infos;
        // Start and every reload end here: live faults go back to the file's values.
        self.fixtures.sync(
            self.services
                .iter()
                .map(|r| crate::faults::file_settings(&r.spec))
                .collect(),
        );
    }

    pub fn state(&self) -> State {
        self.state.clone()
    }

    /// `name=url` of every service, as the `ready` event lists them.
    pub fn summary(&self) -> String {
        self.directory.read().unwrap().clone()
    }

    /// Stops accepting everywhere (backlogs are accepted first), lets
    /// connections drain until the deadline, then closes what is left (at a
    /// frame boundary gracefully, mid-frame with a reset). Returns how many
    /// connections were still open at the deadline.
    pub async fn shutdown(mut self) -> usize {
        let services = std::mem::take(&mut self.services);
        let deadline = tokio::time::Instant::now() + self.deadlines.shutdown;
        for r in &services {
            r.ctx.stop.stop(StopReason::Shutdown);
            r.ctx.drain.cancel();
            r.ctx.tracker.close();
        }
        self.drain_all.cancel();
        self.retiring.close();
        let all_done = async {
            for r in services.iter() {
                r.ctx.tracker.wait().await;
            }
            self.retiring.wait().await;
        };
        let mut cut = 0;
        if tokio::time::timeout_at(deadline, all_done).await.is_err() {
            cut = services.iter().map(|r| r.ctx.tracker.len()).sum();
            // Every service's abort token is a child of this one, including those a
            // reload is still retiring.
            self.abort_all.cancel();
            warn!(connections = cut, timeout = ?self.deadlines.shutdown, "shutdown timeout reached; closing connections still open (reset if in the middle of a frame)");
            let reset = async {
                for r in &services {
                    r.ctx.tracker.wait().await;
                }
                self.retiring.wait().await;
            };
            if tokio::time::timeout(AFTER_DEADLINE, reset).await.is_err() {
                warn!(wait = ?AFTER_DEADLINE, "some connections did not close after the deadline; exiting anyway");
            }
        }
        // Service loops send goodbyes and leave groups on stop; wait for them
        // too, all at once and for a bounded time.
        let tasks = services.into_iter().filter_map(|mut r| r.task.take());
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            futures_util::future::join_all(tasks),
        )
        .await;
        cut
    }
}

/// After a deadline, how long closing connections get (their lingering
/// close included) before we stop waiting for them.
pub(crate) const AFTER_DEADLINE: Duration =
    Duration::from_secs(crate::services::tcp_conn::LINGER.as_secs() + 1);

/// Where a service task reports how it ended.
struct Report {
    name: String,
    state: State,
    slot: ErrorSlot,
}

/// Runs one service to its end and records how it ended: an error, a panic
/// or a loop that ended without being stopped becomes the service's error.
async fn supervised(b: Bound, ctx: ServiceCtx, report: Report) {
    use futures_util::FutureExt;
    let stop = ctx.stop.clone();
    let run = async {
        test_panic_hook(&report.name);
        b.run(ctx).await
    };
    let error = match std::panic::AssertUnwindSafe(run).catch_unwind().await {
        Ok(Ok(())) if stop.is_cancelled() => return,
        Ok(Ok(())) => "service loop ended without being stopped".to_string(),
        Ok(Err(e)) => format!("{e:#}"),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into());
            format!("service task ended by a panic: {what}")
        }
    };
    error!(error = %error, "service failed");
    let mut state = report.state.write().unwrap();
    *report.slot.lock().unwrap() = Some(error.clone());
    if let Some(s) = state.iter_mut().find(|s| s.name == report.name) {
        s.error = Some(error);
    }
}

/// Debug builds only: `NETSERVD_TEST_PANIC_SERVICE=name` makes that service's
/// task panic as it starts, so tests can prove supervision sees it. The panic
/// skips the panic hook (`resume_unwind`), so it prints no backtrace.
fn test_panic_hook(name: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os("NETSERVD_TEST_PANIC_SERVICE").is_some_and(|v| v == name) {
        std::panic::resume_unwind(Box::new("test panic hook (NETSERVD_TEST_PANIC_SERVICE)"));
    }
    let _ = name;
}

/// `netservd run`: serve until a shutdown signal. Exit codes: [`crate::EXIT_OK`] and its siblings.
pub async fn run(source: ConfigSource, (cfg, text): (Config, String)) -> Result<()> {
    // Before any socket: the budget warning must see the limit the services will run under.
    crate::rlimit::prepare(&cfg);
    let metrics = Arc::new(Metrics::new());
    crate::net::share_tcp_ports();
    crate::net::reuseport_udp::set_workers(cfg.daemon.workers);
    let mut sup = Supervisor::start(&cfg, metrics.clone())?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    signals::forward(tx.clone()).context("install signal handlers")?;
    let _watch = match (&source, cfg.daemon.watch_config) {
        (ConfigSource::File(p), true) => Some(crate::watch::start(p, tx.clone())?),
        _ => None,
    };
    let admin = match &cfg.admin {
        Some(a) => {
            Some(crate::admin::start(a, sup.state(), metrics.clone(), sup.fixtures.clone()).await?)
        }
        None => None,
    };
    info!(services = %sup.summary(), admin = %admin.as_ref().map_or("none".to_string(), |a| a.local_addr().to_string()), config = %source, workers = cfg.daemon.workers, "ready");

    let mut seen = crate::reload::Seen::new(text);
    loop {
        match rx.recv().await {
            Some(Event::Reload(why)) => sup.reload_from(&source, why, &mut seen).await,
            Some(Event::Shutdown(why)) => {
                info!(signal = why, timeout = ?sup.deadlines.shutdown, "shutting down: draining connections");
                if let Some(a) = &admin {
                    a.set_draining();
                }
                break;
            }
            None => break,
        }
    }
    let drain = sup.shutdown();
    tokio::select! {
        cut = drain => {
            info!(connections_cut = cut, "shutdown complete");
            Ok(())
        }
        ev = async {
            loop {
                match rx.recv().await {
                    Some(Event::Shutdown(s)) => return s,
                    Some(Event::Reload(_)) => {}
                    None => std::future::pending::<()>().await,
                }
            }
        } => {
            warn!(signal = ev, "second signal during drain; exiting now");
            std::process::exit(crate::EXIT_FAILURE);
        }
    }
}
