//! The shipped config parses, runs, and answers on TCP and UDP.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};

use common::*;

#[test]
fn shipped_config_runs_and_echoes() {
    let shipped =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    // Same config on free ports, so the test does not collide with a running daemon.
    // :7070 is the announcer's destination (nothing binds it) and the multicast
    // listener's 7077 is shared with SO_REUSEADDR, so both stay as shipped.
    let cfg = shipped.replace(":7007", ":0").replace(":9900", ":0");
    let d = Daemon::start(&cfg);
    let mut s = TcpStream::connect(d.addr("echo")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let f = frame(4, true, b"hello");
    s.write_all(&f).unwrap();
    let mut back = vec![0; f.len()];
    s.read_exact(&mut back).unwrap();
    assert_eq!(back, f);

    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    u.send_to(b"ping", d.addr("echo-udp")).unwrap();
    let mut buf = [0; 16];
    let (n, _) = u.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    d.assert_clean(&[]);
}
