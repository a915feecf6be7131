//! Applies a new config to a running [`Supervisor`], all or nothing, in
//! three steps with a type each:
//!
//! 1. [`Supervisor::plan`] matches services by name and decides a [`Step`]
//!    for each: unchanged (same socket, same connections), handed over (the
//!    same socket under new settings: timeouts and limits change in place for
//!    open connections, options a live socket takes are set on it), rebound
//!    (a new socket: address, bind-time options) or added. Every new socket
//!    is bound here. On Linux a TCP listener on the same address binds beside
//!    the old one (SO_REUSEPORT), so there is no gap. A bind refused with
//!    "address in use" by one of *our* sockets that goes away in this reload
//!    is deferred; any other bind error fails the reload at once, and nothing
//!    that runs was touched.
//! 2. [`Supervisor::apply`] pauses the services holding a deferred address
//!    (only those), binds again, and sets the handed-over socket options. A
//!    failure here closes what this reload bound, restarts the paused
//!    services on their old spec and puts the old options back.
//! 3. [`Supervisor::commit`] starts the new loops, hands sockets over, and
//!    retires the replaced and removed services: their listener closes after
//!    accepting its backlog, their connections are served under the old
//!    settings until they end or `drain_timeout` passes; then those at a
//!    frame boundary close gracefully and those mid-frame are reset.
//!
//! Config loading (file read, parse, name resolution) runs on a blocking
//! thread, not on the runtime the services use.

use std::io;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::daemon::{AFTER_DEADLINE, ConfigSource, Deadlines, FixedSettings, Running, Supervisor};
use crate::services::{Bound, Spec, StopReason};

/// How long a stopped service loop may take to end (it accepts its backlog first).
const LOOP_STOP: Duration = Duration::from_secs(2);

/// What a reload does with one service of the new config.
enum Step {
    Unchanged,
    /// New settings on the old socket.
    HandOver(Bound),
    /// A new socket replaces the old one.
    Rebind(Bound),
    Add(Bound),
    /// Waits for our own socket that holds its address to be released.
    Deferred,
}

/// What a reload should do with one service, decided from the specs alone
/// (before any socket is touched): the pure part of [`Step`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Same spec: keep the running service.
    Unchanged,
    /// Only settings or options a live socket takes changed: same socket, new loop.
    HandOver,
    /// The named key needs a new socket.
    Rebind(&'static str),
    /// No service of that name runs.
    Add,
}

/// What to do with `new`, given the running service of its name (if any).
fn decide(old: Option<&Spec>, new: &Spec) -> Decision {
    match old {
        None => Decision::Add,
        Some(old) if old == new => Decision::Unchanged,
        Some(old) => match old.rebind_reason(new) {
            None => Decision::HandOver,
            Some(key) => Decision::Rebind(key),
        },
    }
}

/// One service of the new config and its step.
struct Planned {
    spec: Spec,
    step: Step,
}

/// What [`Supervisor::plan`] decided; dropping it closes what it bound.
struct Plan {
    planned: Vec<Planned>,
    /// Running services whose socket survives (unchanged or handed over);
    /// every other old socket may be released to make room for a new one.
    keep: Vec<String>,
}

/// A reload that failed, with the service and key it is about.
#[derive(Debug, thiserror::Error)]
#[error("{kind} {name:?}: {cause:#}")]
pub struct ReloadError {
    kind: &'static str,
    name: String,
    /// The changed key that needed a new socket; `None` for a new service.
    key: Option<&'static str>,
    cause: anyhow::Error,
}

/// What a reload did, for its log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReloadCounts {
    pub started: usize,
    pub stopped: usize,
    /// New socket.
    pub replaced: usize,
    /// Same socket, new settings.
    pub handed_over: usize,
    pub unchanged: usize,
}

/// The config contents a reload has seen: the applied one, and the last
/// that failed (not retried on a file event until the file changes again).
pub struct Seen {
    applied: String,
    failed: Option<String>,
}

impl Seen {
    pub fn new(applied: String) -> Seen {
        Seen {
            applied,
            failed: None,
        }
    }
}

/// What triggered a reload; SIGHUP always reloads, a file event only on new content.
fn forced(why: &str) -> bool {
    why == "SIGHUP"
}

impl Supervisor {
    /// Reloads from `source` if its content changed since it was last seen.
    pub async fn reload_from(&mut self, source: &ConfigSource, why: &str, seen: &mut Seen) {
        let started = std::time::Instant::now();
        let src = source.clone();
        // Reading and parsing block (file I/O, `host:port` name resolution).
        let loaded = tokio::task::spawn_blocking(move || {
            let text = src.read()?;
            let parsed = src.parse(&text);
            Ok::<_, crate::config::ConfigError>((text, parsed))
        })
        .await;
        let (text, parsed) = match loaded {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => return self.invalid(why, &e),
            Err(e) => {
                error!(trigger = why, error = %e, "reload failed: config loader task failed");
                return self.metrics.reload("failed");
            }
        };
        if !forced(why) && (text == seen.applied || seen.failed.as_ref() == Some(&text)) {
            return;
        }
        let cfg = match parsed {
            Ok(cfg) => cfg,
            Err(e) => {
                seen.failed = Some(text);
                return self.invalid(why, &e);
            }
        };
        let fixed = FixedSettings::of(&cfg);
        if fixed.workers != self.fixed.workers {
            warn!(
                running = self.fixed.workers,
                configured = fixed.workers,
                "daemon.workers changed: it needs a restart (the runtime's threads and the UDP socket sets are sized at start); still running with the old count"
            );
        }
        let others = FixedSettings {
            workers: self.fixed.workers,
            ..fixed
        };
        if others != self.fixed {
            warn!(
                "[admin] and daemon.watch_config are read at start only; restart to apply their change"
            );
        }
        match self.reload(Spec::all(&cfg), Deadlines::of(&cfg)).await {
            Ok(c) => {
                seen.applied = text;
                seen.failed = None;
                self.metrics.reload("applied");
                info!(
                    trigger = why,
                    started = c.started,
                    stopped = c.stopped,
                    replaced = c.replaced,
                    handed_over = c.handed_over,
                    unchanged = c.unchanged,
                    elapsed_ms = crate::logging::ms_f64(started.elapsed()),
                    "reload applied"
                );
            }
            Err(e) => {
                seen.failed = Some(text);
                self.metrics.reload("failed");
                error!(trigger = why, service = %e.name, kind = e.kind, key = e.key, error = %e, "reload failed: bind error; nothing changed, still running the previous config");
            }
        }
    }

    fn invalid(&self, why: &str, e: &crate::config::ConfigError) {
        for line in e.to_string().lines() {
            error!(trigger = why, "{line}");
        }
        warn!(
            trigger = why,
            errors = e.diagnostics.len(),
            "reload failed: config invalid; still running the previous config"
        );
        self.metrics.reload("invalid");
    }

    /// Applies `specs`: plan, apply, commit.
    pub async fn reload(
        &mut self,
        specs: Vec<Spec>,
        deadlines: Deadlines,
    ) -> Result<ReloadCounts, ReloadError> {
        let mut plan = self.plan(specs)?;
        self.apply(&mut plan).await?;
        Ok(self.commit(plan, deadlines).await)
    }

    /// Step 1: decide each service's step and bind every new socket. Touches
    /// nothing that runs.
    fn plan(&self, specs: Vec<Spec>) -> Result<Plan, ReloadError> {
        let keep: Vec<String> = specs
            .iter()
            .filter(|s| {
                self.find(s.name()).is_some_and(|r| {
                    r.bound.is_some()
                        && matches!(
                            decide(Some(&r.spec), s),
                            Decision::Unchanged | Decision::HandOver
                        )
                })
            })
            .map(|s| s.name().to_string())
            .collect();
        let mut planned = Vec::with_capacity(specs.len());
        for spec in specs {
            let live = self
                .find(spec.name())
                .and_then(|r| r.bound.as_ref().map(|b| (r, b)));
            let decision = decide(live.map(|(r, _)| &r.spec), &spec);
            let step = match (live, decision) {
                (Some(_), Decision::Unchanged) => Step::Unchanged,
                (Some((_, b)), Decision::HandOver) => match b.with_spec(&spec) {
                    Some(nb) => Step::HandOver(nb),
                    None => Step::Deferred, // unreachable: same kind
                },
                _ => match self.bind_new(&spec) {
                    Ok(b) if self.find(spec.name()).is_some() => Step::Rebind(b),
                    Ok(b) => Step::Add(b),
                    Err(e) if addr_in_use(&e) && self.holder_of(&spec, &keep).is_some() => {
                        Step::Deferred
                    }
                    Err(e) => return Err(self.bind_failed(&spec, e)),
                },
            };
            planned.push(Planned { spec, step });
        }
        Ok(Plan { planned, keep })
    }

    /// Step 2: the only step that may touch what runs, and it undoes itself
    /// on failure: pause the holders of deferred addresses and bind there,
    /// then set the socket options of handed-over services.
    async fn apply(&mut self, plan: &mut Plan) -> Result<(), ReloadError> {
        let keep = std::mem::take(&mut plan.keep);
        let mut paused: Vec<usize> = Vec::new();
        let mut failure = None;
        for p in plan
            .planned
            .iter_mut()
            .filter(|p| matches!(p.step, Step::Deferred))
        {
            if let Some(h) = self.holder_of(&p.spec, &keep)
                && !paused.contains(&h)
            {
                self.pause(h).await;
                paused.push(h);
            }
            match p.spec.bind() {
                Ok(b) if self.find(p.spec.name()).is_some() => p.step = Step::Rebind(b),
                Ok(b) => p.step = Step::Add(b),
                Err(e) => {
                    failure = Some(self.bind_failed(&p.spec, e));
                    break;
                }
            }
        }
        if failure.is_none() {
            failure = self.reconfigure_handovers(plan).err();
        }
        if let Some(e) = failure {
            plan.planned.clear(); // closes every socket this reload bound
            for h in paused {
                self.resume(h);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Sets the changed options on handed-over sockets; on an error, puts the
    /// old ones back on those already changed.
    fn reconfigure_handovers(&self, plan: &Plan) -> Result<(), ReloadError> {
        let mut done: Vec<&Spec> = Vec::new();
        for p in &plan.planned {
            let Step::HandOver(b) = &p.step else { continue };
            let Some(old) = self.find(p.spec.name()) else {
                continue;
            };
            if let Err(e) = b.reconfigure(&old.spec) {
                for new in done {
                    // The old socket under its old spec, set back from the new one.
                    if let Some(ob) = self.find(new.name()).and_then(|r| r.bound.as_ref()) {
                        let _ = ob.reconfigure(new);
                    }
                }
                return Err(fail(&p.spec, e));
            }
            done.push(&p.spec);
        }
        Ok(())
    }

    /// Step 3: start, hand over, retire. Nothing here fails.
    async fn commit(&mut self, plan: Plan, deadlines: Deadlines) -> ReloadCounts {
        let steered = self.steer_new_listeners(&plan);
        let mut counts = ReloadCounts::default();
        let mut old = std::mem::take(&mut self.services);
        let mut next = Vec::with_capacity(plan.planned.len());
        for Planned { spec, step } in plan.planned {
            let prev = old
                .iter()
                .position(|r| r.spec.name() == spec.name())
                .map(|i| old.remove(i));
            let name = spec.name().to_string();
            match (step, prev) {
                (Step::Unchanged, Some(prev)) => {
                    counts.unchanged += 1;
                    info!(service = %name, action = "unchanged", "reload");
                    next.push(prev);
                }
                (Step::HandOver(b), Some(mut prev)) => {
                    counts.handed_over += 1;
                    // The old loop ends first (two loops on one socket would both
                    // answer); clients wait in the socket's queue meanwhile.
                    stop_loop(&mut prev, StopReason::HandedOver).await;
                    let r = self.launch(spec, b, Some(prev.ctx.clone()));
                    info!(service = %name, action = "handed_over", url = %r.url, "reload");
                    next.push(r);
                }
                (Step::Rebind(b), Some(prev)) => {
                    counts.replaced += 1;
                    let r = self.launch(spec, b, None);
                    info!(service = %name, action = "replaced", url = %r.url, "reload");
                    next.push(r);
                    self.retire(prev, StopReason::Replaced, deadlines.drain)
                        .await;
                }
                (Step::Add(b) | Step::Rebind(b), None) | (Step::HandOver(b), None) => {
                    counts.started += 1;
                    let r = self.launch(spec, b, None);
                    info!(service = %name, action = "started", url = %r.url, "reload");
                    next.push(r);
                }
                (Step::Add(b), Some(prev)) => {
                    // A service whose socket was lost (a rollback that could not rebind).
                    counts.replaced += 1;
                    next.push(self.launch(spec, b, None));
                    self.retire(prev, StopReason::Replaced, deadlines.drain)
                        .await;
                }
                (Step::Unchanged | Step::Deferred, prev) => {
                    // Unreachable: apply resolved every deferral; keep what runs.
                    error!(service = %name, "reload step left unresolved; keeping the old service");
                    next.extend(prev);
                }
            }
        }
        for r in old {
            counts.stopped += 1;
            info!(service = %r.spec.name(), action = "stopped", "reload");
            self.retire(r, StopReason::Removed, deadlines.drain).await;
        }
        self.services = next;
        self.deadlines = deadlines;
        self.publish();
        #[cfg(target_os = "linux")]
        for b in &steered {
            if let Some(l) = b.tcp_listener() {
                crate::net::steer_to(l, false);
            }
        }
        let _ = steered;
        counts
    }

    /// New TCP listeners bound beside one of ours on the same address take
    /// every new connection while the old ones accept their backlog and
    /// close (undone at the end of the commit).
    fn steer_new_listeners(&self, plan: &Plan) -> Vec<Bound> {
        let mut steered = Vec::new();
        for p in &plan.planned {
            let (Step::Rebind(b) | Step::Add(b)) = &p.step else {
                continue;
            };
            let beside = b.tcp_listener().is_some()
                && self.services.iter().any(|r| {
                    r.spec.kind() == p.spec.kind()
                        && r.bound
                            .as_ref()
                            .is_some_and(|o| same_address(o.local_addr(), b.local_addr()))
                });
            if beside {
                #[cfg(target_os = "linux")]
                if let Some(l) = b.tcp_listener() {
                    crate::net::steer_to(l, true);
                }
                steered.push(b.clone());
            }
        }
        steered
    }

    fn find(&self, name: &str) -> Option<&Running> {
        self.services.iter().find(|r| r.spec.name() == name)
    }

    /// Binds a new socket for `spec`. Beside one of our own listeners on
    /// the same address it may share the port (the gap-free rebind); anywhere
    /// else the address must be free of every other program first.
    fn bind_new(&self, spec: &Spec) -> anyhow::Result<Bound> {
        let ours = spec.bind_addr().is_some_and(|want| {
            self.services.iter().any(|r| {
                r.spec.kind() == spec.kind()
                    && r.bound
                        .as_ref()
                        .is_some_and(|b| same_address(b.local_addr(), want))
            })
        });
        if !ours {
            spec.address_free()?;
        }
        spec.bind()
    }

    /// A failed bind, named by service and by the key that needed a new socket.
    fn bind_failed(&self, spec: &Spec, e: anyhow::Error) -> ReloadError {
        let key = self
            .find(spec.name())
            .and_then(|r| r.spec.rebind_reason(spec));
        let why = match key {
            Some(k) => format!("new socket needed (changed key: {k})"),
            None => "new service".to_string(),
        };
        ReloadError {
            key,
            ..fail(spec, e.context(why))
        }
    }

    /// Index of the running service that holds `spec`'s address and is going
    /// away in this reload (replaced by `spec`, or absent from `keep`).
    fn holder_of(&self, spec: &Spec, keep: &[String]) -> Option<usize> {
        let want = spec.bind_addr()?;
        self.services.iter().position(|r| {
            let going = !keep.iter().any(|k| k == r.spec.name());
            going
                && r.spec.kind() == spec.kind()
                && r.bound
                    .as_ref()
                    .is_some_and(|b| same_address(b.local_addr(), want))
        })
    }

    /// Stops a service's loop and releases its socket; its connections go on.
    async fn pause(&mut self, i: usize) {
        let r = &mut self.services[i];
        stop_loop(r, StopReason::Paused).await;
        r.bound = None;
    }

    /// Rollback of [`Self::pause`]: binds the old spec again and restarts its
    /// loop on the same connections.
    fn resume(&mut self, i: usize) {
        let spec = self.services[i].spec.clone();
        match spec.bind() {
            Ok(b) => {
                let ctx = self.services[i].ctx.clone();
                self.services[i] = self.launch(spec, b, Some(ctx));
            }
            Err(e) => {
                error!(service = %spec.name(), error = %format!("{e:#}"), "rollback could not rebind the old socket; service is down")
            }
        }
    }

    /// Stops a service that a reload removed or replaced: its loop ends now
    /// (a listener accepts its backlog first, then closes; a goodbye is sent),
    /// and in the background its connections are served under the old
    /// settings until they end, `drain` passes, or shutdown drains them.
    async fn retire(&self, mut r: Running, reason: StopReason, drain: Duration) {
        stop_loop(&mut r, reason).await;
        drop(r.bound.take());
        r.ctx.tracker.close();
        let shutdown = self.drain_all.clone();
        self.retiring.spawn(async move {
            let ctx = &r.ctx;
            tokio::select! {
                _ = ctx.tracker.wait() => return,
                _ = shutdown.cancelled() => {
                    // Shutdown's own deadline (abort_all) ends what is left.
                    ctx.drain.cancel();
                    ctx.tracker.wait().await;
                    return;
                }
                _ = tokio::time::sleep(drain) => {}
            }
            let left = ctx.tracker.len();
            info!(service = %r.spec.name(), connections = left, drain_timeout = ?drain,
                "drain timeout; closing connections (at a frame boundary gracefully, mid-frame with a reset)");
            ctx.abort.cancel();
            if tokio::time::timeout(AFTER_DEADLINE, ctx.tracker.wait()).await.is_err() {
                warn!(service = %r.spec.name(), connections = ctx.tracker.len(), "connections still open after the drain deadline");
            }
        });
    }
}

/// Stops a service loop for `reason` and waits (bounded) for it to end.
async fn stop_loop(r: &mut Running, reason: StopReason) {
    r.ctx.stop.stop(reason);
    if let Some(t) = r.task.take()
        && tokio::time::timeout(LOOP_STOP, t).await.is_err()
    {
        warn!(service = %r.spec.name(), ?reason, "service loop did not stop within 2s of the reload");
    }
}

/// Two sockets that would share an address: same port, and the same IP or
/// one of them unspecified.
fn same_address(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn fail(spec: &Spec, cause: anyhow::Error) -> ReloadError {
    ReloadError {
        kind: spec.kind(),
        name: spec.name().to_string(),
        key: None,
        cause,
    }
}

/// True when the bind failed because the address is taken (by anyone).
fn addr_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::AddrInUse)
    })
}

#[cfg(test)]
mod tests;
