//! tcp_echo faults against the real binary (issue 16): each `[tcp_echo.faults]`
//! key set in the file, its effect seen by a plain client socket, and the
//! injection counted in `netservd_faults_total`.

mod common;
#[path = "common/control.rs"]
mod control;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// A daemon whose tcp_echo "echo" has `faults` (TOML lines of its faults table).
fn start(faults: &str) -> (Daemon, SocketAddr) {
    control::start(&format!(
        "[[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\n[tcp_echo.faults]\n{faults}\n"
    ))
}

fn connect(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(d.addr("echo")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn read_frame(s: &mut TcpStream, payload_len: usize) -> Vec<u8> {
    let mut back = vec![0; payload_len + 4];
    s.read_exact(&mut back).unwrap();
    back
}

#[test]
fn latency_50ms_delays_every_echo_and_keeps_order() {
    let (d, admin) = start(r#"latency = "50ms""#);
    let mut s = connect(&d);
    for i in 0..4u8 {
        let f = frame(4, true, &[i; 8]);
        let t = Instant::now();
        s.write_all(&f).unwrap();
        assert_eq!(read_frame(&mut s, 8), f);
        let rtt = t.elapsed();
        assert!(rtt >= Duration::from_millis(50), "frame {i}: rtt {rtt:?}");
        eprintln!("latency 50ms: frame {i} rtt {rtt:?}");
    }
    // Pipelined: 5 frames in one write come back in order, each delayed.
    let frames: Vec<Vec<u8>> = (0..5u8).map(|i| frame(4, true, &[b'a' + i; 3])).collect();
    let t = Instant::now();
    s.write_all(&frames.concat()).unwrap();
    for f in &frames {
        assert_eq!(&read_frame(&mut s, 3), f);
    }
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert!(control::faults_total(admin, "echo", "latency") >= 9);
    d.assert_clean(&[]);
}

#[test]
fn reset_after_3_frames_the_4th_sees_rst() {
    let (d, admin) = start("reset_after_frames = 3");
    let mut s = connect(&d);
    for i in 0..3u8 {
        echo_on(&mut s, &[i; 5]);
    }
    s.write_all(&frame(4, true, b"fourth")).unwrap();
    let mut buf = [0u8; 64];
    let r = s.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "expected ECONNRESET, got {r:?}"
    );
    assert_eq!(
        control::faults_total(admin, "echo", "reset_after_frames"),
        1
    );
    d.assert_clean(&[]);
}

#[test]
fn close_after_2_frames_is_a_graceful_eof() {
    let (d, admin) = start("close_after_frames = 2");
    let mut s = connect(&d);
    echo_on(&mut s, b"one");
    echo_on(&mut s, b"two");
    let mut buf = [0u8; 16];
    assert_eq!(s.read(&mut buf).unwrap(), 0, "EOF after the 2nd echo");
    assert_eq!(
        control::faults_total(admin, "echo", "close_after_frames"),
        1
    );
    d.assert_clean(&[]);
}

#[test]
fn slice_bytes_1_arrives_in_1_byte_reads_byte_identical() {
    let (d, _admin) = start(
        r#"slice_bytes = 1
slice_delay = "30ms""#,
    );
    let mut s = connect(&d);
    let f = frame(4, true, b"sliced!!");
    s.write_all(&f).unwrap();
    let (mut got, mut reads) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 256];
    while got.len() < f.len() {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "EOF after {got:?}");
        reads.push(n);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, f);
    // Each byte is its own write 30 ms after the last; a read that finds two
    // means this client thread slept through one gap (a loaded host): allow one.
    let multi = reads.iter().filter(|&&n| n > 1).count();
    assert!(multi <= 1 && reads.len() >= f.len() - 1, "reads {reads:?}");
    eprintln!("slice_bytes 1: {}-byte frame in reads {reads:?}", f.len());
    d.assert_clean(&[]);
}

#[test]
fn stall_after_2_frames_no_echo_but_open_then_delete_resumes() {
    let (d, admin) = start("stall_after_frames = 2");
    let mut s = connect(&d);
    echo_on(&mut s, b"a");
    echo_on(&mut s, b"b");
    let f = frame(4, true, b"third");
    s.write_all(&f).unwrap();
    // The 2 s wait is the thing tested: the server hangs, the connection stays open.
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 64];
    let r = s.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "expected no echo and no close within 2 s, got {r:?}"
    );
    assert!(control::faults_total(admin, "echo", "stall_after_frames") >= 1);
    // Clearing the faults live un-stalls this very connection.
    control::clear_faults(admin, "echo");
    s.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(read_frame(&mut s, 5), f);
    d.assert_clean(&[]);
}

#[test]
fn refuse_1_resets_every_new_connection() {
    let (d, admin) = start("refuse = 1.0");
    for _ in 0..3 {
        let mut s = connect(&d);
        let _ = s.write_all(&frame(4, true, b"x"));
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("expected reset or EOF, got {other:?}"),
        }
    }
    assert_eq!(control::faults_total(admin, "echo", "refuse"), 3);
    d.assert_clean(&[]);
}

#[test]
fn corrupt_1_flips_exactly_one_payload_byte_never_the_length() {
    let (d, admin) = start("corrupt = 1.0\nseed = 11");
    let mut s = connect(&d);
    for round in 0..20u8 {
        let payload: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(round)).collect();
        let f = frame(4, true, &payload);
        s.write_all(&f).unwrap();
        let back = read_frame(&mut s, 32);
        assert_eq!(back[..4], f[..4], "length field intact");
        let diff = back.iter().zip(&f).filter(|(a, b)| a != b).count();
        assert_eq!(diff, 1, "round {round}: {back:?} vs {f:?}");
    }
    assert_eq!(control::faults_total(admin, "echo", "corrupt"), 20);
    d.assert_clean(&[]);
}

#[test]
fn bandwidth_2000_bytes_per_s_takes_at_least_bytes_over_rate() {
    let (d, _admin) = start("bandwidth_bytes_per_s = 2000");
    let mut s = connect(&d);
    let f = frame(4, true, &[7u8; 996]);
    let t = Instant::now();
    s.write_all(&f).unwrap();
    assert_eq!(read_frame(&mut s, 996), f);
    let took = t.elapsed();
    // 1000 bytes at 2000 B/s: 500 ms at least.
    assert!(took >= Duration::from_millis(500), "{took:?}");
    eprintln!("bandwidth 2000 B/s: 1000-byte frame echoed in {took:?}");
    d.assert_clean(&[]);
}
