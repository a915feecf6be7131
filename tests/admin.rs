//! The admin endpoint over HTTP with a real client (ureq): `/healthz` (ok,
//! failed services, draining), `/metrics` moving with traffic, `/services`
//! with the bound addresses and read-back socket options.

mod common;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::counters::admin_addr;
use common::*;

const CONFIG: &str = ECHO_WITH_ADMIN;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into()
}

/// (status, content-type, body) of `GET http://addr/path`.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut r = agent()
        .get(&format!("http://{addr}{path}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (
        r.status().as_u16(),
        ctype,
        r.body_mut().read_to_string().unwrap(),
    )
}

/// Value of the sample `name{service="svc"}` in Prometheus text.
fn sample(text: &str, name: &str, svc: &str) -> f64 {
    let prefix = format!("{name}{{service=\"{svc}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix:?} in:\n{text}"))
}

fn udp_round_trip(addr: SocketAddr, payload: &[u8]) {
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    u.send_to(payload, addr).unwrap();
    let mut buf = [0; 256];
    let (n, _) = u.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], payload);
}

#[test]
fn healthz_metrics_and_services_answer() {
    let d = Daemon::start(CONFIG);
    let admin = admin_addr(&d);

    let (status, _, body) = get(admin, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("ok: 2 services running"), "{body}");

    let (status, ctype, before) = get(admin, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        sample(&before, "netservd_messages_in_total", "echo-udp"),
        0.0
    );
    assert_eq!(
        sample(&before, "netservd_connections_accepted_total", "echo"),
        0.0
    );

    tcp_round_trip(d.addr("echo"), b"hello");
    tcp_round_trip(d.addr("echo"), b"again");
    for _ in 0..3 {
        udp_round_trip(d.addr("echo-udp"), b"ping");
    }
    // Counters move just after the reply is sent, so the client may see the echo first: poll briefly.
    let expected = [
        ("netservd_connections_accepted_total", "echo", 2.0),
        ("netservd_messages_in_total", "echo", 2.0),
        ("netservd_messages_out_total", "echo", 2.0),
        ("netservd_messages_in_total", "echo-udp", 3.0),
        ("netservd_bytes_out_total", "echo-udp", 12.0),
    ];
    let end = Instant::now() + WAIT;
    loop {
        let (_, _, after) = get(admin, "/metrics");
        let now: Vec<f64> = expected
            .iter()
            .map(|(n, s, _)| sample(&after, n, s))
            .collect();
        if expected
            .iter()
            .zip(&now)
            .all(|((_, _, want), got)| want == got)
        {
            break;
        }
        assert!(
            Instant::now() < end,
            "metrics did not reach {expected:?}, got {now:?}:\n{after}"
        );
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }

    let mut r = agent()
        .get(&format!("http://{admin}/metrics"))
        .header("Accept", "application/openmetrics-text")
        .call()
        .unwrap();
    let ctype = r
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .trim_end()
            .ends_with("# EOF")
    );

    let (status, ctype, body) = get(admin, "/services");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let services: serde_json::Value = serde_json::from_str(&body).unwrap();
    let list = services.as_array().expect("array of services");
    assert_eq!(list.len(), 2, "{body}");
    for (name, kind) in [("echo", "tcp_echo"), ("echo-udp", "udp_echo")] {
        let s = list
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {body}"));
        assert_eq!(s["kind"], kind);
        assert_eq!(s["local_addr"], d.addr(name).to_string(), "{body}");
        assert!(s["error"].is_null());
        let opts = s["socket"].as_array().unwrap();
        assert!(
            opts.iter().any(|o| o["key"] == "recv_buffer_bytes"
                && o["effective"]
                    .as_str()
                    .is_some_and(|v| v.parse::<u64>().is_ok())),
            "{body}"
        );
    }

    let (status, _, _) = get(admin, "/nope");
    assert_eq!(status, 404);
    d.assert_clean(&[]);
}

/// A service whose task failed makes `/healthz` 503 and names it. Built
/// through the library, since no config makes a live service fail on demand.
#[test]
fn healthz_names_failed_services() {
    use netservd::daemon::ServiceInfo;
    let info = |name: &str, error: Option<&str>| ServiceInfo {
        name: name.into(),
        kind: "udp_echo",
        url: "udp://127.0.0.1:9".into(),
        local_addr: "127.0.0.1:9".parse().unwrap(),
        error: error.map(Into::into),
        socket: Vec::new(),
        sockets: 1,
        groups: Vec::new(),
    };
    let state = Arc::new(RwLock::new(vec![
        info("fine", None),
        info("broken", Some("recv: socket closed")),
    ]));
    // A worker thread serves while this thread blocks in the HTTP client.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cfg = netservd::config::AdminConfig::on("127.0.0.1:0".parse().unwrap());
    let admin = rt
        .block_on(netservd::admin::start(
            &cfg,
            state,
            Arc::new(netservd::metrics::Metrics::new()),
            netservd::faults::Registry::default(),
        ))
        .unwrap();
    let addr = admin.local_addr();
    let (status, _, body) = get(addr, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("1 of 2 services failed"), "{body}");
    assert!(body.contains("broken: recv: socket closed"), "{body}");
    assert!(!body.contains("fine"), "{body}");

    // Dropping the handle stops the server.
    drop(admin);
    let end = Instant::now() + WAIT;
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        assert!(
            Instant::now() < end,
            "admin still listening {WAIT:?} after drop"
        );
        std::thread::sleep(Duration::from_millis(20)); // poll interval
    }
}

/// While SIGTERM drains open connections, `/healthz` says 503 so a load
/// balancer stops sending new work; the daemon still exits 0.
#[cfg(unix)]
#[test]
fn healthz_fails_while_draining() {
    use std::io::{Read, Write};

    let d = Daemon::start(CONFIG);
    let admin = admin_addr(&d);
    // A frame half received keeps the drain waiting until it completes.
    let mut held = TcpStream::connect(d.addr("echo")).unwrap();
    held.set_read_timeout(Some(WAIT)).unwrap();
    let f = frame(4, true, b"0123456789");
    held.write_all(&f[..6]).unwrap();
    tcp_round_trip(d.addr("echo"), b"x"); // the service is accepting, so the held one is in by now
    d.signal(libc::SIGTERM);
    d.wait_log(
        |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutting down"))
        },
        WAIT,
    )
    .expect("shutdown logged");
    let (status, _, body) = get(admin, "/healthz");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("draining"), "{body}");
    held.write_all(&f[6..]).unwrap();
    let mut back = vec![0; f.len()];
    held.read_exact(&mut back).unwrap();
    assert_eq!(back, f, "the frame in flight is finished during the drain");
    drop(held);
    let mut d = d;
    let st = d.wait_exit(WAIT).expect("daemon exits after the drain");
    assert_eq!(st.code(), Some(0));
    d.assert_clean(&[]);
}
