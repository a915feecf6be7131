//! SIGTERM/SIGINT drain: every frame received before the signal is echoed,
//! the process exits 0; a peer that never finishes its frame is reset at
//! `shutdown_timeout`; a second signal during the drain exits at once.
#![cfg(unix)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

/// The `connections` field of the "shutdown timeout reached" warning.
fn connections_cut(d: &Daemon) -> serde_json::Value {
    let line = d.wait_log(
        |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("shutdown timeout reached"))
        },
        WAIT,
    );
    line.unwrap_or_else(|| panic!("no shutdown timeout warning; logs:\n{}", d.dump()))["connections"].clone()
}

fn start(shutdown_timeout: &str) -> Daemon {
    Daemon::start(&format!(
        "[daemon]\nshutdown_timeout = \"{shutdown_timeout}\"\n[[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\n"
    ))
}

#[test]
fn sigterm_echoes_every_frame_in_flight_then_exits_0() {
    let mut d = start("5s");
    let mut conns: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    for c in 0..4u8 {
        let mut s = TcpStream::connect(d.addr("echo")).unwrap();
        // One round trip first: the connection is accepted, not waiting in the
        // backlog (a listener closed at shutdown resets what it never accepted).
        echo_on(&mut s, b"accepted?");
        let mut sent = Vec::new();
        for i in 0..300u32 {
            sent.extend(frame(4, true, &[c, (i % 251) as u8, 7, 7, 7, 7, 7, 7]));
        }
        s.write_all(&sent).unwrap(); // pipelined: nothing read yet
        conns.push((s, sent));
    }
    d.signal(libc::SIGTERM);
    for (mut s, sent) in conns {
        let mut back = Vec::new();
        s.read_to_end(&mut back).unwrap(); // everything, then the server's FIN
        assert_eq!(back.len(), sent.len());
        assert!(back == sent);
    }
    let status = d.wait_exit(WAIT).expect("daemon exits");
    assert_eq!(status.code(), Some(0), "{}", d.dump());
    let done = d
        .wait_log(|l| l["message"] == "shutdown complete", WAIT)
        .unwrap();
    assert_eq!(done["connections_cut"], 0);
    d.assert_clean(&[]);
}

#[test]
fn sigint_is_a_graceful_shutdown_too() {
    let mut d = start("5s");
    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit(WAIT).expect("exits").code(), Some(0));
    // The port is closed afterwards.
    assert!(TcpStream::connect(d.addr("echo")).is_err());
}

#[test]
fn a_peer_that_never_finishes_its_frame_is_reset_at_the_deadline() {
    let mut d = start("1s");
    let mut s = TcpStream::connect(d.addr("echo")).unwrap();
    echo_on(&mut s, b"served");
    s.write_all(&100u32.to_be_bytes()).unwrap();
    s.write_all(b"only part").unwrap();
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(WAIT).expect("exits");
    let took = t.elapsed();
    assert_eq!(status.code(), Some(0));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "took {took:?}"
    );
    assert_eq!(connections_cut(&d), 1);
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut b = [0u8; 8];
    let r = s.read(&mut b);
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "expected RST, got {r:?}"
    );
}

#[test]
fn a_second_signal_during_the_drain_exits_at_once() {
    let mut d = start("30s");
    let mut s = TcpStream::connect(d.addr("echo")).unwrap();
    echo_on(&mut s, b"served");
    s.write_all(&100u32.to_be_bytes()).unwrap(); // holds the drain open
    d.signal(libc::SIGTERM);
    d.wait_log(
        |l| l["message"] == "shutting down: draining connections",
        WAIT,
    )
    .unwrap();
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d.wait_exit(WAIT).expect("exits");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "second signal took {:?}",
        t.elapsed()
    );
    assert_eq!(status.code(), Some(1));
}

#[test]
fn a_peer_that_keeps_sending_during_the_drain_is_reset_at_the_deadline() {
    let mut d = Daemon::start(
        "[daemon]\nshutdown_timeout = \"1s\"\n[[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nlength_field_bytes = 1\n",
    );
    let s = TcpStream::connect(d.addr("echo")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A peer that never pauses: zero-length frames as fast as it can, echoes read and dropped.
    let writer = {
        let (mut w, stop) = (s.try_clone().unwrap(), stop.clone());
        std::thread::spawn(move || {
            let burst = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && w.write_all(&burst).is_ok() {}
        })
    };
    let echoed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let reader = {
        let (mut r, echoed) = (s.try_clone().unwrap(), echoed.clone());
        std::thread::spawn(move || {
            let mut b = [0u8; 65536];
            while let Ok(n @ 1..) = r.read(&mut b) {
                echoed.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    // The flood is under way once echoes come back.
    let end = Instant::now() + WAIT;
    while echoed.load(std::sync::atomic::Ordering::Relaxed) < 64 * 1024 {
        assert!(
            Instant::now() < end,
            "no echoes of the flood within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(5)); // poll interval
    }
    let t = Instant::now();
    d.signal(libc::SIGTERM);
    let status = d
        .wait_exit(WAIT)
        .expect("exits despite a peer that never stops sending");
    let took = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(status.code(), Some(0));
    // At the deadline the connection (at a frame boundary) gets FIN, then its
    // lingering close reads and discards for up to 2s before closing.
    assert!(
        took < Duration::from_millis(4000),
        "drain took {took:?} with shutdown_timeout 1s and a 2s lingering close"
    );
    assert_eq!(connections_cut(&d), 1);
    drop(s);
    writer.join().unwrap();
    reader.join().unwrap();
}
