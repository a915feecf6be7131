//! `[daemon] workers` (issue 15) against the real binary: with 2 workers a
//! udp_echo is one service on a set of 2 SO_REUSEPORT sockets (`/services`
//! says `sockets: 2`), echoes every datagram whatever socket the kernel picks,
//! and a second process that joins the port with SO_REUSEPORT (same user, so
//! the kernel lets it) receives nothing, because the guard program only picks
//! the set's own sockets. With 1 worker the socket is exclusive as before
//! (tests/hardening_exclusive.rs). A reload that changes `workers` warns that
//! it needs a restart and keeps serving; `workers = 0` is a placed config error.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::counters::{admin_get, service_counter};
use common::*;

fn config(workers: usize) -> String {
    format!(
        "[daemon]\nworkers = {workers}\nwatch_config = false\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[tcp_echo]]\nname = \"t\"\nlisten = \"127.0.0.1:0\"\n"
    )
}

/// `sockets` of service `name` in `/services`.
fn sockets(d: &Daemon, name: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&admin_get(d, "/services")).unwrap();
    let list = v.as_array().or_else(|| v["services"].as_array()).unwrap();
    let s = list.iter().find(|s| s["name"] == name).unwrap();
    s["sockets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no sockets in {s}"))
}

/// Sends `per_source` datagrams from each of `sources` fresh sockets (so
/// many source ports) and checks every one comes back unchanged.
fn echo_from_many(addr: SocketAddr, sources: usize, per_source: usize) {
    for s in 0..sources {
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(WAIT)).unwrap();
        for i in 0..per_source {
            let msg = format!("source {s} datagram {i}");
            c.send_to(msg.as_bytes(), addr).unwrap();
            let mut buf = [0u8; 128];
            let (n, from) = c
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("no echo for {msg:?}: {e}"));
            assert_eq!((&buf[..n], from), (msg.as_bytes(), addr));
        }
    }
}

/// A same-user socket with SO_REUSEPORT on `addr`, as another program would open it.
#[cfg(target_os = "linux")]
fn reuseport_joiner(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

#[test]
fn two_workers_one_service_two_sockets_every_source_echoed() {
    let d = Daemon::start(&config(2));
    let addr = d.addr("u");
    let expected = if cfg!(target_os = "linux") { 2 } else { 1 };
    assert_eq!(sockets(&d, "u"), expected, "{}", admin_get(&d, "/services"));
    assert_eq!(sockets(&d, "t"), 1);
    echo_from_many(addr, 8, 4);
    // One service: both sockets count into the same series.
    assert_eq!(service_counter(&d, "netservd_messages_in_total", "u"), 32);
    assert_eq!(service_counter(&d, "netservd_messages_out_total", "u"), 32);
    // TCP on two accept loops: several connections at once all served.
    let t = d.addr("t");
    let mut conns: Vec<_> = (0..4)
        .map(|_| std::net::TcpStream::connect_timeout(&t, WAIT).unwrap())
        .collect();
    for (i, c) in conns.iter_mut().enumerate() {
        c.set_read_timeout(Some(WAIT)).unwrap();
        echo_on(c, format!("conn {i}").as_bytes());
    }
    d.assert_clean(&[]);
}

#[cfg(target_os = "linux")]
#[test]
fn a_reuseport_joiner_gets_nothing_while_the_set_echoes_everything() {
    let d = Daemon::start(&config(2));
    let addr = d.addr("u");
    let joiner = reuseport_joiner(addr)
        .expect("the kernel lets a same-user SO_REUSEPORT socket join the set's port");
    // Without the guard the kernel would hash sources over 3 sockets and the
    // joiner would take about a third of them, each unanswered.
    echo_from_many(addr, 24, 2);
    // The absence of a datagram can only be shown by waiting: this timeout is the test.
    joiner
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 128];
    match joiner.recv_from(&mut buf) {
        Ok((n, from)) => panic!("the joiner received {n} bytes from {from}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    assert_eq!(service_counter(&d, "netservd_messages_out_total", "u"), 48);
    d.assert_clean(&[]);
}

#[cfg(target_os = "linux")]
#[test]
fn one_worker_keeps_one_exclusive_socket() {
    let d = Daemon::start(&config(1));
    let addr = d.addr("u");
    assert_eq!(sockets(&d, "u"), 1);
    let joined = reuseport_joiner(addr);
    assert!(
        joined.is_err(),
        "a SO_REUSEPORT socket joined a workers = 1 udp_echo"
    );
    echo_from_many(addr, 2, 2);
    d.assert_clean(&[]);
}

#[cfg(unix)]
#[test]
fn a_reload_that_changes_workers_warns_and_keeps_serving() {
    let mut d = Daemon::start(&config(2));
    let addr = d.addr("u");
    d.write_config(&config(3));
    d.signal(libc::SIGHUP);
    let warning = d
        .wait_log(
            |l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("daemon.workers changed: it needs a restart"))
            },
            WAIT,
        )
        .unwrap_or_else(|| panic!("no restart warning:\n{}", d.dump()));
    assert!(warning.to_string().contains('3'), "{warning}");
    d.wait_log(|l| l["message"] == "reload applied", WAIT)
        .unwrap_or_else(|| panic!("reload not applied:\n{}", d.dump()));
    let expected = if cfg!(target_os = "linux") { 2 } else { 1 };
    assert_eq!(sockets(&d, "u"), expected, "the set is sized at start");
    echo_from_many(addr, 4, 1);
    d.assert_clean(&["daemon.workers changed"]);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit(WAIT).is_some_and(|s| s.success()));
}

#[test]
fn workers_out_of_range_is_a_placed_config_error() {
    for bad in ["0", "1025"] {
        let cfg = format!(
            "[daemon]\nworkers = {bad}\n[[udp_echo]]\nname = \"u\"\nlisten = \"127.0.0.1:0\"\n"
        );
        let (code, _out, err, _dir) = check(&cfg, &[]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("config.toml:2:"),
            "not placed at the key: {err}"
        );
        assert!(
            err.contains(&format!("workers = {bad} is out of range; use 1 to 1024")),
            "{err}"
        );
    }
}
