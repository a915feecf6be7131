//! Framed TCP echo against the real binary: every length width and byte
//! order, pipelining, dribbling, bursts, zero-length and maximum frames, and
//! the failure paths (oversize, EOF mid-frame, half-close, timeouts).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use common::*;

fn config(width: u8, order: &str, max: u64) -> String {
    format!(
        r#"
[[tcp_echo]]
name = "echo"
listen = "127.0.0.1:0"
length_field_bytes = {width}
byte_order = "{order}"
max_frame_bytes = {max}
idle_timeout = "3s"
frame_timeout = "1s"
"#
    )
}

fn connect(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(d.addr("echo")).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads until EOF or `want` bytes; returns what arrived.
fn read_n(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut out = vec![0; want];
    s.read_exact(&mut out).unwrap();
    out
}

/// True if the server closed the connection (EOF or reset) within the wait.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Deterministic pseudo-random payload sizes and bytes (no extra crate).
fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn pipelined_random_frames_every_width_and_order() {
    for width in [1u8, 2, 4, 8] {
        for (order, big) in [("big", true), ("little", false)] {
            let max = if width == 1 { 255 } else { 4096 };
            let d = Daemon::start(&config(width, order, max));
            let mut s = connect(&d);
            let mut seed = width as u64 * 31 + big as u64;
            let mut sent = Vec::new();
            for _ in 0..300 {
                let len = (lcg(&mut seed) % (max + 1)) as usize;
                let payload: Vec<u8> = (0..len).map(|_| lcg(&mut seed) as u8).collect();
                sent.extend(frame(width as usize, big, &payload));
            }
            // Write everything before reading anything: fully pipelined.
            let writer = {
                let mut w = s.try_clone().unwrap();
                let data = sent.clone();
                std::thread::spawn(move || w.write_all(&data).unwrap())
            };
            let back = read_n(&mut s, sent.len());
            writer.join().unwrap();
            assert!(back == sent, "width {width} {order}: echo differs");
            d.assert_clean(&[]);
        }
    }
}

#[test]
fn frame_dribbled_one_byte_at_a_time() {
    let d = Daemon::start(&config(4, "big", 65536));
    let mut s = connect(&d);
    s.set_nodelay(true).unwrap();
    let f = frame(4, true, b"dribble");
    for b in &f {
        s.write_all(&[*b]).unwrap();
        // The dribble is the subject: one byte per segment (nodelay), 5 ms apart.
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(read_n(&mut s, f.len()), f);
}

#[test]
fn burst_of_1000_frames_in_one_write_zero_length_and_maximum() {
    let d = Daemon::start(&config(2, "big", 65535));
    let mut s = connect(&d);
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        burst.extend(frame(2, true, &i.to_be_bytes()));
    }
    burst.extend(frame(2, true, b""));
    burst.extend(frame(2, true, &vec![0xA5; 65535]));
    let w = {
        let mut w = s.try_clone().unwrap();
        let b = burst.clone();
        std::thread::spawn(move || w.write_all(&b).unwrap())
    };
    assert_eq!(read_n(&mut s, burst.len()), burst);
    w.join().unwrap();
}

#[test]
fn oversize_frame_closes_only_that_connection_with_one_log_line() {
    let d = Daemon::start(&config(4, "big", 1000));
    let mut bad = connect(&d);
    let mut good = connect(&d);
    let ok = frame(4, true, b"before");
    bad.write_all(&ok).unwrap();
    bad.write_all(&1001u32.to_be_bytes()).unwrap();
    // Frames before the oversized header are still echoed, then the connection closes.
    assert_eq!(read_n(&mut bad, ok.len()), ok);
    assert!(
        closed_by_server(&mut bad),
        "oversize frame did not close the connection"
    );
    let line = d
        .wait_log(
            |l| l["message"] == "frame too large; closing connection",
            WAIT,
        )
        .expect("one log line");
    assert_eq!(line["declared"], 1001);
    assert_eq!(line["max_frame_bytes"], 1000);
    assert!(line["peer"].as_str().is_some());
    assert_eq!(
        d.count_logs(|l| l["message"] == "frame too large; closing connection"),
        1
    );
    // The other connection is untouched.
    let f = frame(4, true, b"still here");
    good.write_all(&f).unwrap();
    assert_eq!(read_n(&mut good, f.len()), f);
    d.assert_clean(&[]);
}

#[test]
fn eof_mid_frame_echoes_nothing_partial() {
    let d = Daemon::start(&config(4, "big", 1000));
    let mut s = connect(&d);
    let whole = frame(4, true, b"whole");
    s.write_all(&whole).unwrap();
    s.write_all(&frame(4, true, b"partial-frame")[..8]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert_eq!(back, whole, "only the complete frame comes back");
    d.wait_log(
        |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("middle of a frame"))
        },
        WAIT,
    )
    .expect("logged");
}

#[test]
fn half_close_echoes_every_complete_frame_then_fin() {
    let d = Daemon::start(&config(4, "big", 65536));
    let mut s = connect(&d);
    let mut sent = Vec::new();
    for i in 0..200u32 {
        sent.extend(frame(4, true, &vec![i as u8; (i % 50) as usize]));
    }
    s.write_all(&sent).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap(); // returns at the server's FIN
    assert_eq!(back, sent);
}

#[test]
fn frame_timeout_and_idle_timeout_fire_in_real_time() {
    let d = Daemon::start(&config(4, "big", 65536));
    // A started frame that never completes: closed after frame_timeout (1s).
    let mut slow = connect(&d);
    slow.write_all(&10u32.to_be_bytes()).unwrap();
    let t = Instant::now();
    assert!(closed_by_server(&mut slow));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(3),
        "frame timeout took {took:?}"
    );
    // A silent peer: closed after idle_timeout (3s).
    let mut silent = connect(&d);
    let t = Instant::now();
    assert!(closed_by_server(&mut silent));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "idle timeout took {took:?}"
    );
    assert!(
        d.wait_log(
            |l| l["message"] == "frame not completed in time; closing connection",
            WAIT
        )
        .is_some()
    );
    assert!(
        d.wait_log(|l| l["message"] == "idle timeout; closing connection", WAIT)
            .is_some()
    );
}

#[test]
fn max_connections_permits_are_taken_before_accept() {
    let cfg = config(4, "big", 1000).replace("frame_timeout", "max_connections = 2\nframe_timeout");
    let d = Daemon::start(&cfg);
    let mut a = connect(&d);
    let mut b = connect(&d);
    let f = frame(4, true, b"x");
    for s in [&mut a, &mut b] {
        s.write_all(&f).unwrap();
        assert_eq!(read_n(s, f.len()), f);
    }
    // The third connects (kernel backlog) but is not served until a permit frees.
    let mut c = connect(&d);
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    c.write_all(&f).unwrap();
    let mut buf = [0u8; 5];
    assert!(
        c.read_exact(&mut buf).is_err(),
        "third connection served beyond max_connections"
    );
    drop(a);
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[..], &f[..]);
}
