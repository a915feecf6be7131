//! The descriptor budget (issue 11): a daemon whose hard RLIMIT_NOFILE is
//! 1024 (soft 256: it raises the soft limit to the hard one at start) warns
//! that its config's worst case does not fit, and 1,100 idle connections to
//! its admin port leave the TCP and UDP echo healthy and the admin endpoint
//! answering within 1 s; the idle admin connections are closed by the timeout.
#![cfg(target_os = "linux")]

mod common;

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use common::counters::{admin_addr, drops};
use common::limits::fd_count;
use common::sources::closed_within;
use common::*;

const CONFIG: &str = "[daemon]\nwatch_config = false\nworkers = 2\n\n[admin]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"2s\"\n\n\
    [[tcp_echo]]\nname = \"echo\"\nlisten = \"127.0.0.1:0\"\nmax_connections = 1024\nmax_connections_per_source = 0\n\n\
    [[udp_echo]]\nname = \"echo-udp\"\nlisten = \"127.0.0.1:0\"\n";

const IDLE: usize = 1100;

/// The (soft, hard) RLIMIT_NOFILE of `pid` from /proc/PID/limits.
fn nofile(pid: i32) -> (String, String) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    (f[3].to_string(), f[4].to_string())
}

/// Raises this test process's soft limit to its hard one: it holds 1,100 sockets.
fn raise_own_limit() {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on one struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut l), 0);
        l.rlim_cur = l.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &l), 0);
    }
    assert!(
        l.rlim_cur >= 2 * IDLE as u64,
        "the test needs {} descriptors, hard limit is {}",
        2 * IDLE,
        l.rlim_cur
    );
}

fn udp_round_trip(addr: SocketAddr) -> bool {
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    u.send_to(b"fds", addr).unwrap();
    let mut b = [0u8; 16];
    matches!(u.recv_from(&mut b), Ok((3, _)))
}

#[test]
fn idle_admin_connections_cannot_take_the_echo_down() {
    raise_own_limit();
    let d = Daemon::start_cmd(CONFIG, &[], |cmd| limit_nofile(cmd, 256, 1024));
    assert_eq!(
        nofile(d.pid()),
        ("1024".into(), "1024".into()),
        "soft limit not raised to the hard one"
    );
    let raised = d
        .wait_log(
            |l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("raised the soft descriptor limit"))
            },
            WAIT,
        )
        .unwrap();
    assert_eq!(
        (raised["from"].as_u64(), raised["to"].as_u64()),
        (Some(256), Some(1024))
    );
    let budget = d
        .wait_log(
            |l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("descriptor budget exceeded"))
            },
            WAIT,
        )
        .expect("budget warning: 1024 + 65 + 2 + reserve > 1024");
    assert_eq!(budget["limit"], 1024);

    let (admin, tcp, udp) = (admin_addr(&d), d.addr("echo"), d.addr("echo-udp"));
    let t0 = Instant::now();
    let mut idle: Vec<TcpStream> = (0..IDLE)
        .map(|_| TcpStream::connect_timeout(&admin, WAIT).expect("connect to admin"))
        .collect();
    eprintln!(
        "fds: {IDLE} admin connections opened in {:?}; daemon holds {} descriptors",
        t0.elapsed(),
        fd_count(d.pid())
    );
    assert!(
        fd_count(d.pid()) < 400,
        "daemon holds {} descriptors",
        fd_count(d.pid())
    );

    // The echo services are healthy and the admin port answers within 1 s.
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&tcp, Duration::from_secs(1)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert!(
        common::sources::tcp_echoes(&mut s, b"still here"),
        "TCP echo failed"
    );
    assert!(udp_round_trip(udp), "UDP echo failed");
    let tcp_udp = t.elapsed();
    let t = Instant::now();
    let mut h = TcpStream::connect_timeout(&admin, Duration::from_secs(1)).unwrap();
    h.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    use std::io::{Read, Write};
    h.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    h.read_to_string(&mut resp)
        .expect("admin answered within 1 s");
    let healthz = t.elapsed();
    eprintln!(
        "fds: with {IDLE} idle admin connections: TCP+UDP echo in {tcp_udp:?}, /healthz in {healthz:?}"
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(healthz < Duration::from_secs(1));

    // Every idle connection is closed: the oldest made room for newer ones, the rest by header_read_timeout.
    let t = Instant::now();
    for s in &mut idle {
        closed_within(s, Duration::from_secs(5));
    }
    eprintln!(
        "fds: all {IDLE} idle admin connections closed {:?} after the check",
        t.elapsed()
    );
    let evicted = drops(&d, "[admin]", "evicted_idle");
    let timed_out = drops(&d, "[admin]", "header_read_timeout");
    eprintln!("fds: evicted {evicted}, header_read_timeout {timed_out}");
    assert!(
        evicted + timed_out >= IDLE as u64,
        "evicted {evicted} + timed out {timed_out} < {IDLE}"
    );
}

/// The `start_cmd` preparation that gives the daemon RLIMIT_NOFILE `soft`:`hard`.
fn limit_nofile(cmd: &mut std::process::Command, soft: u64, hard: u64) {
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn tcp_connections_stop_at_their_share_and_the_admin_keeps_answering() {
    raise_own_limit();
    let d = Daemon::start_cmd(CONFIG, &[], |cmd| limit_nofile(cmd, 256, 256));
    // 256 less the admin's 64 + 1, three service sockets (the TCP listener and
    // the udp_echo's set of 2, one per worker) and the reserve of 64.
    const TCP_BUDGET: u64 = 256 - 65 - 3 - 64;
    let budget = d
        .wait_log(
            |l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("descriptor budget exceeded"))
            },
            WAIT,
        )
        .expect("budget warning");
    assert_eq!(budget["tcp_budget"], TCP_BUDGET, "{budget}");
    let tcp = d.addr("echo");
    // 300 clients, more than the TCP share: the ones beyond it are reset at accept.
    // A connection reset right after accept may already be reset when connect returns.
    let mut clients: Vec<TcpStream> = (0..300)
        .filter_map(|_| match TcpStream::connect_timeout(&tcp, WAIT) {
            Ok(s) => Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("connect: {e}"),
        })
        .collect();
    let end = Instant::now() + WAIT;
    let refused = loop {
        let n = drops(&d, "echo", "descriptor_budget");
        if n >= 300 - TCP_BUDGET || Instant::now() > end {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50)); // poll interval
    };
    let held = fd_count(d.pid());
    eprintln!(
        "fds: 300 TCP clients: {refused} reset over the budget; daemon holds {held} of 256 descriptors"
    );
    assert_eq!(refused, 300 - TCP_BUDGET);
    assert!(held < 256 - 60, "daemon holds {held} descriptors");
    assert_eq!(
        common::counters::errors(&d, "echo", "accept_resources"),
        0,
        "the table ran full"
    );
    // The admin endpoint has its share: it answers every time, quickly.
    for _ in 0..20 {
        let t = Instant::now();
        let mut h = TcpStream::connect_timeout(&admin_addr(&d), Duration::from_secs(1)).unwrap();
        h.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        use std::io::{Read, Write};
        h.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        h.read_to_string(&mut resp)
            .expect("admin answered within 1 s");
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    // And the UDP echo is untouched.
    assert!(udp_round_trip(d.addr("echo-udp")));
    clients.clear();
}
