//! Fault injection for tests of other people's network code (issue 16): the
//! `[*.faults]` tables, the live state a service reads them from, the seeded
//! random source every fault draws from, and the `faults` counters.
//!
//! Data flow: `config.toml` (or `PUT /services/NAME/faults`) -> a [`Faults`]
//! value -> [`Fixture::set`], which publishes it behind one atomic flag word.
//! Services hold their service's [`Fixture`] (through `ServiceCtx`) and on
//! every read batch do one relaxed load of [`Fixture::flags`]: zero (no
//! faults, no journal) keeps today's path untouched; otherwise they take the
//! slow path in `tcp.rs`, `udp.rs` or `broadcast.rs`, which reads the
//! current [`Active`] faults and counts each fault it injects in
//! `netservd_faults_total{service,fault}`.
//!
//! The [`Registry`] maps service names to fixtures; the supervisor gives each
//! service its fixture at launch (a handover keeps it) and, after start and
//! after every reload, resets each one to its file's values ([`Registry::sync`]):
//! live changes last until the next reload, which says so in the log.

pub mod broadcast;
pub mod tcp;
pub mod udp;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::de;
use crate::journal::Journal;
use crate::metrics::ServiceMetrics;

/// [`Fixture::flags`] bit: faults are set.
pub const FAULTS: u8 = 1;
/// [`Fixture::flags`] bit: the journal records.
pub const JOURNAL: u8 = 2;

/// `[tcp_echo.faults]`. Every key absent = that fault off.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFaults {
    /// Delay before each echoed frame (frame order is kept).
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency: Option<Duration>,
    /// Each delay moves by a uniformly random amount in `-jitter..=+jitter` (not below 0).
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub jitter: Option<Duration>,
    /// Echo direction paced to this many bytes per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_bytes_per_s: Option<u64>,
    /// Echo written in pieces of this many bytes (client reassembly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_bytes: Option<usize>,
    /// Pause between two pieces of `slice_bytes`. Default 0 (pieces still go out one write each).
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub slice_delay: Option<Duration>,
    /// Graceful close (FIN) after this many frames of a connection were echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_after_frames: Option<u64>,
    /// Reset (RST) when the frame after this many arrives; it is not echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_after_frames: Option<u64>,
    /// After this many frames: stop reading and echoing, keep the connection open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall_after_frames: Option<u64>,
    /// Probability (0.0-1.0) that an accepted connection is reset at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse: Option<f64>,
    /// Probability (0.0-1.0) that a frame's echo has one payload byte flipped (never the length field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<f64>,
    /// Seed of every random choice: the same seed and traffic give the same faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// `[udp_echo.faults]` and `[multicast.faults]` (replies of `reply = "echo"`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UdpFaults {
    /// Probability (0.0-1.0) that a reply is not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Probability (0.0-1.0) that a reply is sent twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<f64>,
    /// Probability (0.0-1.0) that a reply is held and sent after the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<f64>,
    /// Delay of each reply.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub latency: Option<Duration>,
    /// Each delay moves by up to this much either way (not below 0).
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub jitter: Option<Duration>,
    /// Probability (0.0-1.0) that one byte of a reply is flipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<f64>,
    /// Replies cut to at most this many bytes (never larger than the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate_to_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// `[broadcast.faults]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastFaults {
    /// Probability (0.0-1.0) that an announcement is not sent (its `{seq}` is still used up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Each interval grows by a uniformly random `0..=jitter_extra` on top of `jitter`.
    #[serde(
        default,
        with = "de::opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub jitter_extra: Option<Duration>,
    /// While true, nothing is announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The faults of one service, of the shape its kind takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Faults {
    Tcp(TcpFaults),
    Udp(UdpFaults),
    Broadcast(BroadcastFaults),
}

impl Faults {
    /// No key set: the same as no faults.
    pub fn is_empty(&self) -> bool {
        match self {
            Faults::Tcp(f) => *f == TcpFaults::default(),
            Faults::Udp(f) => *f == UdpFaults::default(),
            Faults::Broadcast(f) => *f == BroadcastFaults::default(),
        }
    }

    /// No faults for a service of `kind`.
    pub fn none_for(kind: &str) -> Faults {
        match kind {
            "tcp_echo" => Faults::Tcp(TcpFaults::default()),
            "broadcast" => Faults::Broadcast(BroadcastFaults::default()),
            _ => Faults::Udp(UdpFaults::default()),
        }
    }

    /// A JSON body of `PUT /services/NAME/faults` for a service of `kind`:
    /// the keys of its TOML table, durations as strings with a unit.
    pub fn from_json(kind: &str, body: &[u8]) -> Result<Faults, String> {
        let r = match kind {
            "tcp_echo" => serde_json::from_slice(body).map(Faults::Tcp),
            "broadcast" => serde_json::from_slice(body).map(Faults::Broadcast),
            _ => serde_json::from_slice(body).map(Faults::Udp),
        };
        r.map_err(|e| format!("{kind} faults: {e}"))
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Faults::Tcp(f) => serde_json::to_value(f),
            Faults::Udp(f) => serde_json::to_value(f),
            Faults::Broadcast(f) => serde_json::to_value(f),
        }
        .unwrap_or_default()
    }

    fn seed(&self) -> Option<u64> {
        match self {
            Faults::Tcp(f) => f.seed,
            Faults::Udp(f) => f.seed,
            Faults::Broadcast(f) => f.seed,
        }
    }
}

/// Faults in force, with the random source they draw from.
pub struct Active {
    pub faults: Faults,
    pub rng: Rng,
}

/// splitmix64 over an atomic counter: lock-free, and one seed gives one
/// sequence of draws (in the order the service makes them).
pub struct Rng(AtomicU64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(AtomicU64::new(seed))
    }

    pub fn next_u64(&self) -> u64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    pub fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p` (absent = never). Draws only when `p` is set,
    /// so turning one fault on does not shift the draws of another that is off.
    pub fn chance(&self, p: Option<f64>) -> bool {
        match p {
            Some(p) if p > 0.0 => self.unit() < p,
            _ => false,
        }
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `base` moved by a uniformly random amount in `-jitter..=+jitter`, not below 0.
    pub fn jittered(&self, base: Duration, jitter: Option<Duration>) -> Duration {
        let Some(j) = jitter.filter(|j| !j.is_zero()) else {
            return base;
        };
        let offset = (self.unit() * 2.0 - 1.0) * j.as_secs_f64();
        Duration::from_secs_f64((base.as_secs_f64() + offset).max(0.0))
    }
}

/// One service's live faults and journal.
pub struct Fixture {
    pub name: String,
    pub kind: &'static str,
    /// [`FAULTS`] | [`JOURNAL`]: the one load the fast path pays.
    flags: AtomicU8,
    active: RwLock<Option<Arc<Active>>>,
    pub journal: Journal,
    /// Wakes connections stalled by `stall_after_frames` when faults change.
    pub changed: tokio::sync::Notify,
    /// UDP replies waiting out a `latency` (bounded by `udp::MAX_DELAYED`).
    pub delayed: std::sync::atomic::AtomicUsize,
    /// `netservd_faults_total` by fault name, created on first use.
    counters: Mutex<HashMap<&'static str, Counter>>,
    metrics: Mutex<Option<ServiceMetrics>>,
}

impl Fixture {
    pub fn new(name: &str, kind: &'static str) -> Fixture {
        Fixture {
            name: name.to_string(),
            kind,
            flags: AtomicU8::new(0),
            active: RwLock::new(None),
            journal: Journal::new(0),
            changed: tokio::sync::Notify::new(),
            delayed: std::sync::atomic::AtomicUsize::new(0),
            counters: Mutex::new(HashMap::new()),
            metrics: Mutex::new(None),
        }
    }

    /// [`FAULTS`] | [`JOURNAL`], one relaxed load: zero means take the plain path.
    #[inline]
    pub fn flags(&self) -> u8 {
        self.flags.load(Ordering::Relaxed)
    }

    /// The faults in force, if any.
    pub fn active(&self) -> Option<Arc<Active>> {
        self.active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The faults in force as a value (none = every key absent).
    pub fn faults(&self) -> Faults {
        self.active()
            .map(|a| a.faults.clone())
            .unwrap_or_else(|| Faults::none_for(self.kind))
    }

    /// Replaces the faults at once (open connections see them at their next
    /// read); the random source restarts from `seed` (or from the clock).
    pub fn set(&self, faults: Faults) {
        let active = (!faults.is_empty()).then(|| {
            let seed = faults.seed().unwrap_or_else(clock_seed);
            Arc::new(Active {
                faults,
                rng: Rng::new(seed),
            })
        });
        *self.active.write().unwrap_or_else(|p| p.into_inner()) = active.clone();
        self.update_flags();
        self.changed.notify_waiters();
    }

    /// Journal size (0 = off); clears what it held when the size changes.
    pub fn set_journal(&self, capacity: usize) {
        self.journal.resize(capacity);
        self.update_flags();
    }

    fn update_flags(&self) {
        let mut f = 0;
        if self.active().is_some() {
            f |= FAULTS;
        }
        if self.journal.capacity() > 0 {
            f |= JOURNAL;
        }
        self.flags.store(f, Ordering::Relaxed);
    }

    /// `latency` +- `jitter` (zero when neither is set), counted as `latency`
    /// when a latency is set.
    pub fn delay(
        &self,
        a: &Active,
        latency: Option<Duration>,
        jitter: Option<Duration>,
    ) -> Duration {
        if latency.is_some() {
            self.count("latency");
        }
        if latency.is_none() && jitter.is_none() {
            return Duration::ZERO;
        }
        a.rng.jittered(latency.unwrap_or(Duration::ZERO), jitter)
    }

    /// Counts one injected `fault` (`netservd_faults_total{service,fault}`).
    pub fn count(&self, fault: &'static str) {
        let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = c.get(fault) {
            c.inc();
            return;
        }
        let Some(m) = self
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        else {
            return;
        };
        let counter = m.fault_counter(fault);
        counter.inc();
        c.insert(fault, counter);
    }
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x5EED)
}

/// What the supervisor knows of one service's fault settings in its file.
pub struct FileSettings<'a> {
    pub name: &'a str,
    pub kind: &'static str,
    pub faults: Faults,
    pub journal: usize,
}

/// The faults and journal size `spec`'s file gives it.
pub fn file_settings(spec: &crate::services::Spec) -> FileSettings<'_> {
    let (faults, journal) = spec.fixture();
    FileSettings {
        name: spec.name(),
        kind: spec.kind(),
        faults,
        journal,
    }
}

/// Fixtures by service name, shared by the supervisor, the services and the admin endpoint.
#[derive(Clone, Default)]
pub struct Registry(Arc<RwLock<HashMap<String, Arc<Fixture>>>>);

impl Registry {
    /// The fixture of `name`, if the service runs.
    pub fn get(&self, name: &str) -> Option<Arc<Fixture>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The fixture of a service about to run; a new one starts with the
    /// file's values. `metrics` names where its fault counters go.
    pub fn attach(&self, file: FileSettings<'_>, metrics: &ServiceMetrics) -> Arc<Fixture> {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        let fx = match map.get(file.name) {
            Some(f) if f.kind == file.kind => f.clone(),
            _ => {
                let f = Arc::new(Fixture::new(file.name, file.kind));
                if !file.faults.is_empty() {
                    info!(service = %file.name, faults = %file.faults.to_json(), "faults on, from the config file (a test fixture)");
                }
                f.set(file.faults);
                f.set_journal(file.journal);
                map.insert(file.name.to_string(), f.clone());
                f
            }
        };
        *fx.metrics.lock().unwrap_or_else(|p| p.into_inner()) = Some(metrics.clone());
        fx
    }

    /// After start or a reload: every service's faults and journal size back
    /// to the file's values (logged where live faults differed); fixtures of
    /// services no longer configured are dropped.
    pub fn sync(&self, files: Vec<FileSettings<'_>>) {
        let mut map = self.0.write().unwrap_or_else(|p| p.into_inner());
        map.retain(|name, _| files.iter().any(|f| f.name == name));
        for file in files {
            let Some(fx) = map.get(file.name) else {
                continue;
            };
            if fx.faults() != file.faults {
                info!(service = %file.name, faults = %file.faults.to_json(), "faults reset to the config file's values by the reload");
                fx.set(file.faults);
            }
            if fx.journal.capacity() != file.journal {
                fx.set_journal(file.journal);
            }
        }
    }
}

/// Flips one byte of `data` (XOR with a random non-zero value).
pub fn flip_one(rng: &Rng, data: &mut [u8]) {
    if data.is_empty() {
        return;
    }
    let i = rng.below(data.len() as u64) as usize;
    data[i] ^= 1 + (rng.below(255) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws() {
        let (a, b) = (Rng::new(42), Rng::new(42));
        let da: Vec<bool> = (0..2000).map(|_| a.chance(Some(0.5))).collect();
        let db: Vec<bool> = (0..2000).map(|_| b.chance(Some(0.5))).collect();
        assert_eq!(da, db);
        let hits = da.iter().filter(|&&x| x).count();
        assert!((900..=1100).contains(&hits), "{hits}");
    }

    #[test]
    fn flip_changes_exactly_one_byte() {
        let rng = Rng::new(7);
        for _ in 0..100 {
            let mut d = vec![0u8; 16];
            flip_one(&rng, &mut d);
            assert_eq!(d.iter().filter(|&&b| b != 0).count(), 1);
        }
    }

    #[test]
    fn json_keys_are_the_toml_keys() {
        let f =
            Faults::from_json("tcp_echo", br#"{"latency":"50ms","reset_after_frames":3}"#).unwrap();
        let Faults::Tcp(t) = &f else { panic!() };
        assert_eq!(t.latency, Some(Duration::from_millis(50)));
        assert_eq!(f.to_json()["latency"], "50ms");
        assert!(Faults::from_json("udp_echo", br#"{"lantency":"1s"}"#).is_err());
    }
}
