//! Socket helpers shared by the reload tests (`tests/reload.rs`,
//! `tests/reload_live.rs`): free loopback ports, one-frame echoes, and the
//! listener's inode from /proc/net/tcp (Linux), to tell a kept socket from a
//! new one. Included with `#[path]` next to `mod common;`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use super::common::{WAIT, frame};

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[1] == format!("0100007F:{port:04X}") && f[3] == "0A").then(|| f[9].parse().unwrap())
    })
}

/// True for a log line whose message starts with `prefix`.
pub fn message_starts(l: &serde_json::Value, prefix: &str) -> bool {
    l["message"].as_str().is_some_and(|m| m.starts_with(prefix))
}
