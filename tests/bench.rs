//! `netservd bench`: drives the real daemon over TCP (pipelined frames) and
//! UDP (a window of datagrams), verifying every echo; and catches a server
//! that corrupts echoes (a deliberately wrong echo in this test), so a
//! benchmark can never report a broken echo as fast.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;

use common::*;

const CONFIG: &str = ECHO_WITH_ADMIN;

fn bench_json(args: &[&str]) -> (i32, serde_json::Value, String) {
    let mut all = vec!["bench"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-d", "500ms", "--warmup", "100ms", "--json", "-q"]);
    let (code, out, err) = netservd(&all, None);
    let v = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("bench printed no JSON ({e}): stdout {out:?} stderr {err:?}"));
    (code, v, err)
}

#[test]
fn bench_verifies_tcp_and_udp_echoes_of_the_daemon() {
    let d = Daemon::start(CONFIG);
    let tcp = format!("tcp://{}", d.addr("echo"));
    for size in ["0", "5", "4096"] {
        let (code, v, err) = bench_json(&[&tcp, "-c", "4", "--pipeline", "8", "-s", size]);
        assert_eq!(code, 0, "bench failed: {v} {err}");
        assert!(v["messages"].as_u64().unwrap() >= 10, "{v}");
        assert_eq!(v["mismatches"], 0, "{v}");
        assert!(v["latency_us"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    }
    let udp = format!("udp://{}", d.addr("echo-udp"));
    let (code, v, err) = bench_json(&[&udp, "-c", "2", "--window", "8", "-s", "64", "--sockperf"]);
    assert_eq!(code, 0, "bench failed: {v} {err}");
    assert!(v["messages"].as_u64().unwrap() >= 10, "{v}");
    assert_eq!(v["mismatches"], 0, "{v}");
    d.assert_clean(&[]);
}

#[test]
fn bench_rejects_the_other_protocols_depth_flag() {
    let (code, _, err) = netservd(&["bench", "tcp://127.0.0.1:9", "--window", "4"], None);
    assert_eq!(code, 1);
    assert!(err.contains("--window applies to udp://"), "{err}");
}

/// An "echo" that flips one payload byte of every frame: bench must count
/// mismatches and exit 1.
#[test]
fn bench_counts_corrupted_echoes_and_fails() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut frame = [0u8; 4 + 16];
        while s.read_exact(&mut frame).is_ok() {
            frame[4 + 15] ^= 0xff;
            if s.write_all(&frame).is_err() {
                return;
            }
        }
    });
    let (code, v, _) = bench_json(&[&format!("tcp://{addr}"), "-s", "16"]);
    assert_eq!(code, 1, "{v}");
    assert!(v["mismatches"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["messages"], 0, "{v}");
}
