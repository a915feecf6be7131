//! The admin endpoint's fault and journal routes for tests (issue 16):
//! one HTTP request with any method, answered as (status, body), plus
//! readers of `netservd_faults_total` and of the journal.

#![allow(dead_code)]

use std::net::SocketAddr;

use super::{Daemon, WAIT, counters};

/// A daemon with `[admin] control = true` and `service` (TOML: one service
/// table and its faults table); returns it with its admin address.
pub fn start(service: &str) -> (Daemon, SocketAddr) {
    let d = Daemon::start(&format!(
        "[daemon]\nwatch_config = false\n[admin]\nlisten = \"127.0.0.1:0\"\ncontrol = true\n{service}"
    ));
    let admin = counters::admin_addr(&d);
    (d, admin)
}

/// `METHOD PATH` with an optional JSON body and bearer token; any status is returned.
pub fn call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WAIT))
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{admin}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let r = match method {
        "GET" | "DELETE" => {
            let mut req = if method == "GET" {
                agent.get(&url)
            } else {
                agent.delete(&url)
            };
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.call()
        }
        _ => {
            let mut req = agent.put(&url).header("Content-Type", "application/json");
            if let Some(a) = &auth {
                req = req.header("Authorization", a);
            }
            req.send(body.unwrap_or(""))
        }
    };
    let mut r = r.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// `PUT /services/NAME/faults` that must succeed.
pub fn put_faults(admin: SocketAddr, name: &str, json: &str) {
    let (s, b) = call(
        admin,
        "PUT",
        &format!("/services/{name}/faults"),
        Some(json),
        None,
    );
    assert_eq!(s, 200, "PUT faults {json}: {b}");
}

/// `DELETE /services/NAME/faults` that must succeed.
pub fn clear_faults(admin: SocketAddr, name: &str) {
    let (s, b) = call(
        admin,
        "DELETE",
        &format!("/services/{name}/faults"),
        None,
        None,
    );
    assert_eq!(s, 200, "DELETE faults: {b}");
}

/// The journal's JSON after `since`.
pub fn journal(admin: SocketAddr, name: &str, since: u64) -> serde_json::Value {
    let (s, b) = call(
        admin,
        "GET",
        &format!("/services/{name}/journal?since={since}"),
        None,
        None,
    );
    assert_eq!(s, 200, "GET journal: {b}");
    serde_json::from_str(&b).unwrap()
}

/// `netservd_faults_total{service,fault}`; 0 when the series does not exist yet.
pub fn faults_total(admin: SocketAddr, service: &str, fault: &str) -> u64 {
    let (_, text) = call(admin, "GET", "/metrics", None, None);
    let want = format!("netservd_faults_total{{service=\"{service}\",fault=\"{fault}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
