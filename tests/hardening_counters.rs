//! Drop counters by reason, read through the library API: services are bound
//! and run in-process (`Spec::bind`, `Bound::run`) on real loopback sockets
//! with a `Metrics` registry the test keeps, so each guard's counter can be
//! checked exactly, several reasons on one service, without an admin port.
//! (The binary's tests read the same counters over `/metrics`.) Linux only:
//! it sends from several 127.0.0.x addresses and times a token bucket.
#![cfg(target_os = "linux")]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use netservd::config;
use netservd::metrics::Metrics;
use netservd::services::{ServiceCtx, Spec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Binds every service of `toml` and runs it on this test's runtime.
fn start(toml: &str, metrics: &Arc<Metrics>) -> (Vec<SocketAddr>, CancellationToken) {
    let cfg = config::parse(toml, "test").unwrap_or_else(|e| panic!("{e}"));
    let stop = CancellationToken::new();
    let mut addrs = Vec::new();
    for spec in Spec::all(&cfg) {
        let bound = spec.bind().unwrap();
        addrs.push(bound.local_addr());
        let ctx = ServiceCtx {
            stop: stop.clone().into(),
            drain: stop.clone(),
            abort: CancellationToken::new(),
            tracker: TaskTracker::new(),
            metrics: metrics.service(spec.name()),
            fixture: Arc::new(netservd::faults::Fixture::new(spec.name(), spec.kind())),
            directory: Arc::new(RwLock::new(String::new())),
        };
        tokio::spawn(bound.run(ctx));
    }
    (addrs, stop)
}

fn udp(bind: &str) -> UdpSocket {
    let s = UdpSocket::bind(bind).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn answered(s: &UdpSocket) -> bool {
    s.recv_from(&mut [0; 2048]).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_guards_count_each_drop_by_reason() {
    let m = Arc::new(Metrics::new());
    let toml = "[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\nmax_datagram_bytes = 100\n\
                rate_limit = { per_source = 1, burst = 5 }\nblocked_source_ports = [19, 7]\n";
    let (addrs, stop) = start(toml, &m);
    let addr = addrs[0];
    let result = tokio::task::spawn_blocking(move || {
        // Port 19 is on the configured list.
        let chargen = udp("127.0.0.20:19");
        chargen.send_to(b"x", addr).unwrap();
        let chargen_answered = answered(&chargen);
        // Oversize: dropped before the bucket is consulted.
        let big = udp("127.0.0.21:0");
        big.send_to(&[0; 101], addr).unwrap();
        let big_answered = answered(&big);
        // 40 from one source against a bucket of 5 refilling at 1/s.
        let flood = udp("127.0.0.22:0");
        for i in 0..40u8 {
            flood.send_to(&[i], addr).unwrap();
        }
        let mut replies = 0;
        while answered(&flood) {
            replies += 1;
        }
        (chargen_answered, big_answered, replies)
    })
    .await
    .unwrap();
    let (chargen_answered, big_answered, replies) = result;
    assert!(!chargen_answered && !big_answered);
    assert!(
        (5..=6).contains(&replies),
        "{replies} replies from a bucket of 5 at 1/s"
    );
    assert_eq!(m.drops("u", "blocked_source_port"), 1);
    assert_eq!(m.drops("u", "oversize"), 1);
    assert_eq!(m.drops("u", "rate_limited"), 40 - replies);
    assert_eq!(m.drops("u", "bad_source_address"), 0);
    eprintln!(
        "counters: blocked_source_port=1 oversize=1 rate_limited={} replies={replies}",
        40 - replies
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_limits_count_each_close_by_reason() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let m = Arc::new(Metrics::new());
    let toml = "[[tcp_echo]]\nname = \"t\"\nlisten = \"127.0.0.1:0\"\nmax_frame_bytes = 1000\n\
                idle_timeout = \"2s\"\nframe_timeout = \"300ms\"\n";
    let (addrs, stop) = start(toml, &m);
    let addr = addrs[0];
    let eof = |mut s: tokio::net::TcpStream| async move {
        let mut b = [0u8; 64];
        tokio::time::timeout(Duration::from_secs(5), async {
            while s.read(&mut b).await.unwrap_or(0) > 0 {}
        })
        .await
        .is_ok()
    };
    let mut big = tokio::net::TcpStream::connect(addr).await.unwrap();
    big.write_all(&1001u32.to_be_bytes()).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(&[0, 0, 0, 10, 1]).await.unwrap();
    let mut cut = tokio::net::TcpStream::connect(addr).await.unwrap();
    cut.write_all(&[0, 0, 0, 10, 1]).await.unwrap();
    cut.shutdown().await.unwrap();
    assert!(
        eof(big).await && eof(slow).await && eof(cut).await,
        "a limited connection stayed open"
    );
    assert_eq!(m.drops("t", "frame_too_large"), 1);
    assert_eq!(m.drops("t", "frame_timeout"), 1);
    assert_eq!(m.drops("t", "eof_mid_frame"), 1);
    stop.cancel();
}
