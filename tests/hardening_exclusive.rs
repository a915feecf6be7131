//! Exclusive unicast UDP (issue 11): a udp_echo does not set SO_REUSEADDR
//! unless asked, so on Unix a second process cannot bind its address and
//! take its traffic. The second process is the real `netservd listen` (which
//! itself asks for SO_REUSEADDR, as `socat ... reuseaddr` would).
#![cfg(unix)]

mod common;

use std::net::UdpSocket;

use common::*;

/// A UDP round trip to `addr`, bounded by [`WAIT`].
fn udp_round_trip(addr: std::net::SocketAddr, payload: &[u8]) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.send_to(payload, addr).unwrap();
    let mut buf = [0u8; 256];
    let (n, from) = s.recv_from(&mut buf).expect("echo reply");
    assert_eq!((&buf[..n], from), (payload, addr));
}

#[test]
fn second_process_cannot_bind_the_udp_echo_address() {
    let d = Daemon::start(ECHO_WITH_ADMIN);
    let addr = d.addr("echo-udp");
    let url = format!("udp://{addr}");
    let (code, out, err) = netservd(&["listen", &url, "--count", "1", "--timeout", "2s"], None);
    assert_ne!(code, 0, "a second bind of {addr} succeeded:\n{out}{err}");
    assert!(
        err.contains("address already in use"),
        "expected an address-in-use error, got:\n{err}"
    );
    // The daemon still owns the port and answers.
    udp_round_trip(addr, b"still mine");
}

#[test]
fn check_bind_says_what_reuse_address_gives_away() {
    let plain = "[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n";
    let (code, out, err, _d) = check(plain, &["--bind"]);
    assert_eq!(code, 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some("reuse_address"))
        .unwrap_or_else(|| panic!("no reuse_address row:\n{out}"));
    assert!(
        row.trim_end().ends_with("false"),
        "default must be off: {row}"
    );
    assert!(!out.contains("note: reuse_address"), "{out}");

    let shared = format!("{plain}[udp_echo.socket]\nreuse_address = true\n");
    let (code, out, err, _d) = check(&shared, &["--bind"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("note: reuse_address = true: another process"),
        "{out}"
    );
}
