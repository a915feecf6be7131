//! The operator's tools on a running daemon: `--log-format json` parses line
//! by line with the fields a collector needs, and `probe` exits 0 on live
//! services and 1 (within its timeout) on dead or silent ones.

mod common;

use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::counters::admin_addr;
use common::*;

const CONFIG: &str = ECHO_WITH_ADMIN;

#[test]
fn json_logs_parse_line_by_line() {
    // debug adds per-connection lines from inside service spans.
    let d = Daemon::start_with(CONFIG, &[("RUST_LOG", "debug")]);
    tcp_round_trip(d.addr("echo"), b"log me");
    let closed = d
        .wait_log(|l| l["message"] == "closed by peer", WAIT)
        .unwrap_or_else(|| panic!("no connection log:\n{}", d.dump()));
    let logs = d.logs();
    for l in &logs {
        // The harness keeps a line that is not JSON as {"raw": line}.
        assert!(l.get("raw").is_none(), "not a JSON line: {l}");
        assert!(
            l["timestamp"].as_str().is_some_and(|t| t.contains('T')),
            "no timestamp: {l}"
        );
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&l["level"].as_str().unwrap_or("")),
            "no level: {l}"
        );
        assert!(
            l["message"].as_str().is_some_and(|m| !m.is_empty()),
            "no message: {l}"
        );
    }
    // Fields stay fields; `services` is an array of {name, url}.
    let ready = logs.iter().find(|l| l["message"] == "ready").unwrap();
    let services = ready["services"].as_array().expect("services array");
    assert_eq!(services.len(), 2, "{ready}");
    assert_eq!(services[0]["name"], "echo", "{ready}");
    assert!(
        services[0]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("tcp://127.0.0.1:")),
        "{ready}"
    );
    assert!(
        ready["config"]
            .as_str()
            .is_some_and(|c| c.ends_with("config.toml")),
        "{ready}"
    );
    // Span fields once, merged under `span`: the connection's peer and its
    // service; no `spans` list, no span `name` at the top level.
    assert!(closed["span"]["peer"].is_string(), "{closed}");
    assert_eq!(closed["span"]["service"], "echo", "{closed}");
    assert_eq!(closed["span"]["kind"], "tcp_echo", "{closed}");
    for l in &logs {
        assert!(
            l.get("spans").is_none(),
            "span list repeats the fields: {l}"
        );
        assert!(l.get("name").is_none(), "top-level span name: {l}");
        let text = l.to_string();
        assert!(
            text.matches("\"local_addr\"").count() <= 1,
            "span field repeated: {l}"
        );
    }
    let admin = logs
        .iter()
        .find(|l| l["message"] == "admin endpoint listening")
        .unwrap();
    assert_eq!(
        admin["span"]["local_addr"],
        admin_addr(&d).to_string(),
        "{admin}"
    );
    d.assert_clean(&[]);
}

#[test]
fn probe_live_services_exit_0() {
    let d = Daemon::start(CONFIG);
    for url in [
        format!("tcp://{}", d.addr("echo")),
        format!("udp://{}", d.addr("echo-udp")),
    ] {
        let (code, out, err) = netservd(&["probe", &url, "--timeout", "5s"], None);
        assert_eq!(code, 0, "probe {url}: {out}{err}");
        assert!(out.starts_with("healthy:"), "{out}");
        assert_eq!(out.lines().count(), 1, "{out}");
    }
    d.assert_clean(&[]);
}

#[test]
fn probe_dead_services_exit_1_within_timeout() {
    // Refused: a port nothing listens on (bound then released).
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, out, _) = netservd(
        &["probe", &format!("tcp://{free}"), "--timeout", "5s"],
        None,
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("unhealthy:") && out.contains("connect"),
        "{out}"
    );

    // Silent: peers that take the request and never answer; probe must give up at its timeout.
    let silent_tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for url in [
        format!("tcp://{}", silent_tcp.local_addr().unwrap()),
        format!("udp://{}", silent_udp.local_addr().unwrap()),
    ] {
        let started = Instant::now();
        let (code, out, _) = netservd(&["probe", &url, "--timeout", "700ms"], None);
        let took = started.elapsed();
        assert_eq!(code, 1, "{url}: {out}");
        assert!(out.contains("no answer within 700ms"), "{out}");
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_secs(3),
            "{url}: took {took:?}"
        );
    }
}
