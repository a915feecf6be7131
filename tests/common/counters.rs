//! Reads a running daemon's counters from its admin `/metrics` endpoint
//! (Prometheus text), so tests of the real binary can assert drops by reason,
//! and its heap from `/debug/allocator`, so leak checks need not read RSS.

use std::net::SocketAddr;

use super::{Daemon, WAIT};

/// The admin address from the `ready` event (the config needs an `[admin]` table).
pub fn admin_addr(d: &Daemon) -> SocketAddr {
    let ready = d
        .logs()
        .into_iter()
        .find(|l| l["message"] == "ready")
        .expect("ready event");
    ready["admin"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!("no admin address in {ready}; add [admin] listen = \"127.0.0.1:0\"")
        })
}

/// `GET PATH` of the admin endpoint, as text (panics on a non-2xx answer).
pub fn admin_get(d: &Daemon, path: &str) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let url = format!("http://{}{path}", admin_addr(d));
    let mut r = agent
        .get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    r.body_mut().read_to_string().unwrap()
}

/// `GET /metrics` as text.
pub fn metrics_text(d: &Daemon) -> String {
    admin_get(d, "/metrics")
}

/// jemalloc's `stats.allocated` of the daemon, in bytes (`GET /debug/allocator`, Linux).
pub fn allocated_bytes(d: &Daemon) -> u64 {
    let body = admin_get(d, "/debug/allocator");
    let v: serde_json::Value = serde_json::from_str(&body).expect("allocator JSON");
    v["allocated"]
        .as_u64()
        .unwrap_or_else(|| panic!("no `allocated` in {body}"))
}

/// `netservd_drops_total{service,reason}`; 0 when the series does not exist yet.
pub fn drops(d: &Daemon, service: &str, reason: &str) -> u64 {
    by_reason(d, "netservd_drops_total", service, reason)
}

/// `netservd_errors_total{service,reason}`; 0 when the series does not exist yet.
pub fn errors(d: &Daemon, service: &str, reason: &str) -> u64 {
    by_reason(d, "netservd_errors_total", service, reason)
}

fn by_reason(d: &Daemon, family: &str, service: &str, reason: &str) -> u64 {
    let prefix = format!("{family}{{service=\"{service}\",reason=\"{reason}\"}} ");
    metrics_text(d)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// `FAMILY{service}` (e.g. `netservd_connections_accepted_total`); 0 when absent.
pub fn service_counter(d: &Daemon, family: &str, service: &str) -> u64 {
    let prefix = format!("{family}{{service=\"{service}\"}} ");
    metrics_text(d)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}
