//! `check --bind` creates every socket with socket2 and reads each option
//! back with getsockopt: requested next to what the kernel applied.
//! Linux only: the expected values are Linux's (buffer doubling, SO_BINDTODEVICE, TCP_FASTOPEN).
#![cfg(target_os = "linux")]

mod common;

use common::*;

/// The `effective` column of option `key` in the `check --bind` table.
fn effective<'a>(out: &'a str, key: &str) -> &'a str {
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(key))
        .unwrap_or_else(|| panic!("no row {key:?} in:\n{out}"));
    line.rsplit("  ").next().unwrap().trim()
}

#[test]
fn tcp_listener_options_read_back() {
    let cfg = r#"
[[tcp_echo]]
name = "opts"
listen = "127.0.0.1:0"
[tcp_echo.socket]
reuse_address = true
reuse_port = true
nodelay = true
keepalive = { idle = "45s", interval = "7s", retries = 4 }
linger = "2s"
recv_buffer_bytes = 100000
send_buffer_bytes = 50000
backlog = 64
ttl = 33
oob_inline = true
mss = 1200
recv_low_water = 16
tos = 16
dont_route = false
bind_device = "lo"
fastopen = 32
"#;
    let (code, out, err, _d) = check(cfg, &["--bind"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(effective(&out, "reuse_address"), "true");
    assert_eq!(effective(&out, "reuse_port"), "true");
    assert_eq!(effective(&out, "nodelay"), "true");
    assert_eq!(effective(&out, "keepalive.idle"), "45s");
    assert_eq!(effective(&out, "keepalive.interval"), "7s");
    assert_eq!(effective(&out, "keepalive.retries"), "4");
    assert_eq!(effective(&out, "linger"), "2s");
    // Linux doubles SO_RCVBUF/SO_SNDBUF requests for bookkeeping overhead.
    assert_eq!(effective(&out, "recv_buffer_bytes"), "200000");
    assert_eq!(effective(&out, "send_buffer_bytes"), "100000");
    assert_eq!(effective(&out, "ttl"), "33");
    assert_eq!(effective(&out, "oob_inline"), "true");
    assert_eq!(effective(&out, "recv_low_water"), "16");
    assert_eq!(effective(&out, "tos"), "16");
    assert_eq!(effective(&out, "dont_route"), "false");
    assert_eq!(effective(&out, "bind_device"), "lo");
    assert_eq!(effective(&out, "fastopen"), "32");
    // TCP_MAXSEG reads back as set before the connection exists.
    assert_eq!(effective(&out, "mss"), "1200");
}

#[test]
fn udp_and_ipv6_options_read_back() {
    let cfg = r#"
[[udp_echo]]
name = "u6"
listen = "[::1]:0"
[udp_echo.socket]
only_v6 = true
recv_buffer_bytes = 65536
ttl = 9
tos = 32
"#;
    let (code, out, err, _d) = check(cfg, &["--bind"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(effective(&out, "only_v6"), "true");
    assert_eq!(effective(&out, "recv_buffer_bytes"), "131072");
    assert_eq!(effective(&out, "ttl"), "9");
    assert_eq!(effective(&out, "tos"), "32");
}

/// The body of `GET /services`, every read and write under a timeout.
fn services(admin: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    write!(s, "GET /services HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

/// SO_PRIORITY (Linux) is set on each kind of socket and read back with
/// getsockopt, through `check --bind` and through a running daemon's `/services`.
#[test]
fn priority_reads_back_on_tcp_and_udp() {
    let cfg = r#"
[[tcp_echo]]
name = "t"
listen = "127.0.0.1:0"
[tcp_echo.socket]
priority = 5

[[udp_echo]]
name = "u"
listen = "[::1]:0"
[udp_echo.socket]
priority = 3
"#;
    let (code, out, err, _d) = check(cfg, &["--bind"]);
    assert_eq!(code, 0, "{out}{err}");
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| l.split_whitespace().next() == Some("priority"))
        .collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].ends_with(" 5") && rows[1].ends_with(" 3"), "{out}");

    let d = Daemon::start(&format!("[admin]\nlisten = \"127.0.0.1:0\"\n{cfg}"));
    let ready = d.wait_log(|l| l["message"] == "ready", WAIT).unwrap();
    let admin: std::net::SocketAddr = ready["admin"].as_str().unwrap().parse().unwrap();
    let body = services(admin);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    for (name, want) in [("t", "5"), ("u", "3")] {
        let s = v
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {body}"));
        let p = s["socket"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["key"] == "priority")
            .unwrap_or_else(|| panic!("{name}: no priority row: {body}"));
        assert_eq!(
            (p["requested"].as_str(), p["effective"].as_str()),
            (Some(want), Some(want)),
            "{p}"
        );
    }
    d.assert_clean(&[]);
}

/// Above 6 needs CAP_NET_ADMIN: refused by `check` with the limit and why.
#[test]
fn priority_above_six_is_refused_with_the_reason() {
    let (code, out, err, _d) = check(
        "[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n[tcp_echo.socket]\npriority = 7\n",
        &[],
    );
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains(":5:")
            && err.contains("`priority` must be a whole number from 0 to 6")
            && err.contains("CAP_NET_ADMIN"),
        "{err}"
    );
}

#[test]
fn check_without_bind_shows_requested_options_only() {
    let (code, out, _, _d) = check(
        "[[tcp_echo]]\nname = \"a\"\nlisten = \"127.0.0.1:0\"\n[tcp_echo.socket]\nttl = 5\n",
        &[],
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("socket.ttl") && out.contains('5') && !out.contains("effective"),
        "{out}"
    );
}
