//! udp_echo's reflection and loop guards against the real binary on
//! loopback: a source port of chargen (19) gets no reply; a 2000-datagram
//! burst from one source gets no more replies than its token bucket allows
//! while another source is still served; oversized datagrams are dropped, not
//! truncated; replies to a closed port (ICMP port unreachable) do not stop the
//! receive loop. Each test also reads the matching drop counter from the
//! admin `/metrics` endpoint.
#![cfg(target_os = "linux")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::counters::drops;
use common::*;

fn config(extra: &str) -> String {
    format!(
        "[daemon]\nwatch_config = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n{extra}\n[udp_echo.socket]\nrecv_buffer_bytes = 4194304\n"
    )
}

fn client(bind: &str) -> UdpSocket {
    let s = UdpSocket::bind(bind).unwrap_or_else(|e| panic!("bind {bind}: {e}"));
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// The next reply, or None after the socket's read timeout.
fn reply(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut b = vec![0; 70_000];
    s.recv_from(&mut b).ok().map(|(n, _)| b[..n].to_vec())
}

#[test]
fn chargen_source_port_gets_no_reply() {
    let d = Daemon::start(&config(""));
    let addr = d.addr("u");
    // 127.0.0.19 so no other test on this host holds the port.
    let chargen = client("127.0.0.19:19");
    chargen.send_to(b"loop?", addr).unwrap();
    assert_eq!(
        reply(&chargen),
        None,
        "a datagram from port 19 was answered"
    );
    // Same address, ordinary port: answered, so only the port was refused.
    let plain = client("127.0.0.19:0");
    plain.send_to(b"hi", addr).unwrap();
    assert_eq!(reply(&plain).as_deref(), Some(&b"hi"[..]));
    assert_eq!(drops(&d, "u", "blocked_source_port"), 1);
    d.assert_clean(&[]);
}

#[test]
fn a_flooding_source_gets_its_bucket_and_others_are_served() {
    let (per_source, burst) = (10.0, 50.0);
    let d = Daemon::start(&config("rate_limit = { per_source = 10, burst = 50 }\n"));
    let addr = d.addr("u");
    let flood = client("127.0.0.1:0");
    let other = client("127.0.0.2:0");
    let start = Instant::now();
    // Paced in batches so the daemon's receive buffer takes every datagram.
    for batch in 0..20 {
        for i in 0..100u32 {
            flood
                .send_to(&(batch * 100 + i).to_be_bytes(), addr)
                .unwrap();
        }
        // Pacing is the subject: batches the daemon's receive buffer can take.
        std::thread::sleep(Duration::from_millis(5));
        // The other source, in the middle of the flood, is answered every time.
        other.send_to(&[batch as u8], addr).unwrap();
        assert_eq!(
            reply(&other).as_deref(),
            Some(&[batch as u8][..]),
            "other source starved during the flood"
        );
    }
    let mut replies = 0u32;
    while reply(&flood).is_some() {
        replies += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let allowed = burst + per_source * elapsed;
    eprintln!(
        "rate limit: 2000 sent in {elapsed:.2}s, {replies} replies (bucket allows at most {allowed:.0}); other source 20/20 served"
    );
    assert!(
        f64::from(replies) <= allowed + 1.0,
        "{replies} replies, bucket allows {allowed:.0}"
    );
    assert!(
        f64::from(replies) >= burst,
        "only {replies} replies: the burst of {burst} was not granted"
    );
    d.assert_clean(&[]);
}

#[test]
fn oversized_datagrams_are_dropped_not_truncated() {
    let d = Daemon::start(&config("max_datagram_bytes = 1000\n"));
    let addr = d.addr("u");
    let c = client("127.0.0.1:0");
    for n in [1001, 4096, 65507] {
        c.send_to(&vec![7; n], addr).unwrap();
        assert_eq!(
            reply(&c).map(|r| r.len()),
            None,
            "{n}-byte datagram over the 1000-byte limit was answered"
        );
    }
    c.send_to(&[9; 1000], addr).unwrap();
    assert_eq!(
        reply(&c),
        Some(vec![9; 1000]),
        "datagram at the limit must come back whole"
    );
    d.assert_clean(&[]);
}

/// ICMP "destination unreachable" messages this host has sent (/proc/net/snmp).
fn icmp_out_dest_unreachs() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap();
    let rows: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Icmp:")).collect();
    let (names, values) = (rows[0].split_whitespace(), rows[1].split_whitespace());
    names
        .zip(values)
        .find(|(n, _)| *n == "OutDestUnreachs")
        .unwrap()
        .1
        .parse()
        .unwrap()
}

#[test]
fn replies_to_closed_ports_do_not_stop_the_loop() {
    let d = Daemon::start(&config(""));
    let addr = d.addr("u");
    // A port nobody listens on: bind, note it, close.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A raw UDP socket (we are root) sends "from" that closed port, so every
    // reply hits it and the kernel answers the daemon with ICMP port unreachable.
    let raw = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    let icmp_before = icmp_out_dest_unreachs();
    for i in 0..50u8 {
        let payload = [i; 16];
        let mut pkt = Vec::with_capacity(8 + payload.len());
        pkt.extend_from_slice(&closed.to_be_bytes());
        pkt.extend_from_slice(&addr.port().to_be_bytes());
        pkt.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        pkt.extend_from_slice(&[0, 0]); // no checksum (allowed over IPv4)
        pkt.extend_from_slice(&payload);
        raw.send_to(&pkt, &SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        // Pacing: 50 requests spread over ~100 ms, past the kernel's ICMP rate limit burst.
        std::thread::sleep(Duration::from_millis(2));
    }
    let icmp = common::limits::settle(WAIT, || icmp_out_dest_unreachs() - icmp_before, |n| n >= 1);
    eprintln!(
        "icmp: 50 replies to closed port {closed}; host sent {icmp} port-unreachable messages"
    );
    assert!(
        icmp >= 1,
        "no ICMP unreachable was induced; the test did not exercise the path"
    );
    let c = client("127.0.0.1:0");
    for i in 0..10u8 {
        c.send_to(&[i; 8], addr).unwrap();
        assert_eq!(
            reply(&c),
            Some(vec![i; 8]),
            "receive loop stopped after ICMP errors"
        );
    }
    d.assert_clean(&[]);
}

/// `netservd_messages_in_total{service}`.
fn messages_in(d: &Daemon, service: &str) -> u64 {
    let prefix = format!("netservd_messages_in_total{{service=\"{service}\"}} ");
    common::counters::metrics_text(d)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[test]
fn datagrams_the_kernel_drops_on_a_full_receive_buffer_are_counted() {
    let cfg = "[daemon]\nwatch_config = false\n[admin]\nlisten = \"127.0.0.1:0\"\n\
               [[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n[udp_echo.socket]\nrecv_buffer_bytes = 4096\n";
    let d = Daemon::start(cfg);
    let addr = d.addr("u");
    let c = client("127.0.0.1:0");
    // Freeze the daemon so nothing is read: its small receive buffer overflows.
    d.signal(libc::SIGSTOP);
    let sent = 500u64;
    for _ in 0..sent {
        c.send_to(&[7u8; 256], addr).unwrap();
    }
    d.signal(libc::SIGCONT);
    // Every datagram is either received (messages_in) or counted as a kernel drop.
    let end = Instant::now() + WAIT;
    loop {
        let (got, dropped) = (messages_in(&d, "u"), drops(&d, "u", "receive_buffer_full"));
        if got + dropped == sent {
            assert!(
                dropped > 0,
                "the 4 KiB buffer should have overflowed: got {got}"
            );
            break;
        }
        assert!(
            Instant::now() < end,
            "received {got} + kernel drops {dropped} != sent {sent}"
        );
        std::thread::sleep(Duration::from_millis(100)); // poll interval
    }
}
