//! Log flood control (issue 11): 5,000 connections that each send an
//! oversized frame header are all counted, but write only a handful of log
//! lines (the first, then one per interval with the suppressed count).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::counters::drops;
use common::*;

const CONFIG: &str = "[daemon]\nwatch_config = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nmax_frame_bytes = 1000\nmax_connections_per_source = 0\n[tcp_echo.socket]\nbacklog = 1024\n";

const CONNECTIONS: usize = 5000;
/// Connections open at once: well under the test's and the daemon's descriptor limits.
const BATCH: usize = 200;

#[test]
fn five_thousand_oversize_headers_are_counted_but_barely_logged() {
    let d = Daemon::start(CONFIG);
    let addr = d.addr("echo");
    let lines_before = d.logs().len();
    let header = 1001u32.to_be_bytes();
    let t0 = Instant::now();
    for _ in 0..CONNECTIONS / BATCH {
        let mut batch: Vec<TcpStream> = (0..BATCH)
            .map(|_| {
                let mut s = TcpStream::connect_timeout(&addr, WAIT).unwrap();
                s.write_all(&header).unwrap();
                s
            })
            .collect();
        for s in &mut batch {
            // The daemon closes each one after reading the header.
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut b = [0u8; 16];
            let closed = matches!(s.read(&mut b), Ok(0) | Err(_));
            assert!(
                closed && t0.elapsed() < Duration::from_secs(120),
                "connection not closed"
            );
        }
    }
    let elapsed = t0.elapsed();
    let end = Instant::now() + WAIT;
    while drops(&d, "echo", "frame_too_large") < CONNECTIONS as u64 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    }
    assert_eq!(drops(&d, "echo", "frame_too_large"), CONNECTIONS as u64);
    let logs = d.logs();
    let new = &logs[lines_before..];
    let too_large: Vec<_> = new
        .iter()
        .filter(|l| l["message"] == "frame too large; closing connection")
        .collect();
    eprintln!(
        "flood: {CONNECTIONS} oversize headers in {elapsed:?}: {} log lines in all, {} 'frame too large', suppressed {:?}",
        new.len(),
        too_large.len(),
        too_large
            .iter()
            .map(|l| l["suppressed"].as_u64().unwrap_or(0))
            .collect::<Vec<_>>()
    );
    assert!(
        !too_large.is_empty(),
        "the first oversize header must be logged"
    );
    assert_eq!(too_large[0]["suppressed"], 0);
    // One line per 5 s interval at most, plus the first.
    let allowed = 1 + (elapsed.as_secs() / 5) as usize + 1;
    assert!(
        too_large.len() <= allowed,
        "{} lines in {elapsed:?}",
        too_large.len()
    );
    assert!(
        new.len() <= 40,
        "{} log lines for {CONNECTIONS} bad connections",
        new.len()
    );
    d.assert_clean(&[]);
}
