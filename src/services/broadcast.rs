//! `[[broadcast]]`: the announcer. Renders `payload` (see `template.rs`) and
//! sends it to `destination` at once, then every `interval` randomised by up
//! to `jitter` either way, so that many announcers started together do not
//! stay in step. On stop (shutdown, or a reload that removes or re-binds it)
//! the `goodbye` template is sent once.
//!
//! The socket is bound to `bind` (the local address, and so the interface)
//! with SO_BROADCAST always on. A multicast destination also takes
//! `multicast_ttl`/`multicast_loop` (set in `crate::net`) and the outgoing
//! interface: the `bind` address for IPv4, the scope id of `destination` or
//! `bind` (`[ff12::1%2]:7070`) for IPv6.
//!
//! `{seq}` starts at 0 and grows by one per datagram actually sent. The
//! counter lives beside the socket, so a reload that only changes the payload
//! or the schedule (a handover on the same socket) continues the sequence and
//! sends no goodbye. Send errors (EACCES, ENETUNREACH...) are one rate-limited
//! warning naming the address and the likely cause; the next interval retries.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::{ServiceCtx, StopReason};
use crate::config::BroadcastConfig;
use crate::faults;
use crate::logging::RateLimited;
use crate::net::{self, Role};
use crate::template::{MAX_PAYLOAD_BYTES, Template, Vars};

/// When the process started announcing, for `{uptime_s}`.
static STARTED: OnceLock<Instant> = OnceLock::new();

/// The socket and what must survive a handover to a new config.
struct Shared {
    socket: UdpSocket,
    /// Next `{seq}`.
    seq: AtomicU64,
}

#[derive(Clone)]
pub struct Bound {
    cfg: Arc<BroadcastConfig>,
    shared: Arc<Shared>,
    local: SocketAddr,
}

pub fn bind(cfg: &BroadcastConfig) -> Result<Bound> {
    STARTED.get_or_init(Instant::now);
    let dest = cfg.destination;
    let addr = cfg
        .bind
        .unwrap_or_else(|| SocketAddr::new(crate::net::groups::unspecified(dest.ip()), 0));
    let std = net::udp_socket(addr, &cfg.socket, Role::UdpBroadcast)?;
    if dest.ip().is_multicast() {
        let sock = socket2::SockRef::from(&std);
        match (dest, addr) {
            (SocketAddr::V4(_), SocketAddr::V4(b)) if !b.ip().is_unspecified() => sock
                .set_multicast_if_v4(b.ip())
                .with_context(|| format!("set the outgoing multicast interface to {}", b.ip()))?,
            (SocketAddr::V6(d), SocketAddr::V6(b)) => {
                let index = if d.scope_id() != 0 {
                    d.scope_id()
                } else {
                    b.scope_id()
                };
                if index != 0 {
                    sock.set_multicast_if_v6(index).with_context(|| {
                        format!("set the outgoing multicast interface to index {index}")
                    })?;
                }
            }
            _ => {}
        }
    }
    for (key, text) in [("payload", &cfg.payload), ("goodbye", &cfg.goodbye)] {
        Template::parse(text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("broadcast {key} template"))?;
    }
    let socket = UdpSocket::from_std(std).context("register UDP socket with tokio")?;
    let local = socket.local_addr()?;
    Ok(Bound {
        cfg: Arc::new(cfg.clone()),
        shared: Arc::new(Shared {
            socket,
            seq: AtomicU64::new(0),
        }),
        local,
    })
}

impl Bound {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn destination(&self) -> SocketAddr {
        self.cfg.destination
    }

    pub fn with_config(&self, cfg: &BroadcastConfig) -> Bound {
        Bound {
            cfg: Arc::new(cfg.clone()),
            ..self.clone()
        }
    }

    pub(crate) fn cfg(&self) -> &BroadcastConfig {
        &self.cfg
    }

    pub(crate) fn sock(&self) -> socket2::SockRef<'_> {
        socket2::SockRef::from(&self.shared.socket)
    }

    pub fn report(&self) -> Vec<net::Applied> {
        net::read_back(
            socket2::SockRef::from(&self.shared.socket),
            self.local.is_ipv6(),
            &self.cfg.socket,
            Role::UdpBroadcast,
        )
    }

    pub async fn run(self, ctx: ServiceCtx) -> Result<()> {
        let cfg = &self.cfg;
        // Parsed again here (validated at load and in `bind`) so a reload's new text applies.
        let payload = Template::parse(&cfg.payload).map_err(anyhow::Error::msg)?;
        let goodbye = Template::parse(&cfg.goodbye).map_err(anyhow::Error::msg)?;
        let hostname = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let mut sender = Sender {
            b: &self,
            ctx: &ctx,
            hostname,
            errors: RateLimited::new(Duration::from_secs(30)),
        };
        info!(destination = %cfg.destination, interval = ?cfg.interval, jitter = ?cfg.jitter, "announcing");
        // The supervisor fills the directory just after spawning every service;
        // wait for it (briefly) so the first announcement already lists `{services}`.
        let until = tokio::time::Instant::now() + Duration::from_secs(1);
        while ctx.directory.read().map(|d| d.is_empty()).unwrap_or(false)
            && tokio::time::Instant::now() < until
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Announcements keep to a schedule (each due one jittered interval after the
        // last one was due), so a late wake-up on a starved machine shortens the next
        // wait instead of stretching every interval: the rate stays the configured one.
        let mut due = tokio::time::Instant::now();
        loop {
            // Faults (issue 16): `pause` and `loss` skip this one, `jitter_extra` stretches the wait.
            let faulty = ctx.fixture.flags() & faults::FAULTS != 0;
            match faulty
                .then(|| faults::broadcast::skip(&ctx.fixture))
                .flatten()
            {
                None => sender.send(&payload).await,
                // A lost announcement uses up its {seq}, so receivers see the gap.
                Some("loss") => {
                    self.shared.seq.fetch_add(1, Ordering::Relaxed);
                }
                Some(_) => {}
            }
            let mut delay = jittered(cfg.interval, cfg.jitter);
            if faulty {
                delay += faults::broadcast::extra_delay(&ctx.fixture);
            }
            due += delay;
            let now = tokio::time::Instant::now();
            if due + cfg.interval < now {
                // Stalled for more than an interval: start again from now, no burst to catch up.
                due = now;
            }
            tokio::select! {
                biased;
                _ = ctx.stop.cancelled() => break,
                _ = tokio::time::sleep_until(due) => {}
            }
        }
        // Goodbye only when this announcer really goes away: not when a reload
        // hands our socket to new settings or pauses us to rebind (maybe rolled back).
        let leaving = matches!(
            ctx.stop.reason(),
            Some(StopReason::Shutdown | StopReason::Removed | StopReason::Replaced)
        );
        if leaving && !goodbye.is_empty() {
            sender.send(&goodbye).await;
            info!(destination = %cfg.destination, "goodbye sent");
        }
        Ok(())
    }
}

/// `interval` moved by a uniformly random amount in `-jitter..=+jitter`.
pub fn jittered(interval: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return interval;
    }
    let j = jitter.as_secs_f64();
    let offset = rand::random_range(-j..=j);
    Duration::from_secs_f64((interval.as_secs_f64() + offset).max(0.0))
}

struct Sender<'a> {
    b: &'a Bound,
    ctx: &'a ServiceCtx,
    hostname: String,
    errors: RateLimited,
}

impl Sender<'_> {
    async fn send(&mut self, t: &Template) {
        let cfg = &self.b.cfg;
        let seq = self.b.shared.seq.load(Ordering::Relaxed);
        let services = other_services(
            &self
                .ctx
                .directory
                .read()
                .map(|d| d.clone())
                .unwrap_or_default(),
            &cfg.name,
        );
        let uptime_s = STARTED.get().map(|s| s.elapsed().as_secs()).unwrap_or(0);
        let vars = Vars {
            name: &cfg.name,
            hostname: &self.hostname,
            seq,
            uptime_s,
            pid: std::process::id(),
            services: &services,
        };
        let mut text = t.render(&vars);
        if text.len() > MAX_PAYLOAD_BYTES {
            // {services} grew past what validation could foresee (a reload added services).
            let mut cut = MAX_PAYLOAD_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            self.ctx.metrics.drop_counter("payload_truncated").inc();
        }
        let m = &self.ctx.metrics;
        match self
            .b
            .shared
            .socket
            .send_to(text.as_bytes(), cfg.destination)
            .await
        {
            Ok(n) => {
                self.b.shared.seq.fetch_add(1, Ordering::Relaxed);
                if self.ctx.fixture.flags() & faults::JOURNAL != 0 {
                    let group = cfg
                        .destination
                        .ip()
                        .is_multicast()
                        .then(|| cfg.destination.ip().to_string());
                    self.ctx
                        .fixture
                        .journal
                        .record("out", cfg.destination, group, text.as_bytes());
                }
                m.msgs_out.inc();
                m.bytes_out.inc_by(n as u64);
                debug!(seq, bytes = n, "announced");
            }
            Err(e) => {
                m.error_counter(error_kind(&e)).inc();
                if let Some(suppressed) = self.errors.allow() {
                    warn!(destination = %cfg.destination, local_addr = %self.b.local, error = %e, suppressed,
                        "cannot send announcement: {}; retrying next interval", cause(&e, cfg.destination.ip()));
                }
            }
        }
    }
}

/// `{services}` without the announcer's own entry.
fn other_services(directory: &str, me: &str) -> String {
    directory
        .split_whitespace()
        .filter(|kv| kv.split_once('=').is_none_or(|(n, _)| n != me))
        .collect::<Vec<_>>()
        .join(" ")
}

fn error_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied => "send_permission_denied",
        io::ErrorKind::NetworkUnreachable | io::ErrorKind::HostUnreachable => "send_unreachable",
        _ => "send",
    }
}

/// The likely cause of a send error, in words an operator can act on.
fn cause(e: &io::Error, dest: IpAddr) -> &'static str {
    match e.kind() {
        io::ErrorKind::PermissionDenied if dest.is_ipv4() => {
            "permission denied: broadcast needs SO_BROADCAST (it is set), so a firewall rule or a missing capability is refusing it"
        }
        io::ErrorKind::PermissionDenied => {
            "permission denied: a firewall rule or a missing capability is refusing it"
        }
        io::ErrorKind::NetworkUnreachable => {
            "network unreachable: no route to the destination from the bind address; check `bind` and that the interface is up"
        }
        io::ErrorKind::HostUnreachable => {
            "host unreachable: no route or neighbour for the destination"
        }
        io::ErrorKind::AddrNotAvailable => {
            "address not available: the bind address cannot reach this destination"
        }
        io::ErrorKind::WouldBlock => "send buffer full",
        _ => "send failed",
    }
}

impl super::Kind for BroadcastConfig {
    const SECTION: &'static str = "broadcast";
    const ROLE: Role = Role::UdpBroadcast;
    type Bound = Bound;

    fn of(cfg: &crate::config::Config) -> &[Self] {
        &cfg.broadcast
    }
    fn of_mut(cfg: &mut crate::config::Config) -> &mut Vec<Self> {
        &mut cfg.broadcast
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn socket(&self) -> &crate::config::SocketOptions {
        &self.socket
    }
    fn family_ip(&self) -> std::net::IpAddr {
        self.destination.ip()
    }
    fn validate(
        &self,
        index: usize,
        rules: &crate::config::validate::Rules,
        out: &mut crate::config::validate::Issues,
    ) {
        crate::config::validate::services::broadcast(index, self, &rules.worst_case_services, out)
    }
    fn claims(&self) -> Vec<crate::config::validate::Claim> {
        self.bind
            .map(|addr| crate::config::validate::Claim {
                proto: "udp",
                addr,
                v6only: false,
                key: "bind",
            })
            .into_iter()
            .collect()
    }
    fn directory_entry(&self) -> String {
        format!("{}=udp://{}", self.name, self.destination)
    }
    fn summary(&self) -> String {
        format!(
            "to udp://{} every {} (jitter {})",
            self.destination,
            humantime::format_duration(self.interval),
            humantime::format_duration(self.jitter)
        )
    }
    fn address_change(&self, new: &Self) -> Option<&'static str> {
        if self.bind != new.bind {
            return Some("bind");
        }
        (self.destination != new.destination).then_some("destination")
    }
    fn bind_addr(&self) -> Option<SocketAddr> {
        self.bind.filter(|a| a.port() != 0)
    }
    fn fixture(&self) -> (crate::faults::Faults, usize) {
        let faults = self.faults.clone().unwrap_or_default();
        (crate::faults::Faults::Broadcast(faults), self.journal)
    }
    fn bind(&self) -> Result<Bound> {
        bind(self)
    }
}

impl super::Service for Bound {
    type Config = BroadcastConfig;
    fn local_addr(&self) -> SocketAddr {
        Bound::local_addr(self)
    }
    fn url(&self) -> String {
        format!("udp://{}", self.destination())
    }
    fn report(&self) -> Vec<net::Applied> {
        Bound::report(self)
    }
    fn sock(&self) -> socket2::SockRef<'_> {
        Bound::sock(self)
    }
    fn cfg(&self) -> &BroadcastConfig {
        Bound::cfg(self)
    }
    fn with_config(&self, cfg: &BroadcastConfig) -> Bound {
        Bound::with_config(self, cfg)
    }
    fn run(self, ctx: ServiceCtx) -> impl std::future::Future<Output = Result<()>> + Send {
        Bound::run(self, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_bounds() {
        let (i, j) = (Duration::from_millis(100), Duration::from_millis(30));
        for _ in 0..1000 {
            let d = jittered(i, j);
            assert!(
                d >= Duration::from_millis(70) && d <= Duration::from_millis(130),
                "{d:?}"
            );
        }
        assert_eq!(jittered(i, Duration::ZERO), i);
    }

    #[test]
    fn services_drop_own_entry() {
        assert_eq!(
            other_services("a=udp://1 me=udp://2 b=tcp://3", "me"),
            "a=udp://1 b=tcp://3"
        );
    }
}
