//! Applies a new config to a running [`Supervisor`], all or nothing.
//!
//! Services are matched by name. Unchanged ones are not touched (same socket,
//! same connections). A changed service whose socket settings are the same
//! gets the old socket handed over; one whose socket must change binds a new
//! one. Added services bind; removed ones stop and drain in the background.
//!
//! Order: parse and validate (already done) -> bind every new socket; a bind
//! refused because one of *our* old sockets holds the address is retried
//! after pausing that old service's accept loop and releasing its socket ->
//! if any bind fails, close everything this reload bound, restart what was
//! paused on its old socket, and keep the old config -> otherwise commit:
//! start the new, retire the replaced and removed (drain, then reset at
//! `shutdown_timeout`).

use std::time::Duration;

use tracing::{error, info, warn};

use crate::daemon::{ConfigSource, Running, Supervisor};
use crate::services::{Bound, Spec};

/// What a reload does with one service.
enum Action {
    Unchanged,
    /// New settings on the old socket.
    Handover(Bound),
    Replace(Bound),
    Add(Bound),
}

impl Supervisor {
    /// Reloads from `source` if its content changed since `current`.
    pub async fn reload_from(&mut self, source: &ConfigSource, why: &str, current: &mut String) {
        let started = std::time::Instant::now();
        let (cfg, text) = match source.load() {
            Ok(ok) => ok,
            Err(e) => {
                for line in e.to_string().lines() {
                    error!(trigger = why, "{line}");
                }
                warn!(
                    trigger = why,
                    errors = e.diagnostics.len(),
                    "reload failed: config invalid; still running the previous config"
                );
                self.metrics.reload("invalid");
                return;
            }
        };
        if text == *current && why != "SIGHUP" {
            return;
        }
        if (cfg.admin.clone(), cfg.daemon.watch_config) != self.fixed {
            warn!(
                "[admin] and daemon.watch_config are read at start only; restart to apply their change"
            );
        }
        match self
            .reload(Spec::all(&cfg), cfg.daemon.shutdown_timeout)
            .await
        {
            Ok(counts) => {
                *current = text;
                self.metrics.reload("applied");
                info!(
                    trigger = why,
                    started = counts[0],
                    stopped = counts[1],
                    replaced = counts[2],
                    unchanged = counts[3],
                    elapsed_ms = crate::logging::ms_f64(started.elapsed()),
                    "reload applied"
                );
            }
            Err(e) => {
                self.metrics.reload("failed");
                error!(trigger = why, error = %format!("{e:#}"), "reload failed: bind error; rolled back, still running the previous config");
            }
        }
    }

    /// Applies `specs`; returns counts of started, stopped, replaced, unchanged.
    pub async fn reload(
        &mut self,
        specs: Vec<Spec>,
        shutdown_timeout: Duration,
    ) -> anyhow::Result<[usize; 4]> {
        // Services whose socket survives this reload (unchanged or handed over);
        // every other old socket may be released to make room for a new one.
        let keep: Vec<String> = specs
            .iter()
            .filter(|s| {
                self.find(s.name())
                    .is_some_and(|r| r.bound.is_some() && r.spec.same_socket(s))
            })
            .map(|s| s.name().to_string())
            .collect();
        let mut plan: Vec<(Spec, Option<Action>)> = Vec::new();
        let mut deferred: Vec<usize> = Vec::new();
        let mut failure = None;
        for spec in specs {
            let old = self.find(spec.name());
            // A service whose socket was lost (a rollback that could not rebind) binds afresh.
            let live = old.and_then(|r| r.bound.as_ref().map(|b| (r, b)));
            let action = match live {
                Some((r, _)) if r.spec == spec => Some(Action::Unchanged),
                Some((r, b)) if r.spec.same_socket(&spec) => {
                    b.with_spec(&spec).map(Action::Handover)
                }
                _ => match spec.bind() {
                    Ok(b) if old.is_some() => Some(Action::Replace(b)),
                    Ok(b) => Some(Action::Add(b)),
                    Err(_) if self.holder_of(&spec, &keep).is_some() => {
                        deferred.push(plan.len());
                        None
                    }
                    Err(e) => {
                        failure = Some(e.context(format!("{} {:?}", spec.kind(), spec.name())));
                        break;
                    }
                },
            };
            plan.push((spec, action));
        }
        if let Some(e) = failure {
            return Err(e); // dropping `plan` closes every socket bound so far
        }

        // Release our own sockets that stand in the way, then bind again.
        let mut paused: Vec<usize> = Vec::new();
        for &i in &deferred {
            let spec = &plan[i].0;
            if let Some(h) = self.holder_of(spec, &keep)
                && !paused.contains(&h)
            {
                self.pause(h).await;
                paused.push(h);
            }
            let is_new = self.find(spec.name()).is_none();
            match spec.bind() {
                Ok(b) => {
                    plan[i].1 = Some(if is_new {
                        Action::Add(b)
                    } else {
                        Action::Replace(b)
                    })
                }
                Err(e) => {
                    failure = Some(e.context(format!("{} {:?}", spec.kind(), spec.name())));
                    break;
                }
            }
        }
        if let Some(e) = failure {
            drop(plan);
            for h in paused {
                self.resume(h);
            }
            return Err(e);
        }

        if let Some((spec, _)) = plan.iter().find(|(_, a)| a.is_none()) {
            anyhow::bail!(
                "{} {:?}: no way to apply this change; restart to apply it",
                spec.kind(),
                spec.name()
            );
        }

        // Commit.
        let mut counts = [0usize; 4];
        let mut old = std::mem::take(&mut self.services);
        let mut next = Vec::new();
        for (spec, action) in plan {
            let prev = old
                .iter()
                .position(|r| r.spec.name() == spec.name())
                .map(|i| old.remove(i));
            let name = spec.name().to_string();
            match action.expect("every deferred bind was resolved") {
                Action::Unchanged => {
                    counts[3] += 1;
                    info!(service = %name, action = "unchanged", "reload");
                    next.push(prev.expect("unchanged service exists"));
                }
                Action::Handover(b) | Action::Replace(b) => {
                    counts[2] += 1;
                    let prev = prev.expect("replaced service exists");
                    let r = self.launch(spec, b, None);
                    info!(service = %name, action = "replaced", url = %r.url, "reload");
                    self.retire(prev, shutdown_timeout).await;
                    next.push(r);
                }
                Action::Add(b) => {
                    counts[0] += 1;
                    let r = self.launch(spec, b, None);
                    info!(service = %name, action = "started", url = %r.url, "reload");
                    next.push(r);
                }
            }
        }
        for r in old {
            counts[1] += 1;
            info!(service = %r.spec.name(), action = "stopped", "reload");
            self.retire(r, shutdown_timeout).await;
        }
        self.services = next;
        self.shutdown_timeout = shutdown_timeout;
        self.publish();
        Ok(counts)
    }

    fn find(&self, name: &str) -> Option<&Running> {
        self.services.iter().find(|r| r.spec.name() == name)
    }

    /// Index of the running service that holds `spec`'s address and is going
    /// away in this reload (replaced by `spec`, or absent from `keep`).
    fn holder_of(&self, spec: &Spec, keep: &[String]) -> Option<usize> {
        let want = spec.bind_addr()?;
        self.services.iter().position(|r| {
            let going = !keep.iter().any(|k| k == r.spec.name());
            going
                && r.spec.kind() == spec.kind()
                && r.bound.as_ref().is_some_and(|b| {
                    let have = b.local_addr();
                    have.port() == want.port()
                        && (have.ip() == want.ip()
                            || have.ip().is_unspecified()
                            || want.ip().is_unspecified())
                })
        })
    }

    /// Stops a service's loop and releases its socket; its connections go on.
    async fn pause(&mut self, i: usize) {
        let r = &mut self.services[i];
        r.ctx.stop.cancel();
        if let Some(t) = r.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
        r.bound = None;
    }

    /// Rollback of [`pause`]: binds the old spec again and restarts its loop
    /// on the same connections.
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

    /// Stops a service: its loop ends now (so its listener is closed and its
    /// goodbye sent before the reload reports back), then, in the background,
    /// its connections drain until `timeout` and whatever is left is reset.
    async fn retire(&self, mut r: Running, timeout: Duration) {
        r.ctx.stop.cancel();
        r.ctx.drain.cancel();
        r.ctx.tracker.close();
        if let Some(t) = r.task.take()
            && tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
        {
            warn!(service = %r.spec.name(), "service loop did not stop within 2s of the reload");
        }
        drop(r.bound.take());
        self.retiring.spawn(async move {
            if tokio::time::timeout(timeout, r.ctx.tracker.wait()).await.is_err() {
                let cut = r.ctx.tracker.len();
                r.ctx.abort.cancel();
                warn!(service = %r.spec.name(), connections = cut, "drain timeout; resetting connections");
                r.ctx.tracker.wait().await;
            }
        });
    }
}
