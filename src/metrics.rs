//! Counters every service keeps: connections, messages (frames or datagrams)
//! and bytes each way, drops by reason, errors by kind. Services take their
//! [`ServiceMetrics`] once at start and bump lock-free atomics on the hot path;
//! the admin endpoint renders the shared registry as Prometheus text.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub service: String,
    pub reason: String,
}

/// `netservd_faults_total{service,fault}`: one injected fault (issue 16).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabel {
    pub service: String,
    pub fault: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// All series of the process, registered once.
pub struct Metrics {
    registry: Registry,
    accepted: Family<ServiceLabel, Counter>,
    active: Family<ServiceLabel, Gauge>,
    msgs_in: Family<ServiceLabel, Counter>,
    msgs_out: Family<ServiceLabel, Counter>,
    bytes_in: Family<ServiceLabel, Counter>,
    bytes_out: Family<ServiceLabel, Counter>,
    drops: Family<ReasonLabel, Counter>,
    errors: Family<ReasonLabel, Counter>,
    faults: Family<FaultLabel, Counter>,
    reloads: Family<ResultLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("netservd");
        let m = Metrics {
            registry: Registry::default(),
            accepted: Family::default(),
            active: Family::default(),
            msgs_in: Family::default(),
            msgs_out: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            drops: Family::default(),
            errors: Family::default(),
            faults: Family::default(),
            reloads: Family::default(),
        };
        registry.register(
            "connections_accepted",
            "TCP connections accepted",
            m.accepted.clone(),
        );
        registry.register(
            "connections_active",
            "TCP connections open now",
            m.active.clone(),
        );
        registry.register(
            "messages_in",
            "Frames or datagrams received",
            m.msgs_in.clone(),
        );
        registry.register(
            "messages_out",
            "Frames or datagrams sent",
            m.msgs_out.clone(),
        );
        registry.register(
            "bytes_in",
            "Bytes received (frames include their length field)",
            m.bytes_in.clone(),
        );
        registry.register("bytes_out", "Bytes sent", m.bytes_out.clone());
        registry.register(
            "drops",
            "Messages dropped or connections closed by a limit, by reason",
            m.drops.clone(),
        );
        registry.register("errors", "I/O errors, by kind", m.errors.clone());
        registry.register(
            "faults",
            "Faults injected by [*.faults] or PUT /services/NAME/faults, by fault",
            m.faults.clone(),
        );
        registry.register("reloads", "Config reloads, by result", m.reloads.clone());
        Metrics { registry, ..m }
    }

    /// The handles one service bumps.
    pub fn service(self: &Arc<Self>, name: &str) -> ServiceMetrics {
        let l = ServiceLabel {
            service: name.to_string(),
        };
        ServiceMetrics {
            name: name.to_string(),
            accepted: self.accepted.get_or_create(&l).clone(),
            active: self.active.get_or_create(&l).clone(),
            msgs_in: self.msgs_in.get_or_create(&l).clone(),
            msgs_out: self.msgs_out.get_or_create(&l).clone(),
            bytes_in: self.bytes_in.get_or_create(&l).clone(),
            bytes_out: self.bytes_out.get_or_create(&l).clone(),
            all: self.clone(),
        }
    }

    pub fn reload(&self, result: &str) {
        self.reloads
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// The Prometheus text exposition of every series.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Current value of a drop counter (tests and `/services`).
    pub fn drops(&self, service: &str, reason: &str) -> u64 {
        self.drops
            .get_or_create(&ReasonLabel {
                service: service.into(),
                reason: reason.into(),
            })
            .get()
    }
}

/// One service's counters. Cloning shares them.
#[derive(Clone)]
pub struct ServiceMetrics {
    pub name: String,
    pub accepted: Counter,
    pub active: Gauge,
    pub msgs_in: Counter,
    pub msgs_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    all: Arc<Metrics>,
}

impl ServiceMetrics {
    /// The counter of drops for `reason`; take it once outside hot loops.
    pub fn drop_counter(&self, reason: &str) -> Counter {
        self.all
            .drops
            .get_or_create(&ReasonLabel {
                service: self.name.clone(),
                reason: reason.into(),
            })
            .clone()
    }

    pub fn error_counter(&self, kind: &str) -> Counter {
        self.all
            .errors
            .get_or_create(&ReasonLabel {
                service: self.name.clone(),
                reason: kind.into(),
            })
            .clone()
    }

    /// The counter of injected `fault`s of this service (`faults.rs`).
    pub fn fault_counter(&self, fault: &str) -> Counter {
        self.all
            .faults
            .get_or_create(&FaultLabel {
                service: self.name.clone(),
                fault: fault.into(),
            })
            .clone()
    }
}
