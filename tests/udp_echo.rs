//! UDP echo against the real binary: sizes 0, 1, 1472 and 65507 come back
//! unchanged; oversized datagrams are dropped (never truncated) and the loop
//! keeps serving.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

fn start(max: usize) -> Daemon {
    Daemon::start(&format!(
        r#"
[[udp_echo]]
name = "udp"
listen = "127.0.0.1:0"
max_datagram_bytes = {max}
"#
    ))
}

fn client() -> UdpSocket {
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(WAIT)).unwrap();
    u
}

#[test]
fn sizes_0_1_1472_65507_echo_unchanged() {
    let d = start(65507);
    let u = client();
    let mut buf = vec![0u8; 70000];
    for size in [0usize, 1, 1472, 65507] {
        let payload: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        u.send_to(&payload, d.addr("udp")).unwrap();
        let (n, from) = u.recv_from(&mut buf).unwrap();
        assert_eq!(from, d.addr("udp"));
        assert_eq!(&buf[..n], &payload[..], "size {size}");
    }
    d.assert_clean(&[]);
}

#[test]
fn oversize_is_dropped_not_truncated_and_service_continues() {
    let d = start(1000);
    let u = client();
    u.send_to(&[1u8; 1001], d.addr("udp")).unwrap();
    u.send_to(&[2u8; 1000], d.addr("udp")).unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = u.recv_from(&mut buf).unwrap();
    // The first reply to arrive is the 1000-byte one: the 1001-byte datagram got none.
    assert_eq!(n, 1000);
    assert!(buf[..n].iter().all(|b| *b == 2));
    u.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        u.recv_from(&mut buf).is_err(),
        "an oversized datagram was echoed"
    );
}

#[test]
fn a_failed_reply_does_not_stop_the_receive_loop() {
    let d = start(65507);
    // Send from a socket that closes before the reply: the reply draws an ICMP
    // port unreachable, which surfaces as an error on the daemon's socket.
    for _ in 0..20 {
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        gone.send_to(b"x", d.addr("udp")).unwrap();
    }
    // No wait needed: the daemon serves its socket in order, so "alive?" is
    // handled after the 20 replies and the errors they drew.
    let u = client();
    u.send_to(b"alive?", d.addr("udp")).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = u.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"alive?");
    d.assert_clean(&[]);
}
