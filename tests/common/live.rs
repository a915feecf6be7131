//! Socket helpers shared by the reload tests (`tests/reload.rs`,
//! `tests/reload_live.rs`): addresses a reload gave a service, one-frame echoes, and the
//! listener's inode from /proc/net/tcp (Linux), to tell a kept socket from a
//! new one. Included with `#[path]` next to `mod common;`.
#![allow(dead_code)] // shared by tests/reload.rs and tests/reload_live.rs, each using part of it

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::common::{Daemon, WAIT, frame};

/// The address a reload gave `service` (its last `started`/`replaced` line
/// with a `url`), waiting for it: services bind port 0, so a test learns a
/// new listener's port from the daemon, never by guessing a free one.
pub fn reload_addr(d: &Daemon, service: &str) -> SocketAddr {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let found = d
            .logs()
            .into_iter()
            .rev()
            .find(|l| l["service"] == service && l["url"].is_string());
        if let Some(l) = found {
            let url = l["url"].as_str().unwrap();
            return url.split("://").nth(1).unwrap().parse().unwrap();
        }
        assert!(
            std::time::Instant::now() < end,
            "no reload gave {service} an address; logs:\n{}",
            d.dump()
        );
        std::thread::sleep(std::time::Duration::from_millis(10)); // poll interval
    }
}

/// A connection with every read and write bounded by [`WAIT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// One 4-byte big-endian frame and its byte-identical echo.
pub fn echo_once(s: &mut TcpStream, payload: &[u8]) {
    let f = frame(4, true, payload);
    s.write_all(&f).unwrap();
    let mut back = vec![0; f.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, f);
}

/// Inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
pub fn listen_inode(port: u16) -> Option<u64> {
    // thread-self: the test thread's network namespace (a test may have entered its own).
    let table = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap();
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[1] == format!("0100007F:{port:04X}") && f[3] == "0A").then(|| f[9].parse().unwrap())
    })
}

/// True while some socket listens on an address whose /proc/net/tcp hex is `ip_hex`
/// (e.g. `0300007F` for 127.0.0.3), on any port.
pub fn listening_on_ip(ip_hex: &str) -> bool {
    let table = std::fs::read_to_string("/proc/thread-self/net/tcp").unwrap();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f[1].starts_with(&format!("{ip_hex}:")) && f[3] == "0A"
    })
}

/// True for a log line whose message starts with `prefix`.
pub fn message_starts(l: &serde_json::Value, prefix: &str) -> bool {
    l["message"].as_str().is_some_and(|m| m.starts_with(prefix))
}
